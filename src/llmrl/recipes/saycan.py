"""SayCan (Ahn et al., "Do As I Can, Not As I Say", 2022) on multi-step BabyAI levels.

Skills and their controllers are :mod:`llmrl.envs.babyai_skills`; the planner is
:mod:`llmrl.roles.planner`. Per seed:

1. **Affordances.** The agent tries random skills in ``affordance_episodes`` training episodes of
   every level (reset seeds disjoint from the test ones) and records whether each worked; an MLP
   learns P(success | observation, skill) from that. The env steps this costs are logged: they
   are the budget a learned policy gets at "equal env steps".
2. **Planning.** On ``episodes`` test episodes per level each mode plans and executes: ``saycan``
   (LM × affordance), ``lm`` (LM only), ``affordance`` (value only).

Per episode we log execution success (BabyAI's verifier accepts the episode), plan success (the
episode succeeded and every skill the planner chose could run: a correct plan, with no skill
proposed that the state did not afford), skills chosen, env steps and LM calls.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from llmrl.config import config_from as _config_from
from llmrl.config import require_positive
from llmrl.envs import babyai_skills as S
from llmrl.roles.planner import MODES, AffordanceModel, SayCanPlanner
from llmrl.runs import (
    JsonLines,
    RunFolder,
    RunResult,
    atomic_torch_save,
    atomic_write_json,
    read_json_lines,
)
from llmrl.stats import t_interval

RECIPE = "saycan"
LEVELS = ("BabyAI-UnlockLocal-v0", "BabyAI-PutNextLocal-v0", "BabyAI-UnlockPickup-v0")
_TEST_SEED = 1_000_000  # test episodes reset with seeds from here; training ones below it


@dataclass
class SayCanConfig:
    """SayCan's settings; every field lands in the run's ``config.json``."""

    model: str = "gemma-3-270m"
    """the LM that scores skills (any llmrl model name that returns log-likelihoods)"""
    dtype: str = "fp32"
    levels: tuple[str, ...] = LEVELS
    """MiniGrid/BabyAI ids whose missions take several skills"""
    modes: tuple[str, ...] = MODES
    seeds: int = 3
    episodes: int = 20
    """test episodes per level and seed (every mode plays the same ones)"""
    affordance_episodes: int = 300
    """training episodes per level in which random skills are tried"""
    random_skills: int = 6
    """skills tried per affordance episode"""
    normalise_length: bool = True
    """the LM scores a skill by its mean token log-probability (False: the sum)"""
    max_decisions: int = 8
    """skills the planner may choose in an episode (done included)"""
    skill_steps: int = 64
    """primitive steps one skill may take"""
    affordance_epochs: int = 300
    torch_threads: int = 2
    label: str = RECIPE

    def __post_init__(self) -> None:
        self.levels, self.modes = tuple(self.levels), tuple(self.modes)
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise ValueError(f"modes: unknown or none given ({bad}); choose from {', '.join(MODES)}")
        for level in self.levels:
            if level not in gym.registry:
                import minigrid  # noqa: F401 - registers the BabyAI ids

            if level not in gym.registry:
                raise ValueError(f"unknown level {level!r}: give a registered MiniGrid/BabyAI id such as {LEVELS[0]}")
        require_positive(self, "seeds", "episodes", "affordance_episodes", "random_skills", "max_decisions",
                         "skill_steps", "affordance_epochs", "torch_threads")  # fmt: skip


Config = SayCanConfig

PRESETS: dict[str, SayCanConfig] = {
    "cpu": SayCanConfig(),
    # SayCan's 101 instructions over 7 families; we test 3 levels x 40 missions per seed.
    "paper": SayCanConfig(episodes=40, affordance_episodes=1000),
    "smoke": SayCanConfig(levels=("BabyAI-UnlockLocal-v0",), seeds=1, episodes=2, affordance_episodes=4,
                          max_decisions=3, affordance_epochs=20),
}

_RESUMABLE = ("torch_threads", "label", "seeds", "modes")


def config_from(preset: str = "cpu", **overrides: Any) -> SayCanConfig:
    return _config_from(PRESETS, preset, overrides)


def _make(level: str) -> gym.Env:
    import minigrid  # noqa: F401 - registers the BabyAI ids

    return gym.make(level)


def _lm(config: SayCanConfig) -> Any:
    from llmrl.lm import load_model

    return load_model(config.model, **({} if ":" in config.model else {"dtype": config.dtype}))


def collect_affordances(config: SayCanConfig, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Features and outcomes of random skills tried in training episodes; and the env steps used."""
    rng = np.random.default_rng(seed)
    xs, ys, steps = [], [], 0
    for li, level in enumerate(config.levels):
        env = _make(level)
        for e in range(config.affordance_episodes):
            env.reset(seed=seed * 100_000 + li * 10_000 + e)
            skills = [s for s in S.skills_of(env.unwrapped) if s.verb != S.DONE]
            verbs = sorted({s.verb for s in skills})
            for _ in range(config.random_skills):
                # A verb, then its arguments: uniform over skills would try "put next to" ~90% of the time.
                verb = verbs[int(rng.integers(len(verbs)))]
                options = [s for s in skills if s.verb == verb]
                skill = options[int(rng.integers(len(options)))]
                xs.append(S.features(env, skill))
                result = S.run_skill(env, skill, config.skill_steps)
                ys.append(float(result["ok"]))
                steps += result["steps"]
                if result["ended"]:
                    break
        env.close()
    return np.stack(xs), np.asarray(ys, np.float32), steps


