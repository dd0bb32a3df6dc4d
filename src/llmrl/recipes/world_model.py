"""The LM as world model on BabyAI-Text: how well it predicts the next view, and what planning with
it buys (:mod:`llmrl.roles.world_model`).

Per seed:

1. **Transitions.** A random walk (turn left, turn right, go forward) through ``train_episodes``
   training levels gives (view, action, next view) triples; ``test_transitions`` more come from
   levels with reset seeds disjoint from them.
2. **Next-view accuracy** on the test triples for each predictor: ``copy`` (the next view is the
   current one, the baseline any model must beat), ``lm-few-shot`` (the LM shown
   ``few_shot`` training triples, one per action), ``lm-lora`` (the LM after LoRA training on the
   training triples, prompted without examples). Scores: exact match of the whole view and
   sentence recall split into sentences about what was already seen and what the move revealed.
3. **Planning.** A one-step lookahead policy (:class:`LookaheadPlanner`) plays ``plan_episodes``
   test levels with the true simulator, the fine-tuned LM as simulator, and no lookahead
   (random actions); we log success, steps and simulator calls per decision.

``llmrl eval --suite world-model`` runs this recipe too.
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
from llmrl.roles.world_model import (
    LMWorldModel,
    LookaheadPlanner,
    finetune_world_model,
    transition_scores,
)
from llmrl.runs import (
    JsonLines,
    RunFolder,
    RunResult,
    atomic_write_json,
    read_json_lines,
)
from llmrl.stats import t_interval

RECIPE = "world-model"
PREDICTORS = ("copy", "lm-few-shot", "lm-lora")
SIMULATORS = ("true", "lm", "none")
NAV = ("turn left", "turn right", "go forward")
_TEST_SEED = 1_000_000


@dataclass
class WorldModelConfig:
    """The world-model study's settings; every field lands in the run's ``config.json``."""

    model: str = "gemma-3-270m"
    """a local HF model (lm-lora trains adapters on it)"""
    dtype: str = "fp32"
    env_id: str = "BabyAI-Text-GoToLocalS5N2-v0"
    seeds: int = 3
    train_episodes: int = 12
    """random-walk episodes whose transitions train the LoRA model (and give the examples); the LoRA
    step is the study's main cost on a CPU (the 262k-word output layer at every target token)"""
    walk_steps: int = 12
    """steps per random walk"""
    test_transitions: int = 24
    few_shot: int = 3
    predictors: tuple[str, ...] = PREDICTORS
    simulators: tuple[str, ...] = SIMULATORS
    plan_episodes: int = 4
    plan_steps: int = 10
    """decisions per planning episode"""
    epochs: int = 2
    learning_rate: float = 3e-4
    torch_threads: int = 2
    label: str = RECIPE

    def __post_init__(self) -> None:
        self.predictors, self.simulators = tuple(self.predictors), tuple(self.simulators)
        for name, given, valid in (("predictors", self.predictors, PREDICTORS), ("simulators", self.simulators, SIMULATORS)):
            bad = [g for g in given if g not in valid]
            if bad:
                raise ValueError(f"{name}: unknown ({bad}); choose from {', '.join(valid)}")
        if "lm" in self.simulators and "lm-lora" not in self.predictors:
            raise ValueError("the lm simulator is the LoRA-trained world model: keep lm-lora in predictors")
        require_positive(self, "seeds", "train_episodes", "walk_steps", "test_transitions", "few_shot", "plan_episodes",
                         "plan_steps", "epochs", "torch_threads")  # fmt: skip


Config = WorldModelConfig

PRESETS: dict[str, WorldModelConfig] = {
    "cpu": WorldModelConfig(),
    # ByteSized32-State-Prediction has 76,369 transitions; ours are generated, so scale the walks.
    "paper": WorldModelConfig(train_episodes=400, test_transitions=400, plan_episodes=50, epochs=3),
    "smoke": WorldModelConfig(seeds=1, train_episodes=3, walk_steps=4, test_transitions=3, few_shot=1,
                              plan_episodes=1, plan_steps=2, epochs=1),
}

