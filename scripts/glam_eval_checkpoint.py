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
    from llmrl.config import from_dict
    from llmrl.evaluation import write_results
    from llmrl.recipes.symbolic_ppo import (
        SymbolicPPOConfig,
        held_out_evaluation,
        load_checkpoint,
    )

    folder = Path(run)
    config = from_dict(SymbolicPPOConfig, json.loads((folder / "config.json").read_text())["config"])
    ckpt = folder / "checkpoints" / f"step_{int(step):09d}.zip"
    if not ckpt.exists():
        raise SystemExit(f"{ckpt} not found: the run has no checkpoint at step {step}")
    label = f"{config.label}@{int(step)}"
    result = held_out_evaluation(load_checkpoint(config, ckpt), config, label)
    write_results([result], folder / f"eval-{int(step)}", meta={"checkpoint": str(ckpt), "deterministic": False})
    print(f"{label}: success {result.summary()['success_rate']:.2f}")

if __name__ == "__main__":
    main(*sys.argv[1:3])
