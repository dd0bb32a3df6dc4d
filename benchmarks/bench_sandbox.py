"""What the sandbox costs: an LM-written reward function called in this process vs in the sandbox.

    python benchmarks/bench_sandbox.py            # ~2 minutes on 2 cores

Both sides do the same work per batch, with the same code: rows cut out of the field columns,
the function called once per row, the answers packed into columns and checked against the
contract. The sandboxed side adds one round trip to the long-lived worker per batch: framing,
two pipe writes, the JSON header and the raw numpy buffers. Reported: transitions per second at batch
1 and 16 (one call per step of 1 and 16 vector environments), and their ratio (the goal: at
batch 16, sandboxed >= 50% of in-process); then what it costs a whole training (SB3 PPO on
MountainCarContinuous with the env's own reward, the program exec'd in process, the program in
the sandbox); and the cost of starting a worker (one per program).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from llmrl.roles.reward_coder import SandboxedReward, check_columns
from llmrl.sandbox import Sandbox, _worker

PROGRAMS = {
    # The shapes an LM writes: a couple of terms from a couple of fields (mountain car), and a
    # staged reward with a helper function (door key); examples/rewards/ has both.
    "mountain-car": "examples/rewards/mountain-car.py",
    "door-key": "examples/rewards/door-key.py",
}


def fields_for(name: str, n: int, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    if name == "mountain-car":
        return {"position": rng.uniform(-1.2, 0.6, n), "velocity": rng.uniform(-0.07, 0.07, n)}, rng.uniform(-1, 1, (n, 1))
    keys = ("agent_x", "agent_y", "agent_dir", "has_key", "door_open", "key_x", "key_y", "door_x", "door_y", "goal_x", "goal_y")
    return {k: rng.integers(0, 4, n).astype(np.float64) for k in keys}, rng.integers(0, 7, n)


def in_process(code: str):
    """The program exec'd here (the anchors' way), with everything the sandboxed path does but
    the pipe: the worker's row cutting and column packing, the same contract checks."""
    namespace: dict = {}
    exec(compile(code, "<candidate>", "exec"), namespace)
    fn = namespace["compute_reward"]

    def call(s, a, s_next):
        n = len(a)
        args = [_worker._dict_rows(s, n), _worker._rows_of(a), _worker._dict_rows(s_next, n)]
        return check_columns(_worker._columns([fn(*row) for row in zip(*args)]), n, 1e4)

    return call


def rate(call, s, a, seconds: float) -> float:
    """Transitions per second over at least ``seconds``."""
    n, done, start = len(a), 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            call(s, a, s)
        done += 50 * n
    return done / (time.perf_counter() - start)


class _InProcess:
    """The anchors' way, for comparison only: the program exec'd in the trainer's process."""

    def __init__(self, code: str) -> None:
        self.call = in_process(code)

    def __call__(self, s, a, s_next):
        return self.call(s, a, s_next)

    def close(self) -> None:
        pass


def training_rate(reward: str | None, steps: int = 16_384) -> float:
    """SB3 PPO's env steps per second on MountainCarContinuous with 8 envs and one torch thread."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from llmrl.envs.code_tasks import get_task
    from llmrl.roles.reward_coder import CodeRewardVecEnv

    torch.set_num_threads(1)
    task = get_task("mountain-car")
    venv = DummyVecEnv([lambda: task.policy_env("human") for _ in range(task.n_envs)])
    program = None
    if reward is not None:
        code = open(PROGRAMS["mountain-car"]).read()
        program = _InProcess(code) if reward == "here" else SandboxedReward(code)
        venv = CodeRewardVecEnv(venv, program)
    model = PPO("MlpPolicy", venv, seed=0, device="cpu", verbose=0, **task.ppo)
    start = time.perf_counter()
    model.learn(steps)
    rate_ = model.num_timesteps / (time.perf_counter() - start)
    if program is not None:
        program.close()
    venv.close()
    return rate_


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="time per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="training runs per arm (the best counts)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| program | batch | in-process (transitions/s) | sandboxed (transitions/s) | sandboxed / in-process |")
    print("|---|---|---|---|---|")
    for name, path in PROGRAMS.items():
        code = open(path).read()
        here = in_process(code)
        boxed = SandboxedReward(code)
        try:
            for batch in (1, 16, 256):
                s, a = fields_for(name, batch, rng)
                assert np.allclose(here(s, a, s)[0], boxed(s, a, s)[0])  # the same answers first
                fast, safe = rate(here, s, a, args.seconds), rate(boxed, s, a, args.seconds)
                print(f"| {name} | {batch} | {fast:,.0f} | {safe:,.0f} | {safe / fast:.2f} |", flush=True)
        finally:
            boxed.close()
    print("\n| PPO on MountainCarContinuous, 8 envs, 16,384 steps | steps/s | vs the env's own reward |")
    print("|---|---|---|")
    arms = (("the env's own reward", None), ("the program, in process (exec)", "here"),
            ("the program, sandboxed", "sandbox"))
    best: dict[str, float] = {}
    for _ in range(args.repeats):  # interleaved, best of each: a busy neighbour hurts all arms alike
        for label, reward in arms:
            best[label] = max(best.get(label, 0.0), training_rate(reward))
    base = best[arms[0][0]]
    for label, _ in arms:
        print(f"| {label} | {best[label]:,.0f} | {best[label] / base:.2f} |", flush=True)
    starts = []
    with Sandbox() as box:
        for _ in range(10):
            t = time.perf_counter()
            box.load("def f():\n    return 1\n", ["f"])
            starts.append(time.perf_counter() - t)
    print(f"\nstarting a locked-down worker and loading a program: median {np.median(starts) * 1000:.0f} ms "
          f"(min {min(starts) * 1000:.0f}, max {max(starts) * 1000:.0f}) over 10")


if __name__ == "__main__":
    main()