_RESUMABLE = ("torch_threads", "label", "seeds")


def config_from(preset: str = "cpu", **overrides: Any) -> WorldModelConfig:
    return _config_from(PRESETS, preset, overrides)


def _lm(config: WorldModelConfig) -> Any:
    from llmrl.lm import load_model

    return load_model(config.model, dtype=config.dtype)


def random_walks(env_id: str, episodes: int, steps: int, first_seed: int, rng: np.random.Generator) -> list[tuple]:
    """(view, action, next view) triples from random navigation in levels ``first_seed``, ..."""
    import llmrl.envs  # noqa: F401 - registers the BabyAI-Text ids

    env = gym.make(env_id)
    out = []
    for e in range(episodes):
        _, info = env.reset(seed=first_seed + e)
        for _ in range(steps):
            a = int(rng.integers(len(NAV)))
            view = info["descriptions"]
            _, _, terminated, truncated, info = env.step(a)
            out.append((tuple(view), NAV[a], tuple(info["descriptions"])))
            if terminated or truncated:
                break
    env.close()
    return out


def examples_per_action(train: list[tuple], n: int) -> list[tuple]:
    """``n`` training triples, cycling through the actions (the first of each in order)."""
    out: list[tuple] = []
    for k in range(n):
        want = NAV[k % len(NAV)]
        out.append(next(t for t in train if t[1] == want and t not in out))
    return out


def plan_episode(env: gym.Env, planner: LookaheadPlanner, seed: int, steps: int) -> dict[str, Any]:
    _, info = env.reset(seed=seed)
    target = info["mission"].removeprefix("go to the ").removeprefix("go to a ")
    calls0 = planner.sim_calls
    for t in range(steps):
        a = planner.act(env, info["descriptions"], target)
        _, _, terminated, truncated, info = env.step(a)
        if terminated or truncated:
            break
    return {"success": bool(info.get("success")), "steps": t + 1, "sim_calls": planner.sim_calls - calls0}


