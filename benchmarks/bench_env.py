"""Steps per second of a BabyAI-Text env against its raw MiniGrid level, measured side by side.

Both run the same level class with the same kwargs, the same random actions and the same reset
seeds, unwrapped (no gymnasium checker wrappers). They take turns every ``--block`` steps, so
load from other processes on a shared machine falls on both alike. Goal: text >= 80% of raw.

    python benchmarks/bench_env.py --env BabyAI-Text-MixedTrainLocal-v0 --steps 20000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from typing import Any

import gymnasium as gym
import numpy as np

import llmrl.envs  # noqa: F401  (registers the BabyAI-Text ids)
from llmrl.envs import describe


class Runner:
    """Steps one env through a shared action sequence, resetting with seed, seed+1, ..."""

    def __init__(self, env: Any, seed: int, silence: bool) -> None:
        self.env, self.seed, self.silence = env, seed, silence
        self.seconds, self.episodes = 0.0, 0
        self._reset()

    def _reset(self) -> None:
        # Raw MiniGrid prints each rejected level; the text env silences itself the same way.
        with contextlib.redirect_stdout(io.StringIO()) if self.silence else contextlib.nullcontext():
            self.env.reset(seed=self.seed + self.episodes)

    def run(self, actions: list[int]) -> None:
        start = time.perf_counter()
        for a in actions:
            _, _, terminated, truncated, _ = self.env.step(a)
            if terminated or truncated:
                self.episodes += 1
                self._reset()
        self.seconds += time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="BabyAI-Text-GoToLocal-v0", help="a BabyAI-Text id")
    parser.add_argument("--steps", type=int, default=20_000, help="random steps per env")
    parser.add_argument("--block", type=int, default=500, help="steps per turn before switching env")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    text_env = gym.make(args.env).unwrapped
    raw_env = gym.make(args.env).unwrapped.level  # a fresh level built with the same kwargs
    actions = np.random.default_rng(args.seed).integers(0, 6, size=args.steps).tolist()
    runners = {"raw minigrid": Runner(raw_env, args.seed, True), "BabyAI-Text": Runner(text_env, args.seed, False)}
    for first in range(0, args.steps, args.block):
        for runner in runners.values():
            runner.run(actions[first : first + args.block])

    image = text_env.reset(seed=args.seed)[0]["image"]
    calls = 5_000
    start = time.perf_counter()
    for _ in range(calls):
        describe(image)
    describe_us = 1e6 * (time.perf_counter() - start) / calls

    print(f"{args.env}: {args.steps} random steps each, alternating every {args.block}")
    print(f"{'env':<14} {'steps/s':>9} {'us/step':>8} {'episodes':>9}")
    for name, r in runners.items():
        print(f"{name:<14} {args.steps / r.seconds:>9.0f} {1e6 * r.seconds / args.steps:>8.1f} {r.episodes:>9}")
    ratio = runners["raw minigrid"].seconds / runners["BabyAI-Text"].seconds
    print(f"describe() alone: {describe_us:.1f} us/call")
    print(f"ratio text/raw: {ratio:.1%} (goal >= 80%: {'met' if ratio >= 0.8 else 'NOT met'})")


if __name__ == "__main__":
    main()
