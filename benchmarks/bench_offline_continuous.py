"""Gradient steps per second of the continuous-action offline-RL algorithms at CORL's sizes, on CPU.

    python benchmarks/bench_offline_continuous.py                  # 1 thread, HalfCheetah-sized data
    python benchmarks/bench_offline_continuous.py --threads 2 --algos td3_bc,iql

Each algorithm runs its ``PRESETS`` entry (CORL's D4RL values: 256-256 MLPs, 256-256-256 for CQL,
batch 256) through ``train_offline_continuous`` on 100k random transitions shaped like
halfcheetah (17-d observations, 6-d actions); the first block of steps warms up, the second is
timed. The last column is what CORL's 1M gradient steps would take at that speed.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch

from llmrl.data.episodes import Transitions
from llmrl.rl.offline_continuous import ALGOS, PRESETS, train_offline_continuous

STEPS = {"bc": 400, "td3_bc": 200, "iql": 150, "cql": 30}  # timed steps per algorithm, a few seconds each


def random_transitions(n: int, obs_dim: int, act_dim: int, seed: int = 0) -> Transitions:
    rng = np.random.default_rng(seed)
    return Transitions(
        observations=rng.normal(size=(n, obs_dim)).astype(np.float32),
        actions=rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        next_observations=rng.normal(size=(n, obs_dim)).astype(np.float32),
        terminals=rng.random(n) < 0.001, timeouts=np.zeros(n, bool),
        goal_ids=np.zeros(n, np.int64), goals=[""],
    )  # fmt: skip


def steps_per_second(algo: str, data: Transitions, steps: int) -> float:
    """Steps/s over ``steps`` timed steps, after as many warm-up steps."""
    rows: list[dict] = []
    config = replace(PRESETS[algo], gradient_steps=2 * steps, log_every=steps)
    train_offline_continuous(config, data, progress=lambda step, row: rows.append(row))
    return rows[-1]["steps_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", default=",".join(ALGOS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--transitions", type=int, default=100_000)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the timed steps per algorithm")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = random_transitions(args.transitions, obs_dim=17, act_dim=6)
    print(f"{args.transitions:,} transitions (17-d obs, 6-d actions), batch 256, torch {torch.__version__}, "
          f"{args.threads} thread(s)")
    print("| algo | networks | steps/s | ms/step | CORL's 1M steps (h) |")
    print("|---|---|---:|---:|---:|")
    for algo in args.algos.split(","):
        c = PRESETS[algo]
        nets = {"bc": "actor", "td3_bc": "actor + 2 critics", "iql": "actor + 2 critics + V",
                "cql": f"actor + 2 critics, {3 * c.cql_n_actions} sampled actions"}[algo]  # fmt: skip
        sps = steps_per_second(algo, data, max(int(STEPS[algo] * args.scale), 1))
        sizes = "-".join(str(h) for h in c.hidden_sizes)
        print(f"| {algo} | {nets} ({sizes}) | {sps:.0f} | {1000 / sps:.1f} | {1e6 / sps / 3600:.1f} |")


if __name__ == "__main__":
    main()
