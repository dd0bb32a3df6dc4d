"""CLEVR-Robot physics against KALM's data, env speed, and the scripted expert's success rate.

Prints, next to the reference numbers measured on KALM's 898 toy transitions (kalm.md §3):

- unobstructed push distance along the push (mean ± sd) and sideways drift, cardinal and
  diagonal, over random initial states (reference: about 0.25 cardinal, 0.29–0.33 diagonal);
- the share of random-policy steps that move another ball by more than 0.05 (chain pushes;
  reference 24–54% depending on direction);
- env steps per second over random actions, unwrapped (goal ≥ 500 /s, one thread);
- the expert's success rate on seen goals within 50 steps at epsilon 0 (goal ≥ 85%);
- evaluation-style replay (several agents on the same held-out episodes) with the push memo on
  and off, side by side: agents stuck on one push per episode (what a greedy offline agent
  does) and agents pushing at random (no repeats: the memo's overhead).

    OMP_NUM_THREADS=1 python -u benchmarks/bench_clevr_robot.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from llmrl.envs.clevr_expert import ClevrExpert
from llmrl.envs.clevr_robot import (
    N_ACTIONS,
    N_BALLS,
    N_DIRECTIONS,
    PUSH_DIRECTIONS,
    X_BOUNDS,
    Y_BOUNDS,
    ClevrRobotEnv,
    push,
    sample_positions,
)

MOVED = 0.05  # another ball moved by more than this: a chain push
CLEAR_LENGTH = 0.45  # an unobstructed push: this much table ahead of the ball ...
CLEAR_WIDTH = 0.30  # ... and no other centre this close to its path (0.26 is contact)
DIRECTION_NAMES = ["+x", "+y", "-x", "-y", "+x+y", "-x+y", "+x-y", "-x-y"]


def unobstructed(state: np.ndarray, ball: int, k: int) -> bool:
    """Whether the push's path is clear of walls and other balls, judged from the state alone."""
    u = PUSH_DIRECTIONS[k] / np.linalg.norm(PUSH_DIRECTIONS[k])
    p = state[2 * ball : 2 * ball + 2]
    end = p + CLEAR_LENGTH * u
    if not (X_BOUNDS[0] <= end[0] <= X_BOUNDS[1] and Y_BOUNDS[0] <= end[1] <= Y_BOUNDS[1]):
        return False
    for j in range(N_BALLS):
        q = state[2 * j : 2 * j + 2]
        nearest = p + np.clip((q - p) @ u, -0.2, CLEAR_LENGTH) * u  # the pusher starts behind the ball
        if j != ball and np.linalg.norm(nearest - q) < CLEAR_WIDTH:
            return False
    return True


def moved_others(state: np.ndarray, new: np.ndarray, ball: int) -> bool:
    moved = np.linalg.norm((new - state).reshape(N_BALLS, 2), axis=1)
    return bool(np.delete(moved, ball).max() > MOVED)


def push_statistics(n_states: int, rng: np.random.Generator) -> None:
    along: dict[str, list[float]] = {"cardinal": [], "diagonal": []}
    side: dict[str, list[float]] = {"cardinal": [], "diagonal": []}
    chain = np.zeros(N_DIRECTIONS)
    counts = np.zeros(N_DIRECTIONS)
    for _ in range(n_states):
        state = sample_positions(rng)
        for _ in range(10):  # a random-policy trajectory of 10 steps
            a = int(rng.integers(N_ACTIONS))
            ball, k = divmod(a, N_DIRECTIONS)
            new = push(state, a)
            counts[k] += 1
            chain[k] += moved_others(state, new, ball)
            if unobstructed(state, ball, k):
                u = PUSH_DIRECTIONS[k] / np.linalg.norm(PUSH_DIRECTIONS[k])
                d = new[2 * ball : 2 * ball + 2] - state[2 * ball : 2 * ball + 2]
                kind = "cardinal" if k < 4 else "diagonal"
                along[kind].append(float(d @ u))
                side[kind].append(abs(float(d[0] * u[1] - d[1] * u[0])))
            state = new
    print(f"push statistics over {n_states} random states x 10 random steps")
    for kind, ref in (("cardinal", "0.25"), ("diagonal", "0.29-0.33")):
        a, s = np.array(along[kind]), np.array(side[kind])
        print(f"  unobstructed {kind:8s}: along {a.mean():.3f} ± {a.std():.3f}, "
              f"sideways {s.mean():.4f} ± {s.std():.4f}  (n={len(a)}; KALM data: {ref})")
    fractions = chain / counts
    per = ", ".join(f"{n} {f:.0%}" for n, f in zip(DIRECTION_NAMES, fractions, strict=True))
    print(f"  random-policy steps moving another ball > {MOVED}: {chain.sum() / counts.sum():.0%} (by direction: {per})"
          "  (KALM data: 24-54% by direction)")


