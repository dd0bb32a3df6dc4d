"""Judge-Reward: the frozen LM judges outcomes against an objective in words, and its verdicts pay
an RL agent (Kwon et al., "Reward Design with Language Models", ICLR 2023).

Two of the paper's games (:mod:`llmrl.envs.ultimatum`, :mod:`llmrl.envs.matrix_games`):

- **Ultimatum.** For each objective and seed: 10 labelled offers and 50 test offers. Each
  *labeller* labels the 50 test offers (reject or accept):

  ===============  =================================================================================
  ``lm-10``        the judge, shown the objective and the 10 labelled offers (the paper's prompt)
  ``lm-10-cal``    ``lm-10``'s p(yes), thresholded where it best separates the 10 labelled offers
                   (each judged with the other nine as examples): a small model's p(yes) can rank
                   offers well yet sit above 0.5 for all of them; the threshold uses only the
                   labelled offers every labeller has
  ``lm-1``         the judge, shown one labelled offer with its reasoning, thinking before it answers
                   (the paper's one-example "Let's think step by step" prompt)
  ``lm-0``         the judge, shown the objective only
  ``lm-blank``     the judge, shown the game and no objective (a baseline)
  ``sl-10``        a supervised reward model (MLP) trained on the 10 labelled offers (the paper's
                   baseline)
  ``sl-1``         the same trained on the one example offer
  ``true``         the objective's own labels
  ===============  =================================================================================

- **Matrix games.** Four games (their payoffs as in the paper) by four objectives; each labeller
  labels the four joint outcomes: ``lm`` (the judge, zero-shot, as in the paper), ``lm-blank``,
  ``lm-scrambled`` (the judge on a game whose payoffs were moved to other outcomes, judged
  against that game's truth), ``true``.

Then a DQN (Stable-Baselines3, the paper's settings) learns from each labeller's labels in a
one-step game paid 1 when its action matches the label, and is scored against the true labels:
the *agent's alignment with the objective*. Label accuracy is the labeller's own agreement with
the truth.

The LM judge reads p(yes) against p(no) (:mod:`llmrl.roles.judge`); it is asked once per distinct
outcome (memoised), which is what asking it at every episode's end would pay. An abstention (no
yes/no mass, a failing LM) labels the outcome not desirable, and is counted.

Run folder: ``config.json``; ``labels.jsonl`` (one record per game, objective, labeller and seed:
every item's probability, label and truth); ``agents.csv`` (one row per trained agent);
``summary.json`` (label and agent accuracy per labeller with 95% intervals over seeds). An
interrupted run resumes after the last finished record or agent.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmrl.config import config_from as _config_from
from llmrl.config import require_positive
from llmrl.envs import matrix_games as MG
from llmrl.envs import ultimatum as U
from llmrl.roles.judge import JudgeConfig, LMJudge
from llmrl.runs import JsonLines, ProgressLog, RunFolder, RunResult, atomic_write_json, read_json_lines, read_rows
from llmrl.scale import RayConfig
from llmrl.stats import t_interval
from llmrl.workers import run_jobs

RECIPE = "judge-reward"
GAMES = ("ultimatum", "matrix")
ULTIMATUM_LABELLERS = ("lm-10", "lm-10-cal", "lm-1", "lm-0", "lm-blank", "sl-10", "sl-1", "true")
MATRIX_LABELLERS = ("lm", "lm-scrambled", "lm-blank", "true")
AGENTS = ("game", "objective", "labeller", "seed", "label_accuracy", "agent_accuracy", "steps", "seconds")

# The paper's one example per Ultimatum objective: the offer (P1, P2), whether rejecting it is
# desirable, and the reasoning (the offers are the paper's; the reasoning is in our words).
ONE_EXAMPLE: dict[str, tuple[float, float, bool, str]] = {
    "percentage-0.3": (9.78, 0.22, True, "P2 gets $0.22, less than 30% of the $10, so rejecting punishes a selfish "
                                         "offer."),
    "percentage-0.6": (4.71, 5.29, True, "P2 gets $5.29, less than 60% of the $10, so rejecting punishes a selfish "
                                         "offer."),
    "payoff-10": (5.4, 4.6, True, "P2 gets $4.6, and anything under $10 is not a sizeable amount, so P2 should "
                                  "reject."),
    "payoff-100": (700.0, 300.0, False, "P2 gets $300, and anything from $100 up is a sizeable amount, so P2 should "
                                        "accept."),
    "inequity-aversion": (2.3, 7.7, True, "P2 gets $7.7, not an even $5 split, and P2 punishes any uneven split, so "
                                          "P2 should reject."),
}  # fmt: skip


@dataclass
class JudgeRewardConfig:
    """Judge-Reward's settings; every field lands in the run's ``config.json``."""

    model: str = "gemma-3-270m"
    """the judge (any llmrl model name, e.g. openai:http://host/v1#model)"""
    dtype: str = "fp32"
    """the local model's weights in memory"""
    lm_cache: str = ""
    """a sqlite file that keeps the judge's answers across runs (empty: none)"""
    games: tuple[str, ...] = GAMES
    """ultimatum and/or matrix"""
    objectives: tuple[str, ...] = tuple(U.OBJECTIVES)
    """the Ultimatum objectives (llmrl.envs.ultimatum.OBJECTIVES)"""
    labellers: tuple[str, ...] = ULTIMATUM_LABELLERS
    """the Ultimatum labellers (see the module docstring)"""
    matrix_games: tuple[str, ...] = tuple(MG.GAMES)
    matrix_objectives: tuple[str, ...] = tuple(MG.OBJECTIVES)
    matrix_labellers: tuple[str, ...] = MATRIX_LABELLERS
    seeds: int = 3
    """seeds 0..seeds-1: each draws its own offers (and scrambles) and trains its own agents"""
    n_train: int = 10
    """labelled Ultimatum offers (the few-shot examples and the supervised model's data)"""
    n_test: int = 50
    """Ultimatum offers labelled and learned from"""
    reasoning_tokens: int = 48
    """how long the one-example judge may think before it answers"""
    threshold: float = 0.5
    """p(yes) at or above which the judge calls an outcome desirable"""
    dqn_steps: int = 10_000
    """env steps of each Ultimatum agent (the paper: 10,000)"""
    matrix_dqn_steps: int = 500
    """env steps of each matrix-game agent (the paper: 500)"""
    sl_epochs: int = 5
    """the supervised baseline's epochs over its examples, one example per step (the paper: 5)"""
    workers: int = 2
    """agents trained side by side (llmrl.workers, one torch thread each)"""
    torch_threads: int = 2
    """threads for the judge's forward passes"""
    ray: RayConfig = field(default_factory=RayConfig)
    """Scale out: the agents on ``workers`` Ray actors"""
    label: str = RECIPE

    def __post_init__(self) -> None:
        for name, given, valid in (("games", self.games, GAMES), ("objectives", self.objectives, U.OBJECTIVES),
                                   ("labellers", self.labellers, ULTIMATUM_LABELLERS),
                                   ("matrix_games", self.matrix_games, MG.GAMES),
                                   ("matrix_objectives", self.matrix_objectives, MG.OBJECTIVES),
                                   ("matrix_labellers", self.matrix_labellers, MATRIX_LABELLERS)):  # fmt: skip
            setattr(self, name, tuple(given))
            bad = [g for g in getattr(self, name) if g not in valid]
            if bad or not getattr(self, name):
                raise ValueError(f"{name}: unknown or none given ({bad}); choose from {', '.join(valid)}")
        require_positive(self, "seeds", "n_train", "n_test", "dqn_steps", "matrix_dqn_steps", "sl_epochs", "workers",
                         "torch_threads")  # fmt: skip
        if not 0.0 < self.threshold < 1.0 or self.reasoning_tokens < 0:
            raise ValueError("threshold must be in (0, 1) and reasoning_tokens >= 0")
        if self.ray.mode != "sync":
            raise ValueError("ray.mode must be sync: the agents are independent jobs")


Config = JudgeRewardConfig

PRESETS: dict[str, JudgeRewardConfig] = {
    # Kwon et al.'s scale: 50 test offers, 10,000 DQN steps, 3 seeds.
    "cpu": JudgeRewardConfig(),
    "paper": JudgeRewardConfig(),
    "smoke": JudgeRewardConfig(objectives=("percentage-0.3",), labellers=("lm-10", "lm-1", "sl-10", "true"),
                               matrix_games=("prisoners",), matrix_objectives=("welfare",), seeds=1, n_test=6,
                               reasoning_tokens=8, dqn_steps=300, matrix_dqn_steps=100, workers=1),
}

# Labellers may be added to a run (new records only); what the others computed stays.
_RESUMABLE = ("workers", "ray", "torch_threads", "lm_cache", "label", "labellers", "matrix_labellers")


def config_from(preset: str = "cpu", **overrides: Any) -> JudgeRewardConfig:
    return _config_from(PRESETS, preset, overrides)


# --- the judge's prompts ---------------------------------------------------------------------------


def ultimatum_judge(objective: str, labeller: str, train: np.ndarray, reasoning_tokens: int,
                    threshold: float) -> JudgeConfig:  # fmt: skip
    """The judge's prompt for one Ultimatum labeller (``lm-10``, ``lm-1``, ``lm-0``, ``lm-blank``)."""
    o = U.get_objective(objective)
    task = U.TASK
    if labeller in ("lm-10", "lm-10-cal"):
        examples = tuple((U.outcome_text(a, b), int(y) == U.REJECT) for a, b, y in train)
        return JudgeConfig(task, objective=o.objective, examples=examples, threshold=threshold)
    if labeller == "lm-1":
        a, b, good, why = ONE_EXAMPLE[objective]
        return JudgeConfig(task, objective=o.objective, examples=((U.outcome_text(a, b), good, why),),
                           reasoning_tokens=reasoning_tokens, threshold=threshold)  # fmt: skip
    if labeller == "lm-0":
        return JudgeConfig(task, objective=o.objective, threshold=threshold)
    if labeller == "lm-blank":
        return JudgeConfig(task, objective=U.BLANK, threshold=threshold)
    raise ValueError(f"{labeller!r} is not an LM labeller")


def matrix_judge(pairs: tuple[tuple[int, int], ...], objective: str | None, threshold: float) -> JudgeConfig:
    """The judge's zero-shot prompt for a matrix game; ``objective=None`` is the blank baseline."""
    return JudgeConfig(MG.game_text(pairs), objective=MG.OBJECTIVES[objective] if objective else MG.BLANK,
                       threshold=threshold)  # fmt: skip


def example_threshold(lm: Any, objective: str, train: np.ndarray, config: JudgeRewardConfig) -> float:
    """The p(yes) threshold that best separates the labelled offers, each judged leave-one-out
    (the other offers as its examples): the midpoint between neighbouring p(yes) values with the
    most labelled offers on the right side (the middle one of equal bests)."""
    judges = [LMJudge(lm, ultimatum_judge(objective, "lm-10", np.delete(train, i, axis=0), config.reasoning_tokens,
                                          config.threshold)) for i in range(len(train))]  # fmt: skip
    prompts = [j.prompt(U.outcome_text(a, b)) for j, (a, b, _) in zip(judges, train)]
    try:  # one batched call: each prompt has its own examples
        scores: list[Any] = lm.score(prompts, list(judges[0].config.answers))
    except Exception:  # noqa: BLE001 - no threshold can be fitted: keep the configured one
        scores = [None] * len(prompts)
    p = np.array([judges[0].p_yes_of(s) for s in scores])
    ok = np.isfinite(p)
    if not ok.any():
        return config.threshold
    values, desirable = p[ok], train[ok, 2] == U.REJECT
    grid = np.sort(values)
    cuts = np.concatenate([[grid[0] - 1e-6], (grid[1:] + grid[:-1]) / 2, [grid[-1] + 1e-6]])
    scores = np.array([np.mean((values >= c) == desirable) for c in cuts])
    best = np.flatnonzero(scores == scores.max())
    return float(cuts[best[len(best) // 2]])


# --- the supervised baseline -----------------------------------------------------------------------


def supervised_labels(train: np.ndarray, test: np.ndarray, epochs: int, seed: int) -> np.ndarray:
    """Kwon et al.'s supervised reward model: an MLP (2-32-32-2, ReLU) on standardised offers,
    Adam, ``epochs`` passes over the labelled offers one at a time; its argmax labels ``test``.
    The last epoch is kept (the paper's code keeps the epoch with the lowest test loss, which
    reads the test labels)."""
    import torch

    from llmrl.rl.networks import mlp

    torch.manual_seed(seed)
    x = torch.as_tensor(train[:, :2], dtype=torch.float32)
    mean, std = x.mean(0), x.std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))  # one example: no spread to divide by
    y = torch.as_tensor(train[:, 2], dtype=torch.long)
    net = mlp(2, (32, 32), 2)
    opt = torch.optim.Adam(net.parameters())
    order = np.random.default_rng(seed)
    for _ in range(epochs):
        for i in order.permutation(len(x)):
            loss = torch.nn.functional.cross_entropy(net(((x[i] - mean) / std)[None]), y[i : i + 1])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        xt = (torch.as_tensor(test[:, :2], dtype=torch.float32) - mean) / std
        return net(xt).argmax(1).numpy()


# --- the agents ------------------------------------------------------------------------------------


def train_agent(game: str, items: np.ndarray, labels: np.ndarray, truth: np.ndarray, steps: int,
                seed: int) -> dict[str, Any]:  # fmt: skip
    """DQN with the paper's settings on the one-step game paid by ``labels``; its greedy choice
    scored against ``truth``. Ultimatum: the share of offers answered as the objective wants.
    Matrix: 1 when the chosen outcome is truly desirable."""
    import torch
    from stable_baselines3 import DQN

    torch.manual_seed(seed)
    start = time.perf_counter()
    env: Any
    if game == "ultimatum":
        offers = np.column_stack([items, truth])
        env = U.UltimatumResponder(offers, labels)
    else:
        env = MG.MatrixGame(labels, truth)
    model = DQN("MlpPolicy", env, seed=seed, train_freq=2, learning_starts=20, exploration_fraction=0.5,
                learning_rate=1e-4, device="cpu", verbose=0).learn(steps)  # fmt: skip
    if game == "ultimatum":
        actions, _ = model.predict(items.astype(np.float32), deterministic=True)
        accuracy = float(np.mean(actions == truth))
    else:
        action, _ = model.predict(np.zeros(1, np.float32), deterministic=True)
        accuracy = float(bool(truth[int(action)]))
    return {"agent_accuracy": accuracy, "seconds": time.perf_counter() - start}


def _agent_job(args: dict[str, Any]) -> dict[str, Any]:
    return train_agent(**args)


# --- the run ---------------------------------------------------------------------------------------


def _lm(config: JudgeRewardConfig) -> Any:
    from llmrl.lm import load_model
    from llmrl.lm.cache import CachedLM

    kwargs = {} if config.model.startswith(("openai:", "llamacpp:")) else {"dtype": config.dtype}
    return CachedLM(load_model(config.model, **kwargs), config.lm_cache or None)


def _label_tasks(config: JudgeRewardConfig) -> list[dict[str, Any]]:
    """Every (game, objective, labeller, seed) to label, in a fixed order."""
    tasks = []
    for seed in range(config.seeds):
        if "ultimatum" in config.games:
            for objective in config.objectives:
                for labeller in config.labellers:
                    tasks.append({"game": "ultimatum", "objective": objective, "labeller": labeller, "seed": seed})
        if "matrix" in config.games:
            for g in config.matrix_games:
                for objective in config.matrix_objectives:
                    for labeller in config.matrix_labellers:
                        tasks.append({"game": g, "objective": objective, "labeller": labeller, "seed": seed})
    return tasks


def _key(t: dict[str, Any]) -> tuple[str, str, str, int]:
    return t["game"], t["objective"], t["labeller"], int(t["seed"])


def label(config: JudgeRewardConfig, task: dict[str, Any], lm_factory: Any) -> dict[str, Any]:
    """One labeller's labels for one game, objective and seed: items, p(yes), labels, truth."""
    game, objective, labeller, seed = _key(task)
    record: dict[str, Any] = dict(task)
    start = time.perf_counter()
    if game == "ultimatum":
        offers = U.make_offers(objective, seed, config.n_train, config.n_test)
        items, truth = offers["test"][:, :2], offers["test"][:, 2].astype(int)
        p_yes: np.ndarray | None = None
        if labeller == "true":
            labels = truth
        elif labeller == "sl-10":
            labels = supervised_labels(offers["train"], offers["test"], config.sl_epochs, seed)
        elif labeller == "sl-1":
            a, b, good, _ = ONE_EXAMPLE[objective]
            one = np.array([[a, b, U.REJECT if good else U.ACCEPT]], dtype=np.float64)
            labels = supervised_labels(one, offers["test"], config.sl_epochs, seed)
        else:
            judge = LMJudge(lm_factory(), ultimatum_judge(objective, labeller, offers["train"],
                                                          config.reasoning_tokens, config.threshold))  # fmt: skip
            p_yes = judge.probabilities([U.outcome_text(a, b) for a, b in items])
            verdicts = judge.verdicts(p_yes)
            if labeller == "lm-10-cal":
                record["threshold"] = threshold = example_threshold(lm_factory(), objective, offers["train"], config)
                verdicts = np.where(np.isnan(p_yes), 0.0, (p_yes >= threshold).astype(float))
            # "P2 rejected" judged desirable -> the offer is labelled reject; an abstention -> accept.
            labels = np.where(verdicts == 1.0, U.REJECT, U.ACCEPT)
            record["abstained"] = int(np.isnan(p_yes).sum())
            if judge.reasoning:
                record["reasoning"] = [judge.reasoning.get(U.outcome_text(a, b), "") for a, b in items]
        record["items"] = items.tolist()
    else:
        scrambled = labeller == "lm-scrambled"
        pairs = MG.payoffs(game, scramble_seed=seed if scrambled else None)
        truth = MG.desirable(objective, pairs).astype(int)
        p_yes = None
        if labeller == "true":
            labels = truth
        else:
            judge = LMJudge(lm_factory(), matrix_judge(pairs, None if labeller == "lm-blank" else objective,
                                                       config.threshold))  # fmt: skip
            p_yes = judge.probabilities([MG.outcome_text(pairs, k) for k in range(4)])
            labels = judge.verdicts(p_yes).astype(int)
            record["abstained"] = int(np.isnan(p_yes).sum())
        record["items"] = [list(p) for p in pairs]
    record.update(labels=[int(x) for x in labels], truth=[int(x) for x in truth],
                  p_yes=None if p_yes is None else [None if math.isnan(x) else round(float(x), 6) for x in p_yes],
                  label_accuracy=float(np.mean(np.asarray(labels) == truth)),
                  seconds=round(time.perf_counter() - start, 3))  # fmt: skip
    return record


def run(config: JudgeRewardConfig, out: str | os.PathLike[str], *, resume: bool = False,
        progress: bool = True) -> RunResult:
    """Label with every labeller, train an agent on each labelling, score both against the truth."""
    import torch

    folder = RunFolder(out, RECIPE, config, resume=resume, may_change=_RESUMABLE,
                       identity={"model": config.model, "label": config.label})
    labels_path = folder.path / "labels.jsonl"
    records = read_json_lines(labels_path) if folder.resumed else []
    done = {_key(r) for r in records}
    log = JsonLines(labels_path, "seed", resume_at=math.inf)  # keeps every finished record
    lm_box: list[Any] = []

    def lm_factory() -> Any:  # the model loads only when an LM labeller has work left
        if not lm_box:
            torch.set_num_threads(config.torch_threads)
            lm_box.append(_lm(config))
        return lm_box[0]

    for task in _label_tasks(config):
        if _key(task) in done:
            continue
        record = label(config, task, lm_factory)
        log.write(record)
        log.flush()
        records.append(record)
        if progress:
            print(f"[{config.label}] {'/'.join(map(str, _key(task)))}: label accuracy {record['label_accuracy']:.2f} "
                  f"({record['seconds']:.0f} s)", flush=True)
    log.close()

    agents_path = folder.path / "agents.csv"
    rows = read_rows(agents_path, "seed") if folder.resumed else []
    have = {(r["game"], r["objective"], r["labeller"], int(r["seed"])) for r in rows}
    todo = [r for r in records if _key(r) not in have]
    jobs = [({"game": "ultimatum" if r["game"] == "ultimatum" else "matrix", "items": np.asarray(r["items"], float),
              "labels": np.asarray(r["labels"]), "truth": np.asarray(r["truth"]),
              "steps": config.dqn_steps if r["game"] == "ultimatum" else config.matrix_dqn_steps,
              "seed": int(r["seed"])},) for r in todo]  # fmt: skip
    agents = ProgressLog(agents_path, AGENTS, key="seed", resume_at=math.inf)
    for i, result in run_jobs(_agent_job, jobs, config.workers, cluster=config.ray):
        r = todo[i]
        row = {**{k: r[k] for k in ("game", "objective", "labeller", "seed", "label_accuracy")}, **result,
               "steps": jobs[i][0]["steps"]}  # fmt: skip
        agents.write(row)
        rows.append({k: str(v) for k, v in row.items()})
    agents.close()

    summary = summarise(records, rows)
    summary.update(model=config.model, seeds=config.seeds)
    atomic_write_json(folder.path / "summary.json", summary)
    metrics = {f"{g}/{lab}/{m}": v["mean"] for g, by in summary["labellers"].items() for lab, ms in by.items()
               for m, v in ms.items()}  # fmt: skip
    folder.finish(metrics)
    files = {"labels": labels_path, "agents": agents_path, "summary": folder.path / "summary.json"}
    return RunResult(RECIPE, folder.path, metrics, files)


def summarise(records: list[dict[str, Any]], rows: list[dict[str, str]]) -> dict[str, Any]:
    """Per game family and labeller: label and agent accuracy, averaged over objectives (and
    matrix games) within a seed, then a 95% t-interval over seeds; and per objective."""
    # (family, labeller, objective, metric) -> seed -> values
    cells: dict[tuple[str, str, str, str], dict[int, list[float]]] = {}
    for metric, source in (("label", records), ("agent", rows)):
        for r in source:
            family = "ultimatum" if r["game"] == "ultimatum" else "matrix"
            key = (family, r["labeller"], r["objective"], metric)
            cells.setdefault(key, {}).setdefault(int(r["seed"]), []).append(float(r[f"{metric}_accuracy"]))

    def interval(by_seed: dict[int, list[float]]) -> dict[str, Any]:
        mean, lo, hi = t_interval([float(np.mean(v)) for _, v in sorted(by_seed.items())])
        return {"mean": mean, "ci95": [lo, hi], "n": len(by_seed)}

    out: dict[str, Any] = {"labellers": {}, "per_objective": {}}
    pooled: dict[tuple[str, str, str], dict[int, list[float]]] = {}
    for (family, lab, obj, metric), by_seed in sorted(cells.items()):
        out["per_objective"].setdefault(family, {}).setdefault(obj, {}).setdefault(lab, {})[f"{metric}_accuracy"] = \
            interval(by_seed)
        for seed, values in by_seed.items():
            pooled.setdefault((family, lab, metric), {}).setdefault(seed, []).extend(values)
    for (family, lab, metric), by_seed in sorted(pooled.items()):
        out["labellers"].setdefault(family, {}).setdefault(lab, {})[f"{metric}_accuracy"] = interval(by_seed)
    return out
