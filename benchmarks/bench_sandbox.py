"""What the sandbox costs: an LM-written reward function called in this process vs in the sandbox.

    python benchmarks/bench_sandbox.py            # ~1 minute on 2 cores

Both sides do the same work per batch: rows cut out of the field columns, the function called
once per row, the answers checked (:class:`llmrl.roles.reward_coder.SandboxedReward` does that
for the sandbox; the in-process side runs the same per-row loop and the same check). The
sandboxed side adds one round trip to the long-lived worker per batch: framing, two pipe
writes, the JSON header and the raw numpy buffers. Reported: transitions per second at batch
1 and 16 (one call per step of 1 and 16 vector environments), and their ratio (the goal: at
batch 16, sandboxed >= 50% of in-process); also the cost of starting a worker (one per program).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from llmrl.roles.coder import check_numbers
from llmrl.roles.reward_coder import SandboxedReward
from llmrl.sandbox import Sandbox

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
    namespace: dict = {}
    exec(compile(code, "<candidate>", "exec"), namespace)  # the anchors' way: exec in the trainer
    fn = namespace["compute_reward"]

    def call(s, a, s_next):
        n = len(a)
        rows = [fn({k: v[i] for k, v in s.items()}, a[i], {k: v[i] for k, v in s_next.items()}) for i in range(n)]
        r = check_numbers([row[0] for row in rows], n, "the reward", 1e4)
        comps = {k: check_numbers([row[1][k] for row in rows], n, k, 1e6) for k in rows[0][1]}
        return r, comps

    return call


def rate(call, s, a, seconds: float) -> float:
    """Transitions per second over at least ``seconds``."""
    n, done, start = len(a), 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            call(s, a, s)
        done += 50 * n
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="time per measurement")
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
