"""LaMo: is a pre-trained LM a better Decision Transformer than a fresh one, most of all on scarce data?

LaMo's claim (Shi et al., ICLR 2024): a DT whose transformer is a pre-trained LM (frozen, LoRA,
MLP embeddings, a language loss kept on the side) beats the same architecture trained from random
weights and a small DT, and the gap is widest when only a small fraction of the data is given.

Three models on the same windows of the same episodes, at each data fraction:

* ``lamo``: the LM (``model``, gemma-3-270m by default) grafted into a DT
  (:func:`llmrl.roles.offline_backbone.graft_lm`), LoRA rank ``lora_r``, language loss weight
  ``co_lambda`` on English prose (:class:`~llmrl.roles.offline_backbone.LanguageLoss`);
* ``lamo-random``: the same architecture with random weights, all trained, no language loss
  (LaMo's "without pre-training");
* ``dt``: the DT paper's small model (128 wide, 3 layers, 1 head).

A fraction keeps the first ⌈f·N⌉ episodes of a seeded shuffle of the dataset (at least one). Every
model is evaluated with the target return stated in advance (the expert's, normalised score 100).

Run folder: ``records.jsonl`` (one record per fraction × model × seed with every evaluation
episode's return), ``summary.json`` and ``runs/`` (each training run's folder, resumable).
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmrl.config import config_from as _config_from
from llmrl.config import require_positive
from llmrl.recipes.offline import EVAL_SEED, datasets, dt_config, normalised, run_folder, summarise, target_return
from llmrl.runs import JsonLines, RunFolder, RunResult, atomic_write_json, read_json_lines

RECIPE = "lamo"
VARIANTS = ("lamo", "lamo-random", "dt")


@dataclass
class LaMoConfig:
    """The LaMo study's settings; every field lands in the run's ``config.json``."""

    model: str = "gemma-3-270m"
    """the pre-trained LM (any local Hugging Face causal LM: a registered name, folder or .gguf)"""
    task: str = "pendulum"
    quality: str = "medium"
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0)
    """fractions of the dataset's episodes given to every model (LaMo: 1%, 10%, 100%)"""
    variants: tuple[str, ...] = VARIANTS
    seeds: tuple[int, ...] = (0, 1, 2)
    """each seed makes its own dataset and draws its own fraction"""
    steps: int = 100
    """gradient steps per model (LaMo: 100k; gemma-3-270m takes ~1.5 s a step on one CPU thread)"""
    batch_size: int = 16
    context: int = 5
    """context length K (LaMo: 20 on MuJoCo, 5 on Reacher2d)"""
    learning_rate: float = 1e-4
    """LaMo's rate for the embeddings and heads (it gives LoRA 1e-5; one rate here, see the doc)"""
    weight_decay: float = 1e-5
    lora_r: int = 8
    co_lambda: float = 0.1
    """weight of the language loss (LaMo: 0.1)"""
    lm_tokens: int = 32
    """tokens per language-loss window (one window per step)"""
    eval_episodes: int = 3
    """evaluation episodes per model (the same starts for every model; ~0.1 s per LaMo action on a CPU)"""
    sac_steps: int | None = None
    dataset_steps: int | None = None
    torch_threads: int = 1
    label: str = RECIPE

    def __post_init__(self) -> None:
        self.fractions, self.variants, self.seeds = tuple(map(float, self.fractions)), tuple(self.variants), tuple(
            self.seeds)
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad or not self.variants:
            raise ValueError(f"variants: unknown or empty ({bad}); choose from {', '.join(VARIANTS)}")
        if not self.fractions or any(not 0 < f <= 1 for f in self.fractions):
            raise ValueError(f"fractions must lie in (0, 1], got {self.fractions}")
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")
        if self.co_lambda < 0:
            raise ValueError(f"co_lambda must be >= 0, got {self.co_lambda}")
        require_positive(self, "steps", "batch_size", "context", "learning_rate", "lora_r", "lm_tokens",
                         "eval_episodes", "torch_threads")


Config = LaMoConfig

PRESETS: dict[str, LaMoConfig] = {
    "cpu": LaMoConfig(),
    # LaMo's D4RL settings (GPT-2 small there): K 20, batch 64, 100k steps, 20 evaluation episodes.
    "paper": LaMoConfig(task="hopper", steps=100_000, batch_size=64, context=20, eval_episodes=20,
                        sac_steps=1_000_000, dataset_steps=1_000_000),
    "smoke": LaMoConfig(model="smollm2-135m-instruct", fractions=(0.5,), seeds=(0,), steps=2, batch_size=2, context=2,
                        eval_episodes=1, sac_steps=400, dataset_steps=250),
}

_RESUMABLE = ("torch_threads", "label", "seeds", "eval_episodes")


def config_from(preset: str = "cpu", **overrides: Any) -> LaMoConfig:
    return _config_from(PRESETS, preset, overrides)


def fraction_of(episodes: list[Any], fraction: float, seed: int) -> list[Any]:
    """The first ⌈fraction·N⌉ (at least one) episodes of a shuffle seeded by ``seed``."""
    order = np.random.default_rng(seed).permutation(len(episodes))
    return [episodes[i] for i in order[:max(1, math.ceil(fraction * len(episodes)))]]


