"""Evaluate a Symbolic-PPO run's checkpoint at a given env step on the held-out levels the GLAM
recipe uses (the run's eval_seed and eval_episodes), sampling as the run's own evaluation does:
the baseline at the LM policy's budget. Writes <run>/eval-<step>/results.json and .md.

    python scripts/glam_eval_checkpoint.py runs/glam/symbolic-lstm-s0 8192
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(run: str, step: str) -> None:
    import gymnasium as gym

    import llmrl.envs  # noqa: F401
    from llmrl.agents.sb3 import SB3PolicyAgent
    from llmrl.evaluation import evaluate, write_results

    folder = Path(run)
    config = json.loads((folder / "config.json").read_text())["config"]
    ckpt = folder / "checkpoints" / f"step_{int(step):09d}.zip"
    if not ckpt.exists():
        raise SystemExit(f"{ckpt} not found: the run has no checkpoint at step {step}")
    if config.get("memory"):
        from sb3_contrib import RecurrentPPO as Algo
    else:
        from stable_baselines3 import PPO as Algo
    model = Algo.load(ckpt, device="cpu")
    label = f"{config['label']}@{int(step)}"
    agent = SB3PolicyAgent(model, deterministic=False, name=label, seed=config["seed"])
    result = evaluate(agent, lambda: gym.make(config["env_id"]), n_episodes=config["eval_episodes"],
                      n_envs=min(config["n_envs"], config["eval_episodes"]), seed=config["eval_seed"],
                      env_id=config["env_id"])
    write_results([result], folder / f"eval-{int(step)}", meta={"checkpoint": str(ckpt), "deterministic": False})
    print(f"{label}: success {result.summary()['success_rate']:.2f}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
