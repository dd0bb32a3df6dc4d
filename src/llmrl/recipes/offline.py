"""Offline RL on D4RL-style data made here: BC, TD3+BC, IQL, CQL and the Decision Transformer.

The check is CORL's ordering on its D4RL table (BC below TD3+BC and IQL, most of all on
medium-replay), not a D4RL number: our datasets come from :mod:`llmrl.data.d4rl` (SAC behaviour
agents on today's Gymnasium tasks) and scores are normalised with their own reference returns.

For every dataset seed in ``seeds`` the recipe makes (or finds in the cache) the task's datasets
from that seed, trains every algorithm on every quality from that seed, and evaluates the policy
on ``eval_episodes`` episodes with seeds disjoint from the data's. The Decision Transformer is
conditioned on targets stated in advance as normalised scores (``dt_targets``; 100 = the expert's
return): its headline is the target 100, and the rest draw the return-conditioning curve (we do
not report the best of several targets).

Run folder: ``records.jsonl`` (one record per dataset × algorithm × seed, with every evaluation
episode's return), ``summary.json``, and ``runs/<quality>-<algo>-s<seed>/`` (each training run's
own folder, so a killed study resumes inside the run it was in).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from llmrl.config import config_from as _config_from
from llmrl.config import require_positive
from llmrl.runs import JsonLines, RunFolder, RunResult, atomic_write_json, read_json_lines
from llmrl.stats import t_interval

RECIPE = "offline"
ALGOS = ("bc", "td3_bc", "iql", "cql", "dt")
EVAL_SEED = 10**7  # evaluation episodes start here (datasets use seeds below 10**5 per task seed)


@dataclass
class OfflineConfig:
    """The offline-RL study's settings; every field lands in the run's ``config.json``."""

    task: str = "pendulum"
    """a task of llmrl.data.d4rl.TASKS (pendulum, halfcheetah, hopper)"""
    qualities: tuple[str, ...] = ("medium", "medium-replay", "expert")
    """dataset qualities (random, medium, medium-replay, expert, medium-expert)"""
    algos: tuple[str, ...] = ALGOS
    seeds: tuple[int, ...] = (0, 1, 2)
    """each seed makes its own datasets (behaviour agent included) and trains every algorithm"""
    gradient_steps: int = 5_000
    """steps of BC, TD3+BC, IQL and CQL (CORL: 1M)"""
    dt_steps: int = 1_000
    """Decision Transformer steps at batch 64 (DT paper: 100k; ~0.2 s a step on one CPU thread)"""
    dt_context: int = 20
    """DT context length K (DT paper: 20)"""
    dt_targets: tuple[float, ...] = (50.0, 100.0, 150.0)
    """DT target returns as normalised scores (100 = the expert's return); 100 is the headline"""
    eval_episodes: int = 10
    sac_steps: int | None = None
    """behaviour-agent budget (None: the task's default, see `llmrl data list`)"""
    dataset_steps: int | None = None
    """steps per dataset (None: the task's default)"""
    torch_threads: int = 1
    label: str = RECIPE

    def __post_init__(self) -> None:
        from llmrl.data import d4rl

        self.qualities, self.algos, self.seeds = tuple(self.qualities), tuple(self.algos), tuple(self.seeds)
        self.dt_targets = tuple(float(t) for t in self.dt_targets)
        if self.task not in d4rl.TASKS:
            raise ValueError(f"task: unknown {self.task!r}; choose from {', '.join(d4rl.TASKS)}")
        for name, given, valid in (("qualities", self.qualities, d4rl.QUALITIES), ("algos", self.algos, ALGOS)):
            bad = [g for g in given if g not in valid]
            if bad or not given:
                raise ValueError(f"{name}: unknown or empty ({bad}); choose from {', '.join(valid)}")
        if "dt" in self.algos and 100.0 not in self.dt_targets:
            raise ValueError("dt_targets must include 100 (the expert's return), the DT's headline target")
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")
        require_positive(self, "gradient_steps", "dt_steps", "dt_context", "eval_episodes", "torch_threads")


Config = OfflineConfig

PRESETS: dict[str, OfflineConfig] = {
    "cpu": OfflineConfig(),
    # CORL's budget on one MuJoCo task (about a day per run on this CPU; not run here).
    "paper": OfflineConfig(task="hopper", qualities=("medium", "medium-replay", "medium-expert"),
                           gradient_steps=1_000_000, dt_steps=100_000, eval_episodes=10, sac_steps=1_000_000,
                           dataset_steps=1_000_000),
    "smoke": OfflineConfig(qualities=("medium",), seeds=(0,), gradient_steps=20, dt_steps=10, dt_context=4,
                           eval_episodes=1, sac_steps=400, dataset_steps=250),
}

_RESUMABLE = ("torch_threads", "label", "seeds", "eval_episodes")


def config_from(preset: str = "cpu", **overrides: Any) -> OfflineConfig:
    return _config_from(PRESETS, preset, overrides)


# --------------------------------------------------------------------------- shared by the offline recipes
def datasets(task: str, quality: str, seed: int, sac_steps: int | None, dataset_steps: int | None,
             progress: bool) -> Any:
    """Dataset ``<task>-<quality>`` of ``seed`` (made and cached on first use)."""
    from llmrl.data import d4rl

    say = (lambda m: print(m, flush=True)) if progress else None
    return d4rl.load(f"{task}-{quality}", seed, sac_steps=sac_steps, dataset_steps=dataset_steps, progress=say)


def dt_config(task: str, steps: int, context: int, seed: int, **changes: Any) -> Any:
    """The DT settings of the DT paper / HF blog, at ``steps`` steps (10% warm-up) on ``task``."""
    import gymnasium as gym

    from llmrl.data import d4rl
    from llmrl.rl.dt import DTConfig

    env = gym.make(d4rl.TASKS[task].env_id)
    return DTConfig(context_len=context, train_steps=steps, warmup_steps=max(1, steps // 10), seed=seed,
                    max_episode_length=int(env.spec.max_episode_steps or 1000), log_every=max(1, steps // 10),
                    checkpoint_every=max(1, steps // 4), **changes)


def target_return(score: float, metadata: dict[str, Any]) -> float:
    """The return whose normalised score is ``score`` (the DT's condition)."""
    lo, hi = metadata["ref_min_score"], metadata["ref_max_score"]
    return lo + score / 100.0 * (hi - lo)


def normalised(returns: Any, metadata: dict[str, Any]) -> list[float] | None:
    """D4RL's normalised scores, or None when the behaviour agent never beat the random policy
    (tiny smoke budgets): the record keeps its raw returns and the summary leaves it out."""
    from llmrl.data import d4rl

    try:
        return d4rl.normalized_score(returns, metadata).tolist()
    except ValueError:
        return None


def run_folder(parent: Path, name: str) -> tuple[Path, bool]:
    """A training run's folder under ``parent`` and whether to resume it (it was started)."""
    path = parent / name
    return path, path.is_dir() and any(path.iterdir())


def summarise(records: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    """Mean normalised score per ``keys`` group with a t-interval over seeds (each seed's score
    is the mean of its evaluation episodes)."""
    groups: dict[tuple, list[float]] = {}
    for r in records:
        if r["normalized"] is None:
            continue
        groups.setdefault(tuple(r[k] for k in keys), []).append(float(np.mean(r["normalized"])))
    out: dict[str, Any] = {}
    for key, scores in sorted(groups.items()):
        mean, lo, hi = t_interval(scores)
        out["/".join(map(str, key))] = {"mean": mean, "low": lo, "high": hi, "seeds": len(scores)}
    return out


# --------------------------------------------------------------------------- the study
def run(config: OfflineConfig, out: str | os.PathLike[str], *, resume: bool = False, progress: bool = True
        ) -> RunResult:
    import gymnasium as gym
    import torch

    from llmrl.data import d4rl
    from llmrl.rl import offline_continuous as oc
    from llmrl.rl.dt import evaluate_dt, make_dt, train_dt

    torch.set_num_threads(config.torch_threads)
    folder = RunFolder(out, RECIPE, config, resume=resume, may_change=_RESUMABLE,
                       identity={"env_id": d4rl.TASKS[config.task].env_id, "label": config.label})
    path = folder.path / "records.jsonl"
    records = read_json_lines(path) if folder.resumed else []
    done = {(r["quality"], r["algo"], r["seed"], r.get("target")) for r in records}
    log = JsonLines(path, "seed", resume_at=math.inf)
    env_id = d4rl.TASKS[config.task].env_id
    space = gym.make(env_id).action_space

    def emit(record: dict[str, Any]) -> None:
        log.write(record)
        log.flush()
        records.append(record)
        if progress:
            t = f" target {record['target']:.0f}" if record.get("target") is not None else ""
            print(f"[{config.label}] {config.task}-{record['quality']} {record['algo']}{t} seed {record['seed']}: "
                  f"return {np.mean(record['returns']):.1f}, score "
                  f"{np.mean(record['normalized']) if record['normalized'] else float('nan'):.1f} "
                  f"({record['seconds']:.0f} s)", flush=True)

    for seed in config.seeds:
        for quality in config.qualities:
            data = datasets(config.task, quality, seed, config.sac_steps, config.dataset_steps, progress)
            meta = data.metadata
            for algo in config.algos:
                targets = config.dt_targets if algo == "dt" else (None,)
                if all((quality, algo, seed, t) in done for t in targets):
                    continue
                t0 = time.time()
                run_path, again = run_folder(folder.path / "runs", f"{quality}-{algo}-s{seed}")
                if algo == "dt":
                    agent = train_dt(dt_config(config.task, config.dt_steps, config.dt_context, seed), data,
                                     out_dir=run_path, resume=again)
                    evaluations = {t: evaluate_dt(agent, env_id, target_return(t, meta), config.eval_episodes,
                                                  EVAL_SEED + 1000 * seed) for t in targets}
                else:
                    c = replace(oc.PRESETS[algo], gradient_steps=config.gradient_steps, seed=seed,
                                action_low=tuple(map(float, space.low)), action_high=tuple(map(float, space.high)),
                                log_every=max(1, config.gradient_steps // 10),
                                checkpoint_every=max(1, config.gradient_steps // 4))
                    agent = oc.train_offline_continuous(c, data.transitions(), out_dir=run_path, resume=again)
                    evaluations = {None: oc.evaluate_returns(agent, env_id, config.eval_episodes,
                                                             EVAL_SEED + 1000 * seed)}
                seconds = time.time() - t0
                for t, returns in evaluations.items():
                    emit({"task": config.task, "quality": quality, "algo": algo, "seed": seed, "target": t,
                          "returns": returns, "normalized": normalised(returns, meta),
                          "dataset_sha256": meta["sha256"], "ref_min_score": meta["ref_min_score"],
                      "ref_max_score": meta["ref_max_score"], "dataset_return_mean": float(data.returns().mean()),
                          "seconds": seconds})
    log.close()
    headline = [r for r in records if r["target"] in (None, 100.0)]
    summary = {"scores": summarise(headline, ("quality", "algo")),
               "dt_curve": summarise([r for r in records if r["algo"] == "dt"], ("quality", "target")),
               "task": config.task, "env_id": env_id}
    atomic_write_json(folder.path / "summary.json", summary)
    metrics = {k: v["mean"] for k, v in summary["scores"].items()}
    folder.finish(metrics)
    return RunResult(RECIPE, folder.path, metrics, {"records": path, "summary": folder.path / "summary.json"},
                     report=table(summary["scores"], config.qualities, config.algos))


def table(scores: dict[str, Any], rows: tuple[str, ...], columns: tuple[str, ...]) -> str:
    """A Markdown table of mean normalised scores [95% t-interval]."""
    lines = ["| dataset | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row in rows:
        cells = []
        for col in columns:
            s = scores.get(f"{row}/{col}")
            cells.append("" if s is None else f"{s['mean']:.1f} [{s['low']:.1f}, {s['high']:.1f}]")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
