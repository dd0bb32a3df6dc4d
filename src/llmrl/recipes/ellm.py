"""ELLM (Du et al. 2023): an LM's suggested goals guide a DQN agent's exploration in Crafter.

One run (:func:`train_run`) trains a Double DQN with 3-step returns on Crafter-Text for
``total_env_steps`` environment steps (:class:`llmrl.rl.offpolicy.OffPolicyLoop`), rewarded by
Crafter's health term plus an intrinsic term from one exploration *method*:

* ``ellm``    — the frozen LM suggests goals from each state caption; a transition whose caption
  matches a goal (MiniLM cosine > threshold) pays the similarity, once per goal per episode;
* ``none``    — no intrinsic reward;
* ``novelty`` — the same rule, every achievement not yet unlocked this episode as a goal;
* ``oracle``  — the same rule, every achievement one action away as a goal;
* ``rnd``     — Random Network Distillation's prediction error (Burda et al. 2019);
* ``random``  — a reference, not a learner: uniform random actions, no updates.

The goal methods pay through :class:`llmrl.roles.explorer.GoalBonus`, which asks the LM lazily:
transitions wait (at most ``explorer.max_lag`` vector steps) while new captions accumulate, and
one LM call answers up to ``explorer.lm_batch`` of them; the same rewards as labelling each step
at once, at a fraction of the LM calls (the updates those transitions owe wait with them, so the
acting network lags by at most ``max_lag`` vector steps). A goal-conditioned agent needs goals
before acting and asks every step.

Every run logs the achievements each episode unlocked, so :func:`summarise` can report the
achievements per episode and the Crafter score (the geometric mean of per-achievement success
rates, Hafner 2022) over environment steps, per method, over seeds.

:func:`run` trains every (method, seed) into ``<out>/<method>-s<seed>`` (finished runs are
skipped; with ``resume=True`` killed ones continue from their last checkpoint) and writes
``<out>/summary.json`` and ``summary.md``. The environments restart on resume (their worlds live
in subprocesses), so a resumed run is deterministic but not bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmrl.config import config_from as _config_from
from llmrl.config import require_positive, to_dict
from llmrl.envs import crafter_text as ct
from llmrl.rl.dqn import DQN, ConvEncoder, DQNConfig, GridEncoder, NStepReplay, QNetwork
from llmrl.rl.offpolicy import OffPolicyLoop
from llmrl.rl.rnd import RND, RNDBonus, RNDConfig
from llmrl.roles.explorer import ExplorerConfig, GoalBonus, GoalExplorer
from llmrl.runs import JsonLines, RunFolder, RunResult, atomic_write_json, env_seeds, read_json_lines, rng
from llmrl.stats import t_interval

RECIPE = "ellm"
METHODS = ("ellm", "none", "novelty", "rnd", "oracle", "random")
COMPARED = METHODS[:5]  # "random" (uniform actions, no learning) is a reference, run on request
GOAL_SOURCE = {"ellm": "llm", "novelty": "novelty", "oracle": "oracle"}  # the others: no goals
SEED_STRIDE = 100_003  # env seeds a run may use; a restart moves on by RESTART_STRIDE
RESTART_STRIDE = 7_919


def _ellm_dqn() -> DQNConfig:
    """ELLM's learner in Crafter: Double DQN, 3-step returns, Adam 6.25e-5, batches of 64,
    target copy every 8k steps, ε from 1 to 0.01 over 1M steps."""
    return DQNConfig(learning_rate=6.25e-5, gamma=0.99, n_step=3, batch_size=64, buffer_size=500_000,
                     learning_starts=10_000, train_frequency=4, target_update=8_000, eps_decay=1_000_000,
                     eps_end=0.01)


@dataclass
class ELLMConfig:
    """Everything an ELLM comparison depends on; ``PRESETS`` holds the named instances."""

    methods: tuple[str, ...] = COMPARED
    """Exploration methods to train: ellm, none, novelty, rnd, oracle (and random, a reference)."""
    seeds: tuple[int, ...] = (1, 2, 3)
    """One run per (method, seed)."""
    total_env_steps: int = 5_000_000
    """Environment steps per run (ELLM: 5M frames in Crafter)."""
    n_envs: int = 8
    """Crafter worlds stepped in parallel subprocesses."""
    episode_length: int = 400
    """Steps before an episode is truncated (ELLM's Crafter config: 400)."""
    action_set: str = "verb_noun"
    """standard (Crafter's 17 actions) or verb_noun (ELLM's 139)."""
    observation: str = "pixels"
    """symbolic (local semantic map + inventory, an MLP) or pixels (64x64 RGB, a CNN)."""
    model: str = "gemma-3-270m"
    """The frozen LM that suggests goals (``llmrl.lm.load_model``)."""
    lm_cache: str = ""
    """The sqlite file of LM replies and embeddings ("": the per-user default, shared by all runs)."""
    intrinsic_weight: float = 1.0
    """Weight of the goal reward (ellm, novelty, oracle) next to Crafter's health reward."""
    rnd_weight: float = 0.05
    """Weight of RND's bonus (normalised to unit std per step, so ~400x a goal reward per episode
    at weight 1; this value is a guess, not tuned)."""
    goal_conditioned: bool = False
    """Give the Q-network the mean embedding of the current goals (ELLM-GC)."""
    explorer: ExplorerConfig = field(default_factory=ExplorerConfig)
    """How goals are suggested, paid and batched (threshold: ELLM's 0.99)."""
    dqn: DQNConfig = field(default_factory=_ellm_dqn)
    """The DQN learner (defaults: ELLM's)."""
    log_every: int = 10_000
    """Environment steps per progress.csv row."""
    checkpoint_every: int = 100_000
    """Environment steps between atomic checkpoints."""
    torch_threads: int = 0
    """torch threads in the learner process (0: torch's default)."""
    lm_torch_threads: int = 0
    """torch threads while the LM generates (0: as ``torch_threads``); the env workers idle meanwhile."""

    def __post_init__(self) -> None:
        try:  # the CLI hands tuples over as strings
            self.seeds = tuple(int(s) for s in self.seeds)
        except ValueError:
            raise ValueError(f"seeds must be whole numbers, got {self.seeds}") from None
        self.methods = tuple(self.methods)
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ValueError(f"methods must be a non-empty subset of {METHODS}, got {self.methods}")
        if self.action_set not in ct.ACTION_SETS:
            raise ValueError(f"action_set must be one of {sorted(ct.ACTION_SETS)}, got {self.action_set!r}")
        if self.observation not in ("symbolic", "pixels"):
            raise ValueError(f"observation must be 'symbolic' or 'pixels', got {self.observation!r}")
        require_positive(self, "total_env_steps", "n_envs", "episode_length", "log_every", "checkpoint_every")
        if not self.seeds:
            raise ValueError("seeds is empty: give at least one seed, e.g. --seeds 1")


Config = ELLMConfig

PRESETS: dict[str, ELLMConfig] = {
    # ELLM's Crafter settings (pixels, verb x noun actions, 5M steps), without its 4-frame stack.
    # The replay keeps both ends of each transition: 100k pixel transitions take 2.5 GB.
    "paper": ELLMConfig(dqn=DQNConfig(**{**to_dict(_ellm_dqn()), "buffer_size": 100_000, "hidden_sizes": (256, 256)})),
    # About two hours on a 2-core CPU for 5 methods x 3 seeds: the symbolic view and Crafter's 17
    # actions learn in far fewer steps than pixels and 139 actions; ε and the replay are scaled
    # to the budget. Measured timings: docs/results/ellm.md.
    "cpu": ELLMConfig(
        total_env_steps=60_000, n_envs=8, action_set="standard", observation="symbolic",
        dqn=DQNConfig(learning_rate=2.5e-4, gamma=0.99, n_step=3, batch_size=64, buffer_size=60_000,
                      learning_starts=2_000, train_frequency=4, target_update=2_000, eps_decay=30_000, eps_end=0.05),
        log_every=4_000, checkpoint_every=20_000, torch_threads=1, lm_torch_threads=2,
    ),  # fmt: skip
}


def config_from(preset: str = "cpu", **overrides: Any) -> ELLMConfig:
    """A preset with (dotted) fields replaced: ``config_from("cpu", **{"dqn.batch_size": 32})``."""
    return _config_from(PRESETS, preset, overrides)


def crafter_score(success_rates: np.ndarray) -> float:
    """Hafner (2022): exp(mean ln(1 + s_i)) − 1 over the achievements' success rates s_i in %."""
    s = 100.0 * np.asarray(success_rates, dtype=np.float64)
    return float(np.exp(np.mean(np.log1p(s))) - 1.0)


# --------------------------------------------------------------------------------- one run
PROGRESS = (
    "env_steps", "updates", "wall_s", "episodes", "success_rate", "mean_return", "mean_length",
    "achievements", "crafter_score", "intrinsic_return", "epsilon", "loss", "q_mean", "steps_per_s",
    "lm_share", "lm_new_prompts", "lm_cache_hit_rate", "goals_per_state", "rewards_paid",
)  # fmt: skip


def _encoder(config: ELLMConfig) -> torch.nn.Module:
    if config.observation == "symbolic":
        return GridEncoder((ct.VIEW[1], ct.VIEW[0]), ct.N_CLASSES, ct.N_EXTRA, 9.0, config.dqn.hidden_sizes)
    return ConvEncoder((64, 64, 3))


def _goal_dim(config: ELLMConfig) -> int:
    """Size of the goal embedding a goal-conditioned agent reads (the embedder's, not assumed)."""
    if not config.goal_conditioned:
        return 0
    from llmrl.lm.embed import default_embedder

    with torch.random.fork_rng(devices=[]):  # loading the embedder must not shift the networks' init
        return default_embedder().dim


class _Learner:
    """What one run trains and how it explores: the DQN, its replay, the explorer and the bonus."""

    def __init__(self, config: ELLMConfig, method: str, seed: int) -> None:
        torch.manual_seed(seed)
        self.rng = rng(seed)
        c = config.dqn
        goal_dim = _goal_dim(config)
        n_actions = len(ct.ACTION_SETS[config.action_set])
        self.agent = DQN(QNetwork(_encoder(config), n_actions, goal_dim, c.goal_hidden), c)
        obs_shape = (ct.SYMBOLIC_SIZE,) if config.observation == "symbolic" else (64, 64, 3)
        self.replay = NStepReplay(c.buffer_size, obs_shape, np.uint8, config.n_envs, c.n_step, c.gamma, goal_dim)
        self.rnd = RND(lambda: _encoder(config), RNDConfig()) if method == "rnd" else None
        lm = None
        if method == "ellm":
            from llmrl.lm import load_model
            from llmrl.lm.cache import CachedLM

            lm = CachedLM(load_model(config.model), config.lm_cache or None)
        self.explorer = GoalExplorer(GOAL_SOURCE.get(method, "none"), config.n_envs, config.explorer, lm,
                                     goal_captions=[ct.ACHIEVEMENT_CAPTIONS[a] for a in ct.ACHIEVEMENTS])
        lazy = not config.goal_conditioned
        self.bonus = RNDBonus(self.rnd) if self.rnd is not None else GoalBonus(self.explorer, lazy,
                                                                               config.lm_torch_threads)
        self.weight = config.rnd_weight if method == "rnd" else config.intrinsic_weight

    def goals(self, infos: list[dict[str, Any]]) -> np.ndarray:
        return self.explorer.goal_vectors(self.explorer.suggest(infos))


def train_run(config: ELLMConfig, method: str, seed: int, out_dir: str | os.PathLike[str], *,
              resume: bool = False, progress: bool = True) -> Path:
    """Train one (method, seed) run into ``out_dir``; returns the folder.

    Writes ``config.json``, ``progress.csv`` (one row per ``log_every`` steps), ``episodes.jsonl``
    (every finished episode: length, returns, achievements unlocked), ``explorer.json`` (LM calls,
    cache hits, wall-time share, goals paid), ``checkpoints/latest.pt`` and, at the end, ``done.json``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose from {', '.join(METHODS)}")
    env_id = f"CrafterText ({config.action_set}, {config.observation})"
    folder = RunFolder(out_dir, RECIPE, config, resume=resume, may_change=("methods", "seeds"),
                       identity={"label": method, "env_id": env_id, "seed": seed, "method": method})
    if folder.done:
        return folder.path
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    state = folder.load_checkpoint()  # before the LM loads: a bad folder fails in a second
    learner = _Learner(config, method, seed)
    explorer = learner.explorer
    t0 = state["loop"]["t"] if state is not None else 0
    log = folder.progress(PROGRESS, resume_at=t0, digits=None)  # _row rounds each column itself
    episodes = _EpisodeLog(folder.path / "episodes.jsonl", t0, state["episodes"] if state is not None else 0)
    envs = ct.make_vec(config.n_envs, length=config.episode_length, reward="health",
                       action_set=config.action_set, observation=config.observation)
    loop = OffPolicyLoop(envs, learner.agent, learner.replay, config.dqn, learner.rng, bonus=learner.bonus,
                         intrinsic_weight=learner.weight, max_lag=config.explorer.max_lag,
                         explore=(lambda t: 1.0) if method == "random" else None, learn=method != "random",
                         goals=learner.goals if config.goal_conditioned else None, on_episode=episodes.write)
    restarts = 0
    if state is not None:
        loop.load_state_dict(state["loop"])
        if learner.rnd is not None:
            learner.rnd.load_state_dict(state["rnd"])
        for k, v in state["explorer_stats"].items():
            setattr(explorer.stats, k, v)
        restarts = state["restarts"] + 1
    loop.reset(env_seeds(seed, config.n_envs, stride=SEED_STRIDE, offset=restarts * RESTART_STRIDE))
    start, last_row_t, last_row_wall, lm_s0 = time.time(), loop.t, time.time(), explorer.stats.lm_seconds
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.total_env_steps, initial=loop.t, desc=f"{method}-s{seed}", unit="step", smoothing=0.05)
    try:
        while loop.t < config.total_env_steps:
            loop.step()
            if bar is not None:
                bar.update(config.n_envs)
            if loop.t - last_row_t < config.log_every and loop.t < config.total_env_steps:
                continue
            loop.flush()
            now = time.time()
            row = _row(loop, now - start, episodes.total, episodes.take_window(), now - last_row_wall, lm_s0, explorer,
                       last_row_t)
            log.write(row)
            episodes.flush()
            last_row_t, last_row_wall, lm_s0 = loop.t, now, explorer.stats.lm_seconds
            if bar is not None:
                bar.set_postfix(ach=row["achievements"], score=row["crafter_score"])
            if loop.t % config.checkpoint_every < config.log_every or loop.t >= config.total_env_steps:
                folder.save_checkpoint({
                    "loop": loop.state_dict(), "rnd": learner.rnd.state_dict() if learner.rnd is not None else None,
                    "restarts": restarts, "episodes": episodes.total, "explorer_stats": dict(explorer.stats.__dict__),
                })  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
        envs.close()
        log.close()
        episodes.close()
    atomic_write_json(folder.path / "explorer.json", _explorer_report(explorer, time.time() - start))
    folder.finish({"env_steps": loop.t, "updates": loop.updates})
    return folder.path


class _EpisodeLog:
    """``episodes.jsonl``: every finished episode with the achievements it unlocked, and the
    episodes since the last progress row."""

    def __init__(self, path: Path, resume_at: int, total: int) -> None:
        self.lines = JsonLines(path, "env_steps", resume_at=resume_at)
        self.total = total
        self.window: list[dict[str, Any]] = []

    def write(self, episode: dict[str, Any], info: dict[str, Any]) -> None:
        episode["unlocked"] = [a for a, u in zip(ct.ACHIEVEMENTS, info["achievements"]) if u]
        self.lines.write(episode)
        self.window.append(episode)
        self.total += 1

    def take_window(self) -> list[dict[str, Any]]:
        out, self.window = self.window, []
        return out

    def flush(self) -> None:
        self.lines.flush()

    def close(self) -> None:
        self.lines.close()


def _row(loop: OffPolicyLoop, wall: float, episodes_total: int, window: list[dict[str, Any]], dt: float,
         lm_s0: float, explorer: GoalExplorer, last_row_t: int) -> dict[str, Any]:
    """One progress.csv row: the episodes finished since the last row, the updates' losses, the LM's costs."""
    unlocked = np.array([[a in ep["unlocked"] for a in ct.ACHIEVEMENTS] for ep in window], bool).reshape(-1, len(ct.ACHIEVEMENTS))
    losses = loop.take_losses()
    stats = explorer.stats
    mean = lambda key: round(float(np.mean([ep[key] for ep in window])), 4) if window else ""  # noqa: E731
    return {
        "env_steps": loop.t, "updates": loop.updates, "wall_s": round(wall, 1), "episodes": episodes_total,
        "success_rate": "",  # Crafter has no single success: see achievements and crafter_score
        "mean_return": mean("return"), "mean_length": mean("length"),
        "achievements": round(float(unlocked.sum(1).mean()), 4) if window else "",
        "crafter_score": round(crafter_score(unlocked.mean(0)), 4) if window else "",
        "intrinsic_return": mean("intrinsic"), "epsilon": round(loop.explore(loop.t), 4),
        "loss": round(float(np.mean([x["loss"] for x in losses])), 5) if losses else "",
        "q_mean": round(float(np.mean([x["q_mean"] for x in losses])), 4) if losses else "",
        "steps_per_s": round((loop.t - last_row_t) / max(dt, 1e-9), 1),
        "lm_share": round((stats.lm_seconds - lm_s0) / max(dt, 1e-9), 4),
        "lm_new_prompts": stats.lm_new_prompts,
        "lm_cache_hit_rate": round(1 - stats.lm_new_prompts / stats.lm_prompts, 4) if stats.lm_prompts else "",
        "goals_per_state": round(stats.goals_suggested / max(stats.suggested_states, 1), 3),
        "rewards_paid": stats.rewards_paid,
    }  # fmt: skip


def _explorer_report(explorer: GoalExplorer, wall_s: float) -> dict[str, Any]:
    report = explorer.stats.as_dict()
    report["wall_s"] = round(wall_s, 1)
    report["lm_share_of_wall"] = round(explorer.stats.lm_seconds / wall_s, 4) if wall_s > 0 else None
    report["paid"] = dict(sorted(explorer.stats.paid.items(), key=lambda kv: -kv[1]))
    report["suggestions"] = {c: list(g) for c, g in list(explorer.suggestions.items())[:200]}
    return report


# --------------------------------------------------------------------------------- the comparison
def run(config: ELLMConfig, out: str | os.PathLike[str], *, resume: bool = False, progress: bool = True) -> RunResult:
    """Train every (method, seed) under ``out`` (finished runs are skipped), then summarise.

    All runs in one folder share their settings (only ``methods`` and ``seeds`` may differ); a
    folder that already holds runs needs ``resume=True``, which also continues killed runs.
    """
    folder = RunFolder(out, RECIPE, config, resume=resume, may_change=("methods", "seeds"))
    for seed in config.seeds:
        for method in config.methods:
            run_dir = folder.path / f"{method}-s{seed}"
            train_run(config, method, seed, run_dir, resume=resume, progress=progress)
    summary = summarise(folder.path, config)
    atomic_write_json(folder.path / "summary.json", summary)
    report = markdown(summary)
    (folder.path / "summary.md").write_text(report)
    metrics = {f"{m}/{k}": e[k]["mean"] for m, e in summary["methods"].items() for k in ("achievements", "crafter_score")}
    return RunResult(RECIPE, folder.path, metrics, {"summary": folder.path / "summary.md"}, report)


def read_episodes(run: Path) -> list[dict[str, Any]]:
    return read_json_lines(run / "episodes.jsonl")


def summarise(out: str | os.PathLike[str], config: ELLMConfig | None = None, final_fraction: float = 0.25,
              bins: int = 10) -> dict[str, Any]:
    """Per method, over seeds: achievements per episode and Crafter score in the last
    ``final_fraction`` of training, per-achievement success rates there, curves over ``bins``
    equal spans of env steps, and the LM's costs."""
    out = Path(out)
    runs: dict[str, list[Path]] = {}
    for run in sorted(p for p in out.iterdir() if (p / "done.json").exists()):
        cfg = json.loads((run / "config.json").read_text())
        runs.setdefault(cfg["method"], []).append(run)
    if not runs:
        raise FileNotFoundError(f"no finished runs in {out}: run `llmrl train ellm --out {out}` first")
    summary: dict[str, Any] = {"final_fraction": final_fraction, "methods": {}}
    for method in [m for m in METHODS if m in runs]:
        per_seed = []
        for run in runs[method]:
            eps = read_episodes(run)
            total = json.loads((run / "done.json").read_text())["env_steps"]
            final = [e for e in eps if e["env_steps"] > (1 - final_fraction) * total] or eps[-1:]
            unlocked = _unlocked_matrix(final)
            curve = []
            for b in range(bins):
                lo, hi = b * total / bins, (b + 1) * total / bins
                span = _unlocked_matrix([e for e in eps if lo < e["env_steps"] <= hi])
                curve.append({"env_steps": hi, "achievements": float(span.sum(1).mean()) if len(span) else None,
                              "crafter_score": crafter_score(span.mean(0)) if len(span) else None})
            explorer = json.loads((run / "explorer.json").read_text())
            per_seed.append({
                "run": run.name, "episodes": len(final), "achievements": float(unlocked.sum(1).mean()),
                "crafter_score": crafter_score(unlocked.mean(0)), "success": unlocked.mean(0).tolist(),
                "curve": curve, "wall_s": explorer["wall_s"], "lm_share_of_wall": explorer["lm_share_of_wall"],
                "lm_prompts": explorer["lm_prompts"], "lm_new_prompts": explorer["lm_new_prompts"],
                "lm_cache_hit_rate": explorer["lm_cache_hit_rate"], "malformed": explorer["malformed"],
                "rewards_paid": explorer["rewards_paid"], "paid": explorer["paid"],
            })  # fmt: skip
        entry: dict[str, Any] = {"seeds": per_seed}
        if method == "ellm":
            entry["suggestions"] = suggestion_stats([json.loads((r / "explorer.json").read_text())["suggestions"]
                                                     for r in runs[method]])
        for key in ("achievements", "crafter_score"):
            mean, lo, hi = t_interval([s[key] for s in per_seed])
            entry[key] = {"mean": mean, "lo": lo, "hi": hi}
        entry["success"] = dict(zip(ct.ACHIEVEMENTS, np.mean([s["success"] for s in per_seed], axis=0).tolist()))
        summary["methods"][method] = entry
    if config is not None:
        summary["config"] = to_dict(config)
    return summary


def suggestion_stats(samples: list[dict[str, list[str]]]) -> dict[str, Any]:
    """What the LM suggested over sampled captions: goals per state, the share that name an
    achievement's caption exactly, the most frequent goals, and how often the goal for a thing
    in view ("chop tree", "drink water") is suggested with and without that thing in view."""
    pairs = [(caption, goals) for sample in samples for caption, goals in sample.items()]
    goals = [g for _, gs in pairs for g in gs]
    captions = set(ct.ACHIEVEMENT_CAPTIONS.values())
    counts: dict[str, int] = {}
    for g in goals:
        counts[g] = counts.get(g, 0) + 1
    contextual = {}
    for thing, goal in (("tree", "chop tree"), ("water", "drink water"), ("cow", "attack cow")):
        seen = [goal in gs for c, gs in pairs if thing in c.split(".")[0]]
        unseen = [goal in gs for c, gs in pairs if thing not in c.split(".")[0]]
        contextual[goal] = {"in_view": float(np.mean(seen)) if seen else None,
                            "not_in_view": float(np.mean(unseen)) if unseen else None}
    return {
        "states": len(pairs), "goals_per_state": len(goals) / max(len(pairs), 1),
        "achievement_caption_share": sum(g in captions for g in goals) / max(len(goals), 1),
        "top": sorted(counts.items(), key=lambda kv: -kv[1])[:12], "contextual": contextual,
    }


def _unlocked_matrix(episodes: list[dict[str, Any]]) -> np.ndarray:
    return np.array([[a in e["unlocked"] for a in ct.ACHIEVEMENTS] for e in episodes], bool).reshape(-1, len(ct.ACHIEVEMENTS))


def _fmt(entry: dict[str, float], n_seeds: int, digits: int = 2) -> str:
    mean, lo, hi = entry["mean"], entry["lo"], entry["hi"]
    if n_seeds < 2 or lo is None or math.isnan(lo):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def markdown(summary: dict[str, Any]) -> str:
    """The comparison table and per-achievement success rates, as Markdown."""
    methods = summary["methods"]
    pct = int(100 * summary["final_fraction"])
    lines = [
        f"Last {pct}% of training episodes; mean over seeds with a 95% Student-t interval.\n",
        "| method | seeds | achievements / episode | Crafter score (%) | LM share of wall time | LM cache hit rate |",
        "|---|---|---|---|---|---|",
    ]
    for m, e in methods.items():
        share = [s["lm_share_of_wall"] for s in e["seeds"] if s["lm_share_of_wall"]]
        hits = [s["lm_cache_hit_rate"] for s in e["seeds"] if s["lm_prompts"]]
        lines.append(
            f"| {m} | {len(e['seeds'])} | {_fmt(e['achievements'], len(e['seeds']))} | "
            f"{_fmt(e['crafter_score'], len(e['seeds']))} | "
            f"{f'{np.mean(share):.0%}' if share else '—'} | {f'{np.mean(hits):.1%}' if hits else '—'} |"
        )
    if "ellm" in methods and "suggestions" in methods["ellm"]:
        sg = methods["ellm"]["suggestions"]
        top = ", ".join(f"{g} ({n})" for g, n in sg["top"][:6])
        lines += ["", f"LM suggestions over {sg['states']} sampled captions: {sg['goals_per_state']:.1f} goals per "
                      f"state, {sg['achievement_caption_share']:.0%} of them an achievement's caption; most frequent: {top}."]
    lines += ["", "Success rate per achievement (%, mean over seeds):", "",
              "| achievement | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for a in ct.ACHIEVEMENTS:
        lines.append(f"| {a} | " + " | ".join(f"{100 * methods[m]['success'][a]:.1f}" for m in methods) + " |")
    return "\n".join(lines) + "\n"
