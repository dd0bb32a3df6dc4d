"""Online Decision Transformer: pre-train offline, fine-tune online, compare with the DT it came from.

ODT's claim (Zheng, Zhang & Grover, ICML 2022): after offline pre-training, fine-tuning online
(a stochastic policy with an entropy constraint, a FIFO buffer of whole trajectories whose
returns-to-go are relabelled in hindsight, exploration conditioned on a high return) lifts the
score further (hopper-medium about 67 → 97.5), where a plain DT has no way to improve online.

Per seed, on the dataset ``<task>-<quality>`` made from that seed:

* ``dt``: the deterministic DT trained offline for ``pretrain_steps`` (the baseline);
* ``odt-offline``: the stochastic ODT after the same offline steps (before fine-tuning);
* ``odt-online``: the same run continued (its checkpoint copied, so the optimiser and the entropy
  weight λ carry over as in one online-dt process) for ``online_iterations`` of fine-tuning
  (``rollouts_per_iteration`` episodes and ``updates_per_iteration`` steps each).

Every model is evaluated on the same ``eval_episodes`` seeds with the mean action, conditioned on
the expert's return (normalised score 100, ``eval_score``); exploration is conditioned on
``online_score`` (online-dt: twice the evaluation target). The learning curve during fine-tuning is
in ``runs/online-s<seed>/progress.csv``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmrl.config import config_from as _config_from
from llmrl.config import require_positive
from llmrl.recipes.offline import EVAL_SEED, datasets, dt_config, normalised, run_folder, summarise, target_return
from llmrl.runs import JsonLines, RunFolder, RunResult, atomic_write_json, read_json_lines

RECIPE = "odt"
KINDS = ("dt", "odt-offline", "odt-online")


@dataclass
class ODTConfig:
    """The ODT study's settings; every field lands in the run's ``config.json``."""

    task: str = "pendulum"
    quality: str = "medium"
    seeds: tuple[int, ...] = (0, 1, 2)
    kinds: tuple[str, ...] = KINDS
    """what to train: dt, odt-offline, odt-online (odt-online continues odt-offline's run)"""
    pretrain_steps: int = 1_000
    """offline steps of the DT and of the ODT (online-dt: 5k-10k on hopper at width 512)"""
    online_iterations: int = 10
    """online iterations (online-dt: 1500); each adds rollouts_per_iteration episodes"""
    updates_per_iteration: int = 100
    """gradient steps per online iteration (online-dt: 300; ~0.2 s a step on one CPU thread)"""
    rollouts_per_iteration: int = 1
    context: int = 20
    eval_context: int = 5
    """history the ODT acts on (online-dt: 5)"""
    eval_score: float = 100.0
    """evaluation target, as a normalised score (100 = the expert's return)"""
    online_score: float = 200.0
    """exploration target, as a normalised score (online-dt: twice the evaluation target)"""
    eval_every: int = 5
    eval_episodes: int = 10
    sac_steps: int | None = None
    dataset_steps: int | None = None
    torch_threads: int = 1
    label: str = RECIPE

    def __post_init__(self) -> None:
        self.seeds, self.kinds = tuple(self.seeds), tuple(self.kinds)
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds:
            raise ValueError(f"kinds: unknown or empty ({bad}); choose from {', '.join(KINDS)}")
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")
        if self.eval_context > self.context:
            raise ValueError(f"eval_context ({self.eval_context}) must not exceed context ({self.context})")
        require_positive(self, "pretrain_steps", "online_iterations", "updates_per_iteration",
                         "rollouts_per_iteration", "context", "eval_context", "eval_every", "eval_episodes",
                         "torch_threads")


Config = ODTConfig

PRESETS: dict[str, ODTConfig] = {
    "cpu": ODTConfig(),
    # online-dt's hopper settings (the width-512, 4-layer model is set in the run below for paper).
    "paper": ODTConfig(task="hopper", pretrain_steps=10_000, online_iterations=1_500, updates_per_iteration=300,
                       eval_every=10, sac_steps=1_000_000, dataset_steps=1_000_000),
    "smoke": ODTConfig(seeds=(0,), pretrain_steps=4, online_iterations=2, updates_per_iteration=2, context=4,
                       eval_context=2, eval_every=1, eval_episodes=1, sac_steps=400, dataset_steps=250),
}

_RESUMABLE = ("torch_threads", "label", "seeds", "eval_episodes")


def config_from(preset: str = "cpu", **overrides: Any) -> ODTConfig:
    return _config_from(PRESETS, preset, overrides)


def run(config: ODTConfig, out: str | os.PathLike[str], *, resume: bool = False, progress: bool = True
        ) -> RunResult:
    import torch

    from llmrl.data import d4rl
    from llmrl.rl.dt import evaluate_dt, train_dt, train_odt

    torch.set_num_threads(config.torch_threads)
    env_id = d4rl.TASKS[config.task].env_id
    folder = RunFolder(out, RECIPE, config, resume=resume, may_change=_RESUMABLE,
                       identity={"env_id": env_id, "label": config.label})
    path = folder.path / "records.jsonl"
    records = read_json_lines(path) if folder.resumed else []
    done = {(r["kind"], r["seed"]) for r in records}
    log = JsonLines(path, "seed", resume_at=math.inf)
    wide = config.task != "pendulum" and config.pretrain_steps >= 10_000  # the paper preset: online-dt's model

    for seed in config.seeds:
        data = datasets(config.task, config.quality, seed, config.sac_steps, config.dataset_steps, progress)
        meta = data.metadata
        size = dict(hidden_size=512, n_layer=4, n_head=4, batch_size=256, weight_decay=5e-4) if wide else {}
        odt = dt_config(config.task, config.pretrain_steps, config.context, seed, stochastic=True,
                        eval_context_len=config.eval_context, online_iterations=0,
                        updates_per_iteration=config.updates_per_iteration,
                        rollouts_per_iteration=config.rollouts_per_iteration,
                        online_rtg=target_return(config.online_score, meta),
                        eval_rtg=target_return(config.eval_score, meta), eval_every=config.eval_every,
                        eval_episodes=config.eval_episodes, **size)
        evaluate = lambda model, ctx: evaluate_dt(model, env_id, target_return(config.eval_score, meta),  # noqa: E731
                                                  config.eval_episodes, EVAL_SEED + 1000 * seed, context_len=ctx)
        for kind in config.kinds:
            if (kind, seed) in done:
                continue
            t0 = time.time()
            extra: dict[str, Any] = {}
            if kind == "dt":
                c = dt_config(config.task, config.pretrain_steps, config.context, seed, **size)
                run_path, again = run_folder(folder.path / "runs", f"dt-s{seed}")
                returns = evaluate(train_dt(c, data, out_dir=run_path, resume=again), None)
            elif kind == "odt-offline":
                run_path, again = run_folder(folder.path / "runs", f"offline-s{seed}")
                returns = evaluate(train_odt(odt, data, env_id, out_dir=run_path, resume=again), config.eval_context)
            else:
                # Continue the pre-training run itself: its checkpoint holds the optimiser and λ.
                pre, _ = run_folder(folder.path / "runs", f"offline-s{seed}")
                run_path, again = run_folder(folder.path / "runs", f"online-s{seed}")
                if not again:
                    if not (pre / "done.json").exists():
                        raise ValueError(f"odt-online continues {pre}, which has not finished: keep odt-offline in "
                                         "kinds (before odt-online)")
                    shutil.copytree(pre, run_path, ignore=shutil.ignore_patterns("done.json", "agent.pt"))
                c = _replace(odt, online_iterations=config.online_iterations)
                model = train_odt(c, data, env_id, out_dir=run_path, resume=True)
                returns = evaluate(model, config.eval_context)
                extra["env_steps"] = json.loads((run_path / "done.json").read_text())["env_steps"]
            record = {"task": config.task, "quality": config.quality, "kind": kind, "seed": seed, "returns": returns,
                      "normalized": normalised(returns, meta), "dataset_sha256": meta["sha256"],
                      "ref_min_score": meta["ref_min_score"], "ref_max_score": meta["ref_max_score"],
                      "seconds": time.time() - t0, **extra}
            log.write(record)
            log.flush()
            records.append(record)
            if progress:
                score = np.mean(record["normalized"]) if record["normalized"] else float("nan")
                print(f"[{config.label}] {config.task}-{config.quality} {kind} seed {seed}: return "
                      f"{np.mean(returns):.1f}, score {score:.1f} ({record['seconds']:.0f} s)", flush=True)
    log.close()
    summary = {"scores": summarise(records, ("kind",)), "task": config.task, "quality": config.quality}
    atomic_write_json(folder.path / "summary.json", summary)
    metrics = {k: v["mean"] for k, v in summary["scores"].items()}
    folder.finish(metrics)
    return RunResult(RECIPE, folder.path, metrics, {"records": path, "summary": folder.path / "summary.json"})


def _replace(config: Any, **changes: Any) -> Any:
    from dataclasses import replace

    return replace(config, **changes)