def play(env: gym.Env, planner: SayCanPlanner, affordance: AffordanceModel, config: SayCanConfig,
         seed: int) -> dict[str, Any]:  # fmt: skip
    """One test episode: plan skill by skill until done, success or the decision limit."""
    env.reset(seed=seed)
    level = env.unwrapped
    task = level.mission
    skills = S.skills_of(level)
    texts = [s.text for s in skills]
    done: list[str] = []
    steps, failed, success, said_done = 0, 0, False, False
    for _ in range(config.max_decisions):
        can = affordance.probability(np.stack([S.features(env, s) for s in skills]))
        can[texts.index(S.DONE)] = 1.0
        i, _ = planner.choose(task, done, texts, can)
        if skills[i].verb == S.DONE:
            said_done = True
            break
        result = S.run_skill(env, skills[i], config.skill_steps)
        done.append(texts[i])
        steps += result["steps"]
        failed += not result["ok"]
        if result["ended"]:
            success = result["reward"] > 0
            break
    return {"task": task, "plan": done, "success": success, "plan_success": success and failed == 0,
            "failed_skills": failed, "said_done": said_done, "env_steps": steps, "skills": len(done)}  # fmt: skip


def run(config: SayCanConfig, out: str | os.PathLike[str], *, resume: bool = False, progress: bool = True) -> RunResult:
    """Learn affordances per seed, then plan on every level with every mode."""
    import torch

    torch.set_num_threads(config.torch_threads)
    folder = RunFolder(out, RECIPE, config, resume=resume, may_change=_RESUMABLE,
                       identity={"model": config.model, "label": config.label})
    path = folder.path / "episodes.jsonl"
    records = read_json_lines(path) if folder.resumed else []
    have = {(r["kind"], r.get("level", ""), r.get("mode", ""), r["seed"]) for r in records}
    log = JsonLines(path, "seed", resume_at=math.inf)
    lm: Any = None
    memo: dict[str, np.ndarray] = {}
    for seed in range(config.seeds):
        t0 = time.time()
        x, y, steps = collect_affordances(config, seed)
        model = AffordanceModel(x.shape[1])
        # The last fifth (in collection order: the last level's later episodes) checks the model
        # on outcomes it did not see.
        n_fit = int(0.8 * len(y))
        loss = model.fit(x[:n_fit], y[:n_fit], epochs=config.affordance_epochs, seed=seed)
        held = float(np.mean((model.probability(x[n_fit:]) > 0.5) == (y[n_fit:] > 0.5))) if len(y) > n_fit else math.nan
        atomic_torch_save(folder.path / f"affordance-s{seed}.pt", model.state_dict())
        if ("affordance", "", "", seed) not in have:
            record = {"kind": "affordance", "seed": seed, "tries": len(y), "success_rate": float(y.mean()),
                      "env_steps": steps, "train_loss": loss, "held_out_accuracy": held, "seconds": time.time() - t0}
            log.write(record)
            records.append(record)
        for level in config.levels:
            env = _make(level)
            for mode in config.modes:
                if ("test", level, mode, seed) in have:
                    continue
                if mode != "affordance" and lm is None:
                    lm = _lm(config)
                planner = SayCanPlanner(lm if mode != "affordance" else None, model, mode=mode,
                                        normalise_length=config.normalise_length, memo=memo)
                t0 = time.time()
                episodes = [play(env, planner, model, config, _TEST_SEED + 1000 * seed + e)
                            for e in range(config.episodes)]  # fmt: skip
                record = {"kind": "test", "level": level, "mode": mode, "seed": seed, "episodes": episodes,
                          "lm_calls": planner.lm_calls, "seconds": time.time() - t0}  # fmt: skip
                log.write(record)
                log.flush()
                records.append(record)
                if progress:
                    print(f"[{config.label}] seed {seed} {level} {mode}: success "
                          f"{np.mean([e['success'] for e in episodes]):.2f} ({record['seconds']:.0f} s)", flush=True)
            env.close()
    log.close()
    summary = summarise(records)
    summary.update(model=config.model)
    atomic_write_json(folder.path / "summary.json", summary)
    metrics = {f"{lv}/{m}/{k}": v["mean"] for lv, by in summary["levels"].items() for m, ms in by.items()
               for k, v in ms.items()}  # fmt: skip
    folder.finish(metrics)
    return RunResult(RECIPE, folder.path, metrics, {"episodes": path, "summary": folder.path / "summary.json"})


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per level and mode: each metric's mean per seed, then a 95% t-interval over seeds."""
    cells: dict[tuple[str, str, str], list[float]] = {}
    for r in records:
        if r["kind"] != "test":
            continue
        for metric in ("success", "plan_success", "skills", "failed_skills", "env_steps"):
            cells.setdefault((r["level"], r["mode"], metric), []).append(
                float(np.mean([float(e[metric]) for e in r["episodes"]])))
        cells.setdefault((r["level"], r["mode"], "lm_calls_per_episode"), []).append(r["lm_calls"] / len(r["episodes"]))
    levels: dict[str, Any] = {}
    for (level, mode, metric), per_seed in cells.items():
        mean, lo, hi = t_interval(per_seed)
        levels.setdefault(level, {}).setdefault(mode, {})[metric] = {"mean": mean, "low": lo, "high": hi,
                                                                     "per_seed": per_seed}  # fmt: skip
    aff = [r for r in records if r["kind"] == "affordance"]
    return {"levels": levels, "affordance": {k: float(np.mean([r[k] for r in aff])) for k in
                                             ("tries", "success_rate", "env_steps", "held_out_accuracy")} if aff else {}}