def steps_per_second(n_steps: int, seed: int) -> None:
    env = ClevrRobotEnv(goal_level="seen")
    rng = np.random.default_rng(seed)
    actions = rng.integers(N_ACTIONS, size=n_steps)
    env.reset(seed=seed)
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    seconds = time.perf_counter() - start
    print(f"env steps/s over {n_steps} random actions (resets included): {n_steps / seconds:.0f}  (goal >= 500)")


def replay_speed(n_episodes: int, n_agents: int, seed: int) -> None:
    from llmrl.envs import clevr_robot

    env = ClevrRobotEnv(goal_level="seen")
    starts = [env.reset(seed=seed + i)[1]["goal"] for i in range(n_episodes)]
    starts = [(goal, sample_positions(np.random.default_rng(seed + i))) for i, goal in enumerate(starts)]

    def evaluate(stuck: bool) -> float:
        steps, began = 0, time.perf_counter()
        for agent in range(n_agents):
            rng = np.random.default_rng(agent)
            for goal, positions in starts:
                env.reset(options={"goal": goal, "positions": positions})
                fixed, done = int(rng.integers(N_ACTIONS)), False
                while not done:
                    _, _, terminated, truncated, _ = env.step(fixed if stuck else int(rng.integers(N_ACTIONS)))
                    steps, done = steps + 1, terminated or truncated
        return steps / (time.perf_counter() - began)

    size = clevr_robot.PUSH_MEMO_SIZE
    for stuck in (True, False):
        rates = {}
        for memo in (False, True):
            clevr_robot._PUSH_MEMO.clear()
            clevr_robot.PUSH_MEMO_SIZE = size if memo else 0
            rates[memo] = evaluate(stuck)
        clevr_robot.PUSH_MEMO_SIZE = size
        kind = "stuck on one push" if stuck else "random pushes"
        print(f"replay, {n_agents} agents x {n_episodes} episodes, {kind}: {rates[False]:.0f} steps/s without the "
              f"push memo, {rates[True]:.0f} with it: {rates[True] / rates[False]:.2f}x")


def expert_success(level: str, n_episodes: int, seed: int, epsilon: float = 0.0) -> None:
    env = ClevrRobotEnv(goal_level=level)
    expert = ClevrExpert(epsilon=epsilon)
    rng = np.random.default_rng(seed)
    successes, lengths, chains, steps_total = 0, [], 0, 0
    start_time = time.perf_counter()
    for episode in range(n_episodes):
        env.reset(seed=seed + episode)
        done, info, steps = False, {}, 0
        while not done:
            a = expert.act(env.positions, env.goal, env.start, rng)
            before = env.positions
            _, _, terminated, truncated, info = env.step(a)
            chains += moved_others(before, env.positions, a // N_DIRECTIONS)
            steps_total += 1
            steps += 1
            done = terminated or truncated
        successes += info["success"]
        if info["success"]:
            lengths.append(steps)
    seconds = time.perf_counter() - start_time
    mean_len = np.mean(lengths) if lengths else float("nan")
    print(f"expert (epsilon {epsilon}) on {level} goals: {successes}/{n_episodes} = {successes / n_episodes:.0%} "
          f"succeed, {mean_len:.1f} steps on success, {seconds / n_episodes:.2f} s/episode; "
          f"{chains / steps_total:.0%} of its steps move another ball > {MOVED}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=300, help="random initial states for push statistics")
    parser.add_argument("--steps", type=int, default=5000, help="random env steps for the speed measurement")
    parser.add_argument("--episodes", type=int, default=200, help="expert episodes per level")
    parser.add_argument("--levels", nargs="+", default=["seen", "easy", "hard"], help="goal levels for the expert")
    parser.add_argument("--replay-episodes", type=int, default=50, help="held-out episodes each replaying agent plays")
    parser.add_argument("--replay-agents", type=int, default=4, help="agents replayed on the same episodes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    push_statistics(args.states, np.random.default_rng(args.seed))
    steps_per_second(args.steps, args.seed)
    replay_speed(args.replay_episodes, args.replay_agents, args.seed)
    for level in args.levels:
        expert_success(level, args.episodes, args.seed)


if __name__ == "__main__":
    main()
