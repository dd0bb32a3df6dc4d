"""What a curriculum teacher costs per episode, and ALP-GMM vs uniform on teachDeepRL's ToyEnv.

    python benchmarks/bench_curriculum.py                          # overheads only (~10 s)
    python benchmarks/bench_curriculum.py --toy 5000,10000 --seeds 0,1,2

Overhead: microseconds per ``sample()`` + ``update()`` pair for each teacher, in steady state
(ALP-GMM past its bootstrap with a fitted mixture, its fits excluded; PLR and learning progress
with every level seen), beside the time of one ALP-GMM refit (nine GMMs, k = 2..10, on 250
points). Against an episode of even a cheap env (a BabyAI episode of ~30 steps at ~4,500
steps/s is ~7 ms) the teacher should stay below 1%.

``--toy``: % of ToyEnv cells mastered (10x10 grid, teachDeepRL's rules) after each number of
episodes, per seed, for ALP-GMM (its defaults) and uniform sampling; frontier.md §6 reports
4.3% vs 0 at 5k and 32% vs 4% at 20k. Run it with one thread: OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from gymnasium import spaces

from llmrl.envs.toy_env import ToyEnv
from llmrl.rl.curriculum import ALPGMM, Curriculum, make_curriculum, run_toy_env

UNIT_SQUARE = spaces.Box(0.0, 1.0, (2,))


def per_episode_us(cur: Curriculum, n: int, rng: np.random.Generator, **extra: object) -> float:
    """Mean microseconds of one sample() + update() pair (ALP-GMM refits subtracted)."""
    fit_before = getattr(cur, "fit_seconds", 0.0)
    returns = rng.random(n)
    start = time.perf_counter()
    for r in returns:
        cur.update(cur.sample(), float(r), **extra)
    elapsed = time.perf_counter() - start - (getattr(cur, "fit_seconds", 0.0) - fit_before)
    return 1e6 * elapsed / max(n, 1)


def overheads(n: int, n_levels: int) -> None:
    rng = np.random.default_rng(0)
    adv = {"advantages": rng.normal(size=64)}
    rows = []
    for name, space, warm in (("uniform", UNIT_SQUARE, 0), ("alp_gmm", UNIT_SQUARE, 2000),
                              ("plr", n_levels, 2 * n_levels), ("learning_progress", n_levels, 2 * n_levels)):
        cur = make_curriculum(name, space, seed=0)
        per_episode_us(cur, warm, rng, **adv)  # past bootstraps / unseen levels
        rows.append((name, space if isinstance(space, int) else "Box(2)", per_episode_us(cur, n, rng, **adv)))
    print(f"{'teacher':<20}{'tasks':>8}{'us per sample+update':>24}")
    for name, space, us in rows:
        print(f"{name:<20}{space!s:>8}{us:>24.1f}")

    cur = ALPGMM(UNIT_SQUARE, seed=0)
    env = ToyEnv()
    for _ in range(2000):  # a realistic (task, ALP) cloud: ALP-GMM on the ToyEnv
        task = cur.sample()
        cur.update(task, env.episode(task))
    times = []
    for _ in range(5):
        start = time.perf_counter()
        cur.fit()
        times.append(time.perf_counter() - start)
    print(f"ALP-GMM refit (9 GMMs on 250 points): median {1e3 * np.median(times):.0f} ms "
          f"= {1e6 * np.median(times) / 250:.0f} us per episode at fit_rate 250")


def toy_table(checkpoints: list[int], seeds: list[int]) -> None:
    n = max(checkpoints)
    results: dict[str, list[list[float]]] = {"uniform": [], "alp_gmm": []}
    for name in results:
        for seed in seeds:
            start = time.perf_counter()
            scores = run_toy_env(make_curriculum(name, UNIT_SQUARE, seed=seed), n, score_every=1000)
            results[name].append([scores[c // 1000] for c in checkpoints])
            print(f"  {name} seed {seed}: {results[name][-1]} ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"\n% ToyEnv cells mastered, mean ± std over seeds {seeds}")
    print(f"{'episodes':<10}" + "".join(f"{c:>14}" for c in checkpoints))
    for name, rows in results.items():
        a = np.array(rows)
        print(f"{name:<10}" + "".join(f"{m:>8.1f} ± {s:<3.1f}" for m, s in zip(a.mean(0), a.std(0), strict=True)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=5000, help="timed sample+update pairs per teacher")
    p.add_argument("--levels", type=int, default=200, help="discrete tasks for PLR and learning progress")
    p.add_argument("--toy", default="", help="comma-separated episode counts (multiples of 1000) for the ToyEnv table")
    p.add_argument("--seeds", default="0,1,2")
    args = p.parse_args()
    overheads(args.episodes, args.levels)
    if args.toy:
        checkpoints = [int(c) for c in args.toy.split(",")]
        if any(c % 1000 for c in checkpoints):
            raise SystemExit("--toy episode counts must be multiples of 1000")
        toy_table(checkpoints, [int(s) for s in args.seeds.split(",")])


if __name__ == "__main__":
    main()
