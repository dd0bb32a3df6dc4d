"""What the PETS planner scores with the *true* dynamics on the pets study's evaluation starts —
the reference its thresholds were set against (docs/results/mbrl.md).

    python scripts/mbrl_ceiling.py                      # cpu planner, planner seeds 0 and 1
    python scripts/mbrl_ceiling.py --preset paper --episodes 10

For every task with a torch twin (:data:`llmrl.rl.mbrl.TRUE_DYNAMICS`; not Reacher) the planner of
``llmrl.rl.mbrl.PRESETS[preset]`` plays the study's evaluation episodes (reset seeds
``EVAL_SEED + i``) with the known step and reward, and the returns are printed per start.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from llmrl.recipes.pets import EVAL_SEED, SHORT, evaluate, trial_steps  # noqa: E402
from llmrl.rl import mbrl  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    import gymnasium as gym
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu", choices=sorted(mbrl.PRESETS), help="the planner's settings")
    p.add_argument("--episodes", type=int, default=3, help="evaluation starts (the pets cpu study uses 3)")
    p.add_argument("--planner-seeds", default="0,1")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    config = mbrl.PRESETS[args.preset]
    seeds = [EVAL_SEED + i for i in range(args.episodes)]
    for task, step in mbrl.TRUE_DYNAMICS.items():
        env = gym.make(task, max_episode_steps=trial_steps(task, config.trial_length))
        for planner_seed in (int(s) for s in args.planner_seeds.split(",")):
            agent = mbrl.PETSAgent(step, mbrl.REWARD_FNS[task], config, env.action_space.low, env.action_space.high,
                                   generator=torch.Generator().manual_seed(planner_seed))
            returns, seconds, actions = evaluate(agent.act, lambda i: agent.reset(None), env, seeds)
            print(f"{SHORT[task]}: planner seed {planner_seed}: returns {[round(r, 1) for r in returns]}, "
                  f"mean {np.mean(returns):.1f} ({actions / seconds:.0f} actions/s)", flush=True)
        env.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