def run(config: WorldModelConfig, out: str | os.PathLike[str], *, resume: bool = False,
        progress: bool = True) -> RunResult:  # fmt: skip
    """Collect transitions, score each predictor, plan with each simulator; per seed."""
    import torch

    import llmrl.envs  # noqa: F401
    from llmrl.lm.lora import remove_lora

    torch.set_num_threads(config.torch_threads)
    folder = RunFolder(out, RECIPE, config, resume=resume, may_change=_RESUMABLE,
                       identity={"model": config.model, "env_id": config.env_id, "label": config.label})
    path = folder.path / "records.jsonl"
    records = read_json_lines(path) if folder.resumed else []
    have = {(r["kind"], r["name"], r["seed"]) for r in records}
    log = JsonLines(path, "seed", resume_at=math.inf)
    lm: Any = None

    def emit(record: dict[str, Any]) -> None:
        log.write(record)
        log.flush()
        records.append(record)
        if progress:
            what = (f"exact {np.mean([x['exact'] for x in record['items']]):.2f}" if record["kind"] == "predict" else
                    f"success {np.mean([x['success'] for x in record['items']]):.2f}")  # fmt: skip
            print(f"[{config.label}] seed {record['seed']} {record['kind']} {record['name']}: {what} "
                  f"({record['seconds']:.0f} s)", flush=True)

    for seed in range(config.seeds):
        rng = np.random.default_rng(seed)
        train = random_walks(config.env_id, config.train_episodes, config.walk_steps, seed * 100_000, rng)
        test_walks = random_walks(config.env_id, config.test_transitions, config.walk_steps,
                                  _TEST_SEED + seed * 100_000, rng)  # fmt: skip
        test = [test_walks[i] for i in rng.choice(len(test_walks), config.test_transitions, replace=False)]
        examples = examples_per_action(train, config.few_shot)
        todo = [p for p in config.predictors if ("predict", p, seed) not in have]
        plans = [s for s in config.simulators if ("plan", s, seed) not in have]
        if any(p != "copy" for p in todo) or "lm" in plans:
            lm = lm or _lm(config)
        for name in config.predictors:
            if name not in todo and not (name == "lm-lora" and "lm" in plans):
                continue
            t0 = time.time()
            extra: dict[str, Any] = {}
            if name == "copy":
                predicted = [list(v) for v, _, _ in test]
                calls = 0
            else:
                wm = LMWorldModel(lm, examples if name == "lm-few-shot" else ())
                if name == "lm-lora":
                    extra["losses"] = finetune_world_model(lm, train, epochs=config.epochs,
                                                           learning_rate=config.learning_rate, seed=seed)  # fmt: skip
                predicted = wm.predict([v for v, _, _ in test], [a for _, a, _ in test]) if name in todo else []
                calls = wm.calls
            if name in todo:
                items = [{"action": a, **transition_scores(v, p, n)} for (v, a, n), p in zip(test, predicted)]
                emit({"kind": "predict", "name": name, "seed": seed, "items": items, "lm_calls": calls,
                      "seconds": time.time() - t0, **extra})  # fmt: skip
            if name == "lm-lora":
                for sim in plans:  # the fine-tuned model is the LM simulator
                    _plan(config, sim, wm, seed, emit)
                remove_lora(lm)
                plans = []
        for sim in plans:
            _plan(config, sim, None, seed, emit)
    log.close()
    summary = summarise(records)
    summary.update(model=config.model, env_id=config.env_id)
    atomic_write_json(folder.path / "summary.json", summary)
    metrics = {f"{kind}/{name}/{m}": v["mean"] for kind, by in summary.items() if isinstance(by, dict)
               for name, ms in by.items() for m, v in ms.items()}  # fmt: skip
    folder.finish(metrics)
    return RunResult(RECIPE, folder.path, metrics, {"records": path, "summary": folder.path / "summary.json"})


def _plan(config: WorldModelConfig, simulator: str, wm: LMWorldModel | None, seed: int, emit: Any) -> None:
    env = gym.make(config.env_id)
    planner = LookaheadPlanner(simulator, NAV, world_model=wm if simulator == "lm" else None,
                               rng=np.random.default_rng(seed))  # fmt: skip
    t0 = time.time()
    items = [plan_episode(env, planner, _TEST_SEED + 500_000 + seed * 1000 + e, config.plan_steps)
             for e in range(config.plan_episodes)]  # fmt: skip
    env.close()
    emit({"kind": "plan", "name": simulator, "seed": seed, "items": items, "seconds": time.time() - t0})


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per predictor: exact match and sentence recall (already seen / revealed), per simulator:
    success, steps and simulator calls per decision; each a mean per seed, then a 95% t-interval."""
    cells: dict[tuple[str, str, str], list[float]] = {}
    for r in records:
        items = r["items"]
        if r["kind"] == "predict":
            values = {"exact": np.mean([x["exact"] for x in items]),
                      "seen_recall": sum(x["known_hits"] for x in items) / max(1, sum(x["known"] for x in items)),
                      "revealed_recall": sum(x["new_hits"] for x in items) / max(1, sum(x["new"] for x in items)),
                      "precision": sum(x["correct"] for x in items) / max(1, sum(x["predicted"] for x in items))}
        else:
            values = {"success": np.mean([x["success"] for x in items]), "steps": np.mean([x["steps"] for x in items]),
                      "sim_calls_per_decision": sum(x["sim_calls"] for x in items) / sum(x["steps"] for x in items)}
        for m, v in values.items():
            cells.setdefault((r["kind"], r["name"], m), []).append(float(v))
    out: dict[str, Any] = {}
    for (kind, name, m), per_seed in cells.items():
        mean, lo, hi = t_interval(per_seed)
        out.setdefault(kind, {}).setdefault(name, {})[m] = {"mean": mean, "low": lo, "high": hi, "per_seed": per_seed}
    return out
