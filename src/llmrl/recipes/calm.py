"""CALM (Yao et al., "Keep CALM and Explore", EMNLP 2020): the LM proposes a short list of commands
in each state of a text game and a DRRN learns which to take, so the agent needs no list of
valid actions.

Games are TextWorld games generated here (:mod:`llmrl.envs.textworld`): per level, a set of
training games and a disjoint set of held-out games. Each *proposer*
(:mod:`llmrl.roles.action_proposer`) gives a DRRN (:mod:`llmrl.rl.drrn`) its candidates:

=============  ====================================================================================
``lm``         the LM, few-shot (one worked step of a training game), sample then rank, top k
``lm-ft``      the same LM after LoRA training on the training games' walkthrough steps (CALM
               fine-tuned GPT-2 on human game transcripts)
``admissible`` the game's valid commands (CALM's oracle comparison)
``random``     k commands drawn from the game's verbs × object names
=============  ====================================================================================

Per (level, proposer, seed): the DRRN trains for ``train_steps`` env steps on the training
games, then plays each held-out game once greedily; we log score (0..max score), success and
steps. The proposers' recall — how often the walkthrough's next command is among the k
proposals, along the walkthrough of each held-out game — is measured once per proposer.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmrl.config import config_from as _config_from
from llmrl.config import require_positive
from llmrl.envs import textworld as TW
from llmrl.rl.drrn import DRRN, DRRNConfig, TextEmbeddings
from llmrl.roles.action_proposer import (
    ActionProposals,
    AdmissibleProposer,
    LMProposer,
    RandomProposer,
    TextState,
    finetune_proposer,
    normalise_command,
)
from llmrl.runs import (
    JsonLines,
    RunFolder,
    RunResult,
    atomic_write_json,
    read_json_lines,
)
from llmrl.stats import t_interval

RECIPE = "calm"
PROPOSERS = ("lm", "lm-ft", "admissible", "random")


@dataclass
class CALMConfig:
    """CALM's settings; every field lands in the run's ``config.json``."""

    model: str = "gemma-3-270m"
    """the proposer LM (a local HF model: lm-ft trains LoRA adapters on it)"""
    dtype: str = "fp32"
    levels: tuple[str, ...] = ("easy",)
    """TextWorld levels (llmrl.envs.textworld.LEVELS)"""
    train_games: int = 20
    test_games: int = 10
    game_seed: int = 0
    """which game sets (the same for every agent seed)"""
    proposers: tuple[str, ...] = PROPOSERS
    k: int = 8
    """proposals per state (CALM: 30, over Jericho's far larger action spaces)"""
    n_samples: int = 12
    """LM samples per state before ranking"""
    temperature: float = 0.7
    top_p: float = 0.9
    seeds: int = 3
    train_steps: int = 3000
    """DRRN env steps on the training games, per (level, proposer, seed)"""
    drrn: DRRNConfig = field(default_factory=DRRNConfig)
    finetune_epochs: int = 3
    finetune_learning_rate: float = 2e-4
    torch_threads: int = 2
    game_cache: str = ""
    """where generated games are kept (empty: $LLMRL_CACHE_DIR/textworld)"""
    label: str = RECIPE

    def __post_init__(self) -> None:
        self.levels, self.proposers = tuple(self.levels), tuple(self.proposers)
        for name, given, valid in (("levels", self.levels, TW.LEVELS), ("proposers", self.proposers, PROPOSERS)):
            bad = [g for g in given if g not in valid]
            if bad or not given:
                raise ValueError(f"{name}: unknown or none given ({bad}); choose from {', '.join(valid)}")
        require_positive(self, "train_games", "test_games", "k", "n_samples", "seeds", "train_steps",
                         "finetune_epochs", "torch_threads")  # fmt: skip


Config = CALMConfig

PRESETS: dict[str, CALMConfig] = {
    "cpu": CALMConfig(),
    # CALM's proposal width and a longer DRRN budget; Jericho's games are not generated here.
    "paper": CALMConfig(levels=("easy", "medium", "hard"), k=30, n_samples=40, train_steps=20_000, test_games=20),
    "smoke": CALMConfig(levels=("easy",), train_games=2, test_games=2, proposers=("lm", "admissible", "random"),
                        k=3, n_samples=3, seeds=1, train_steps=40, drrn=DRRNConfig(learning_starts=8, batch_size=8)),
}

_RESUMABLE = ("torch_threads", "label", "seeds", "proposers")


def config_from(preset: str = "cpu", **overrides: Any) -> CALMConfig:
    return _config_from(PRESETS, preset, overrides)


# --- the pieces ------------------------------------------------------------------------------------


STATE_PARTS = 4


def agent_view(obs: dict[str, str]) -> tuple[str, ...]:
    """The DRRN's state: the goal (held-out games differ in it), the last feedback, the room and
    the inventory, embedded apart (CALM's DRRN encodes them apart too)."""
    return (obs["objective"], obs["text"][-400:], obs["description"], obs["inventory"])


def few_shot_examples(games: list[Path], n: int = 1) -> list[tuple[TextState, str]]:
    """The first ``n`` walkthrough steps of the first training game, as worked examples (the
    prompt's length is the proposer's main cost on a CPU)."""
    return walkthrough_pairs(games[:1])[:n]


def walkthrough_pairs(games: list[Path]) -> list[tuple[TextState, str]]:
    """(state, next walkthrough command) along each game's walkthrough: recall data and lm-ft's data."""
    pairs = []
    for game in games:
        env = TW.TextWorldEnv([game], max_steps=100)
        obs, info = env.reset(options={"game": 0})
        entities, last = tuple(TW.entity_names(game)), ""
        for _ in range(100):
            if not info["walkthrough"] or info["won"]:
                break
            command = info["walkthrough"][0]
            pairs.append((TextState.of(obs, info, last, entities), command))
            obs, _, done, _, info = env.step(command)
            last = command
            if done:
                break
        env.close()
    return pairs


def recall(proposer: Any, pairs: list[tuple[TextState, str]]) -> list[bool]:
    """Whether each pair's command is among the proposals for its state (after normalising both)."""
    proposals = proposer.propose([s for s, _ in pairs])
    return [normalise_command(a) in {normalise_command(p) for p in props} for (_, a), props in zip(pairs, proposals)]


def play(env: ActionProposals, agent: DRRN, game: int, greedy: bool, learn: bool,
         step_budget: int | None = None) -> dict[str, Any]:  # fmt: skip
    """One episode of ``game`` in an env that proposes the candidates; returns its score, success
    and length."""
    obs, info = env.reset(options={"game": game})
    steps, score = 0, 0.0
    while True:
        state, candidates = agent_view(obs), info["candidates"]
        action = candidates[agent.act(state, candidates, greedy=greedy)]
        obs, reward, terminated, truncated, info = env.step(action)
        steps, score = steps + 1, score + float(reward)
        if learn:
            agent.observe(state, action, reward, agent_view(obs), info["candidates"], terminated)
            agent.update()
        if terminated or truncated or (step_budget is not None and steps >= step_budget):
            return {"score": score, "max_score": info["max_score"], "won": info["won"], "steps": steps}


def _lm(config: CALMConfig) -> Any:
    from llmrl.lm import load_model

    return load_model(config.model, dtype=config.dtype)


def _proposer(name: str, lm: Any, config: CALMConfig, examples: list[tuple[TextState, str]], seed: int,
              memo: dict[str, list[str]]) -> Any:  # fmt: skip
    if name in ("lm", "lm-ft"):
        return LMProposer(lm, k=config.k, n_samples=config.n_samples, temperature=config.temperature,
                          top_p=config.top_p, examples=examples, memo=memo)
    if name == "admissible":
        return AdmissibleProposer()
    return RandomProposer(k=config.k, seed=seed)


# --- the run ---------------------------------------------------------------------------------------


def run(config: CALMConfig, out: str | os.PathLike[str], *, resume: bool = False, progress: bool = True) -> RunResult:
    """Make the games, measure each proposer's recall, train and test a DRRN per proposer and seed."""
    import torch

    from llmrl.lm.embed import default_embedder

    torch.set_num_threads(config.torch_threads)
    folder = RunFolder(out, RECIPE, config, resume=resume, may_change=_RESUMABLE,
                       identity={"model": config.model, "label": config.label})
    cache = config.game_cache or None
    games = {lv: {split: TW.make_games(lv, split, n, config.game_seed, cache)
                  for split, n in (("train", config.train_games), ("test", config.test_games))}
             for lv in config.levels}  # fmt: skip
    entities = {lv: {sp: [tuple(TW.entity_names(g)) for g in gs] for sp, gs in by.items()} for lv, by in games.items()}

    records_path = folder.path / "episodes.jsonl"
    records = read_json_lines(records_path) if folder.resumed else []
    done = {(r["kind"], r["level"], r["proposer"], r.get("seed", -1)) for r in records}
    log = JsonLines(records_path, "seed", resume_at=math.inf)
    memo_path = folder.path / "proposals.json"
    memos: dict[str, dict[str, list[str]]] = {}
    if memo_path.exists():
        import json

        memos = json.loads(memo_path.read_text())
    embeddings = TextEmbeddings(default_embedder().embed)
    lm: Any = None

    for name in config.proposers:
        needs_lm = name in ("lm", "lm-ft")
        todo = [(lv, s) for lv in config.levels for s in [-1, *range(config.seeds)]
                if ("recall" if s < 0 else "test", lv, name, s) not in done]  # fmt: skip
        if not todo:
            continue
        if needs_lm and lm is None:
            lm = _lm(config)
        memo = memos.setdefault(name, {})
        if name == "lm-ft":
            t0 = time.time()
            pairs = [p for lv in config.levels for p in walkthrough_pairs(games[lv]["train"])]
            examples = few_shot_examples(games[config.levels[0]]["train"])
            losses = finetune_proposer(lm, pairs, examples, epochs=config.finetune_epochs,
                                       learning_rate=config.finetune_learning_rate, seed=config.game_seed)  # fmt: skip
            atomic_write_json(folder.path / "finetune.json", {"pairs": len(pairs), "losses": losses,
                                                             "seconds": time.time() - t0})  # fmt: skip
        for level, seed in todo:
            t0 = time.time()
            examples = few_shot_examples(games[level]["train"]) if needs_lm else []
            proposer = _proposer(name, lm, config, examples, max(seed, 0), memo)
            calls0 = proposer.calls
            if seed < 0:
                hits = recall(proposer, walkthrough_pairs(games[level]["test"]))
                record = {"kind": "recall", "level": level, "proposer": name, "seed": -1, "hits": hits}
            else:
                record = _train_and_test(config, level, games[level], entities[level], proposer, embeddings, seed)
                record.update(kind="test", level=level, proposer=name, seed=seed)
            record.update(lm_calls=proposer.calls - calls0, seconds=time.time() - t0)
            log.write(record)
            log.flush()
            records.append(record)
            if needs_lm:
                atomic_write_json(memo_path, memos)
            if progress:
                what = (f"recall@{config.k} {np.mean(record['hits']):.2f}" if seed < 0 else
                        f"held-out score {np.mean([e['score'] for e in record['test']]):.2f}")  # fmt: skip
                print(f"[{config.label}] {level}/{name}/seed {seed}: {what} ({record['seconds']:.0f} s, "
                      f"{record['lm_calls']} LM prompts)", flush=True)
        if name == "lm-ft":
            from llmrl.lm.lora import remove_lora

            remove_lora(lm)
    log.close()

    summary = summarise(records)
    summary.update(model=config.model, k=config.k, train_steps=config.train_steps)
    atomic_write_json(folder.path / "summary.json", summary)
    metrics = {f"{lv}/{p}/{m}": v["mean"] for lv, by in summary["levels"].items() for p, ms in by.items()
               for m, v in ms.items()}  # fmt: skip
    folder.finish(metrics)
    return RunResult(RECIPE, folder.path, metrics, {"episodes": records_path, "summary": folder.path / "summary.json"})


def _train_and_test(config: CALMConfig, level_name: str, games: dict[str, list[Path]], entities: dict[str, list[tuple[str, ...]]],
                    proposer: Any, embeddings: TextEmbeddings, seed: int) -> dict[str, Any]:  # fmt: skip
    from llmrl.lm.embed import default_embedder

    agent = DRRN(config.drrn, embeddings, default_embedder().dim, STATE_PARTS, seed=seed)
    level = TW.LEVELS[level_name]
    train_env = ActionProposals(TW.TextWorldEnv(games["train"], max_steps=level.max_steps), proposer, entities["train"])
    rng = np.random.default_rng(seed)
    train, steps = [], 0
    while steps < config.train_steps:
        game = int(rng.integers(len(games["train"])))
        ep = play(train_env, agent, game, greedy=False, learn=True, step_budget=config.train_steps - steps)
        steps += ep["steps"]
        train.append({**ep, "game": game, "env_steps": steps})
    train_env.close()
    test_env = ActionProposals(TW.TextWorldEnv(games["test"], max_steps=level.max_steps), proposer, entities["test"])
    test = [{**play(test_env, agent, g, greedy=True, learn=False), "game": g} for g in range(len(games["test"]))]
    test_env.close()
    return {"train": train, "test": test}


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per level and proposer: recall@k, and held-out score / success / steps as a mean per seed
    with a 95% t-interval over seeds; plus the last 20% of training episodes' success."""
    levels: dict[str, dict[str, dict[str, Any]]] = {}
    for r in records:
        cell = levels.setdefault(r["level"], {}).setdefault(r["proposer"], {})
        if r["kind"] == "recall":
            cell["recall"] = {"mean": float(np.mean(r["hits"])), "n": len(r["hits"])}
            continue
        for metric, values in (("score", [e["score"] / max(e["max_score"], 1) for e in r["test"]]),
                               ("success", [float(e["won"]) for e in r["test"]]),
                               ("steps", [e["steps"] for e in r["test"]]),
                               ("train_success", [float(e["won"]) for e in r["train"][-max(1, len(r["train"]) // 5):]])):  # fmt: skip
            cell.setdefault(f"_{metric}", []).append(float(np.mean(values)))
    for by in levels.values():
        for cell in by.values():
            for metric in ("score", "success", "steps", "train_success"):
                per_seed = cell.pop(f"_{metric}", None)
                if per_seed:
                    mean, lo, hi = t_interval(per_seed)
                    cell[metric] = {"mean": mean, "low": lo, "high": hi, "per_seed": per_seed}
    return {"levels": levels}