class _Backbones:
    """One pre-trained LM per process, copied for every run (loading it is the slow part)."""

    def __init__(self, name: str) -> None:
        self.name, self.base = name, None

    def get(self, pretrained: bool, seed: int) -> Any:
        from llmrl.roles.offline_backbone import load_backbone, random_like

        if self.base is None:
            self.base = load_backbone(self.name)
        if not pretrained:  # the same architecture, fresh weights: no second load from disk
            return random_like(self.base, seed)
        fresh = copy.deepcopy(self.base)
        fresh.tokenizer = self.base.tokenizer
        return fresh


def build(variant: str, config: LaMoConfig, state_dim: int, act_dim: int, action_scale: Any, seed: int,
          backbones: _Backbones) -> tuple[Any, Any, Any]:
    """(DTConfig, model, aux_loss) of one variant."""
    from llmrl.rl.dt import make_dt
    from llmrl.roles.offline_backbone import LanguageLoss, graft_lm

    common = dict(batch_size=config.batch_size, learning_rate=config.learning_rate, weight_decay=config.weight_decay)
    if variant == "dt":
        c = dt_config(config.task, config.steps, config.context, seed, **common)
        return c, make_dt(c, state_dim, act_dim, action_scale), None
    lm = backbones.get(variant == "lamo", seed)
    hidden = lm.config.get_text_config().hidden_size
    # n_layer 1: make_dt's own GPT-2 body is replaced at once by the LM's.
    c = dt_config(config.task, config.steps, config.context, seed, hidden_size=hidden, n_layer=1, n_head=1, **common)
    model = graft_lm(make_dt(c, state_dim, act_dim, action_scale), lm,
                     lora_r=config.lora_r if variant == "lamo" else None, seed=seed)
    aux = None
    if variant == "lamo" and config.co_lambda > 0:
        aux = LanguageLoss(lm, lm.tokenizer, weight=config.co_lambda, tokens=config.lm_tokens)
    return c, model, aux


def run(config: LaMoConfig, out: str | os.PathLike[str], *, resume: bool = False, progress: bool = True
        ) -> RunResult:
    import gymnasium as gym
    import torch

    from llmrl.data import d4rl
    from llmrl.rl.dt import evaluate_dt, train_dt

    torch.set_num_threads(config.torch_threads)
    env_id = d4rl.TASKS[config.task].env_id
    folder = RunFolder(out, RECIPE, config, resume=resume, may_change=_RESUMABLE,
                       identity={"env_id": env_id, "model": config.model, "label": config.label})
    path = folder.path / "records.jsonl"
    records = read_json_lines(path) if folder.resumed else []
    done = {(r["fraction"], r["variant"], r["seed"]) for r in records}
    log = JsonLines(path, "seed", resume_at=math.inf)
    space = gym.make(env_id).action_space
    scale = np.maximum(np.abs(space.low), np.abs(space.high))
    backbones = _Backbones(config.model)
    for seed in config.seeds:
        data = datasets(config.task, config.quality, seed, config.sac_steps, config.dataset_steps, progress)
        meta = data.metadata
        for fraction in config.fractions:
            part = fraction_of(list(data), fraction, seed)
            for variant in config.variants:
                if (fraction, variant, seed) in done:
                    continue
                t0 = time.time()
                c, model, aux = build(variant, config, data.obs_dim, data.act_dim, scale, seed, backbones)
                run_path, again = run_folder(folder.path / "runs", f"f{fraction:g}-{variant}-s{seed}")
                model = train_dt(c, part, model=model, aux_loss=aux, out_dir=run_path, resume=again)
                train_s = time.time() - t0
                returns = evaluate_dt(model, env_id, target_return(100.0, meta), config.eval_episodes,
                                      EVAL_SEED + 1000 * seed)
                record = {"task": config.task, "quality": config.quality, "fraction": fraction, "variant": variant,
                          "seed": seed, "episodes": len(part), "steps_in_data": int(sum(len(e) for e in part)),
                          "returns": returns, "normalized": normalised(returns, meta),
                          "trainable_params": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
                          "dataset_sha256": meta["sha256"], "ref_min_score": meta["ref_min_score"],
                      "ref_max_score": meta["ref_max_score"], "train_seconds": train_s,
                          "seconds": time.time() - t0}
                log.write(record)
                log.flush()
                records.append(record)
                if progress:
                    score = np.mean(record["normalized"]) if record["normalized"] else float("nan")
                    print(f"[{config.label}] {fraction:g} of {config.task}-{config.quality} {variant} seed {seed}: "
                          f"return {np.mean(returns):.1f}, score {score:.1f} ({record['seconds']:.0f} s)", flush=True)
    log.close()
    summary = {"scores": summarise(records, ("fraction", "variant")), "task": config.task, "quality": config.quality,
               "model": config.model}
    atomic_write_json(folder.path / "summary.json", summary)
    metrics = {k: v["mean"] for k, v in summary["scores"].items()}
    folder.finish(metrics)
    return RunResult(RECIPE, folder.path, metrics, {"records": path, "summary": folder.path / "summary.json"})
