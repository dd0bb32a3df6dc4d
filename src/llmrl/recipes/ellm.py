"""ELLM (Du et al. 2023): an LM's suggested goals guide a DQN agent's exploration in Crafter.

One run (:func:`train_run`) trains a Double DQN with 3-step returns on Crafter-Text for
``total_steps`` environment steps, rewarded by Crafter's health term plus an intrinsic term from
one exploration *method*:

* ``ellm``    — the frozen LM suggests goals from each state caption; a transition whose caption
  matches a goal (MiniLM cosine > threshold) pays the similarity, once per goal per episode;
* ``none``    — no intrinsic reward;
* ``novelty`` — the same rule, every achievement not yet unlocked this episode as a goal;
* ``oracle``  — the same rule, every achievement one action away as a goal;
* ``rnd``     — Random Network Distillation's prediction error (Burda et al. 2019);
* ``random``  — a reference, not a learner: uniform random actions, no updates.

Every run logs the achievements each episode unlocked, so :func:`summarise` can report the
achievements per episode and the Crafter score (the geometric mean of per-achievement success
rates, Hafner 2022) over environment steps, per method, over seeds.

**LM calls are batched by labelling lazily.** The agent does not need its goals to act (unless
``goal_conditioned``), only the reward does, and a transition's reward is needed only when it
enters the replay. So transitions wait (at most ``max_lag`` vector steps) while new captions
accumulate; one LM call then answers up to ``lm_batch`` of them, and the waiting transitions are
rewarded and stored in order, exactly as if each had been labelled at once. Generation on a CPU
costs about the same for 8 prompts as for one (docs/benchmarks.md), so this is what makes the LM
in the loop affordable. A goal-conditioned agent needs goals before acting and asks every step.

``run_all`` trains every (method, seed) into ``<out>/<method>-s<seed>`` (finished runs are
skipped, killed ones resume from their last checkpoint) and writes ``<out>/summary.json`` and
``summary.md``. The environments restart on resume (their worlds live in subprocesses), so a
resumed run is deterministic but not bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmrl.envs import crafter_text as ct
from llmrl.rl.dqn import (
    DQN,
    ConvEncoder,
    DQNConfig,
    GridEncoder,
    NStepReplay,
    QNetwork,
    epsilon,
    gradient_steps,
    target_sync_due,
)
from llmrl.rl.rnd import RND, RNDConfig
from llmrl.roles.explorer import ExplorerConfig, GoalExplorer, per_env_infos
from llmrl.runs import atomic_torch_save
from llmrl.stats import t_interval

METHODS = ("ellm", "none", "novelty", "rnd", "oracle", "random")
COMPARED = METHODS[:5]  # "random" (uniform actions, no learning) is a reference, run on request
GOAL_DIM = 384  # MiniLM


@dataclass
class ELLMConfig:
    """Everything an ELLM comparison depends on; ``PRESETS`` holds the named instances."""

    methods: tuple[str, ...] = COMPARED
    """Exploration methods to train: ellm, none, novelty, rnd, oracle (and random, a reference)."""
    seeds: tuple[int, ...] = (1, 2, 3)
    """One run per (method, seed)."""
    total_steps: int = 5_000_000
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
    threshold: float = 0.99
    """Cosine similarity a transition caption must exceed to pay a goal (ELLM: 0.99)."""
    intrinsic_weight: float = 1.0
    """Weight of the goal reward (ellm, novelty, oracle) next to Crafter's health reward."""
    rnd_weight: float = 0.05
    """Weight of RND's bonus (normalised to unit std per step, so ~400x a goal reward per episode
    at weight 1; this value is a guess, not tuned)."""
    goal_conditioned: bool = False
    """Give the Q-network the mean embedding of the current goals (ELLM-GC)."""
    lm_batch: int = 16
    """New captions per LM call when labelling lazily."""
    max_lag: int = 64
    """Vector steps a transition may wait for its LM label."""
    learning_rate: float = 6.25e-5
    gamma: float = 0.99
    n_step: int = 3
    batch_size: int = 64
    buffer_size: int = 500_000
    learning_starts: int = 10_000
    train_frequency: int = 4
    """Environment steps per gradient step."""
    target_update: int = 8_000
    """Environment steps between target-network syncs (ELLM: 8k)."""
    eps_decay: int = 1_000_000
    """Environment steps over which ε falls from 1 to eps_end (ELLM: 1M)."""
    eps_end: float = 0.01
    log_every: int = 10_000
    """Environment steps per progress.csv row."""
    checkpoint_every: int = 100_000
    """Environment steps between atomic checkpoints."""
    threads: int = 0
    """torch threads in the learner process (0: torch's default)."""
    lm_threads: int = 0
    """torch threads while the LM generates (0: as ``threads``); the env workers idle meanwhile."""

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
        for name in ("total_steps", "n_envs", "episode_length", "log_every", "checkpoint_every", "lm_batch", "max_lag"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.seeds:
            raise ValueError("seeds is empty: give at least one seed, e.g. --seeds 1")

    def dqn(self) -> DQNConfig:
        return DQNConfig(
            learning_rate=self.learning_rate, gamma=self.gamma, n_step=self.n_step, batch_size=self.batch_size,
            buffer_size=self.buffer_size, learning_starts=self.learning_starts,
            train_frequency=self.train_frequency, target_update=self.target_update, eps_decay=self.eps_decay,
            eps_end=self.eps_end, goal_dim=GOAL_DIM if self.goal_conditioned else 0,
        )  # fmt: skip


PRESETS: dict[str, ELLMConfig] = {
    # ELLM's Crafter settings (pixels, verb x noun actions, 5M steps), without its 4-frame stack.
    # The replay keeps both ends of each transition: 100k pixel transitions take 2.5 GB.
    "paper": ELLMConfig(buffer_size=100_000),
    # About two hours on a 2-core CPU for 5 methods x 3 seeds: the symbolic view and Crafter's 17
    # actions learn in far fewer steps than pixels and 139 actions; ε and the replay are scaled
    # to the budget. Measured timings: docs/results/ellm.md.
    "cpu": ELLMConfig(
        total_steps=60_000, n_envs=8, action_set="standard", observation="symbolic",
        learning_rate=2.5e-4, buffer_size=60_000, learning_starts=2_000, target_update=2_000,
        eps_decay=30_000, eps_end=0.05, log_every=4_000, checkpoint_every=20_000, threads=1,
        lm_threads=2,
    ),  # fmt: skip
}


def config_from(preset: str = "cpu", **overrides: Any) -> ELLMConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: choose from {', '.join(PRESETS)}")
    return replace(PRESETS[preset], **overrides)


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


def _network(config: ELLMConfig, n_actions: int) -> QNetwork:
    return QNetwork(_encoder(config), n_actions, goal_dim=GOAL_DIM if config.goal_conditioned else 0)


def _encoder(config: ELLMConfig) -> torch.nn.Module:
    if config.observation == "symbolic":
        return GridEncoder((ct.VIEW[1], ct.VIEW[0]), ct.N_CLASSES, ct.N_EXTRA, 9.0)
    return ConvEncoder((64, 64, 3))


def _stack(items) -> np.ndarray:
    return np.stack(list(items))


class _Episodes:
    """Per-environment accumulators, and the finished episodes since the last progress row."""

    def __init__(self, n_envs: int) -> None:
        self.ret = np.zeros(n_envs)
        self.intrinsic = np.zeros(n_envs)
        self.length = np.zeros(n_envs, int)
        self.window: list[dict[str, Any]] = []

    def step(self, extrinsic: np.ndarray, intrinsic: np.ndarray) -> None:
        self.ret += extrinsic
        self.intrinsic += intrinsic
        self.length += 1

    def finish(self, i: int, env_steps: int, unlocked: np.ndarray, terminated: bool) -> dict[str, Any]:
        record = {
            "env_steps": env_steps,
            "length": int(self.length[i]),
            "return": round(float(self.ret[i]), 4),
            "intrinsic": round(float(self.intrinsic[i]), 4),
            "died": bool(terminated),
            "unlocked": [a for a, u in zip(ct.ACHIEVEMENTS, unlocked) if u],
        }
        self.ret[i], self.intrinsic[i], self.length[i] = 0.0, 0.0, 0
        self.window.append(record)
        return record


def train_run(config: ELLMConfig, method: str, seed: int, out_dir: str | os.PathLike[str],
              resume: bool = False, progress: bool = True) -> Path:
    """Train one (method, seed) run into ``out_dir``; returns the folder.

    Writes ``config.json``, ``progress.csv`` (one row per ``log_every`` steps), ``episodes.jsonl``
    (every finished episode: length, returns, achievements unlocked), ``explorer.json`` (LM calls,
    cache hits, wall-time share, goals paid) and ``checkpoints/latest.pt``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose from {', '.join(METHODS)}")
    out = Path(out_dir)
    ckpt_path = out / "checkpoints" / "latest.pt"
    if (out / "done.json").exists():
        return out
    if out.exists() and any(out.iterdir()) and not resume:
        raise FileExistsError(f"{out} already holds a run: pass resume=True (--resume) to continue it, or a new folder")
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    dqn_config = config.dqn()
    run_config = {"recipe": "ellm", "label": method, "env_id": f"CrafterText ({config.action_set}, {config.observation})",
                  "seed": seed, "method": method, **asdict(config)}
    (out / "config.json").write_text(json.dumps(run_config, indent=2, default=list))

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_actions = len(ct.ACTION_SETS[config.action_set])
    q_net = _network(config, n_actions)
    agent = DQN(q_net, n_actions, dqn_config)
    obs_shape, obs_dtype = ((ct.SYMBOLIC_SIZE,), np.uint8) if config.observation == "symbolic" else ((64, 64, 3), np.uint8)
    replay = NStepReplay(dqn_config.buffer_size, obs_shape, obs_dtype, config.n_envs, config.n_step, config.gamma,
                         goal_dim=dqn_config.goal_dim)
    rnd = RND(lambda: _encoder(config), RNDConfig()) if method == "rnd" else None

    lm = None
    if method == "ellm":
        from llmrl.lm import load_model
        from llmrl.lm.cache import CachedLM

        lm = CachedLM(load_model(config.model), config.lm_cache or None)
    source = {"ellm": "llm", "rnd": "none", "random": "none"}.get(method, method)
    explorer = GoalExplorer(ExplorerConfig(source=source, threshold=config.threshold), config.n_envs, lm=lm,
                            goal_captions=[ct.ACHIEVEMENT_CAPTIONS[a] for a in ct.ACHIEVEMENTS])
    lazy = method == "ellm" and not config.goal_conditioned

    t, carry, updates, restarts, rows_done, episodes_done = 0, 0, 0, 0, 0, 0
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False)
        agent.load_state_dict(state["agent"])
        replay.load_state_dict(state["replay"])
        if rnd is not None:
            rnd.load_state_dict(state["rnd"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        t, carry, updates = state["t"], state["carry"], state["updates"]
        restarts, rows_done, episodes_done = state["restarts"] + 1, state["rows"], state["episodes"]
        for k, v in state["explorer_stats"].items():
            setattr(explorer.stats, k, v)
        replay.windows = [type(w)() for w in replay.windows]  # the envs restart: open windows are gone
    _truncate_lines(out / "progress.csv", rows_done + 1)
    _truncate_lines(out / "episodes.jsonl", episodes_done)
    new_csv = rows_done == 0
    csv_file = (out / "progress.csv").open("a", newline="")
    writer = csv.DictWriter(csv_file, fieldnames=PROGRESS)
    if new_csv:
        writer.writeheader()
    episodes_file = (out / "episodes.jsonl").open("a")

    envs = ct.make_vec(config.n_envs, length=config.episode_length, reward="health",
                       action_set=config.action_set, observation=config.observation)
    base = seed * 100_003 + restarts * 7_919
    obs, infos = envs.reset(seed=[base + i for i in range(config.n_envs)])
    state_infos = per_env_infos(infos, config.n_envs)
    eps_acc = _Episodes(config.n_envs)
    pending: list[dict[str, Any]] = []
    unknown: set[str] = set(explorer.unknown([s["caption"] for s in state_infos])) if lazy else set()
    losses: list[dict[str, float]] = []
    start, last_row_t, last_row_wall, lm_s0 = time.time(), t, time.time(), explorer.stats.lm_seconds
    episodes_total = episodes_done

    def store(rec: dict[str, Any]) -> None:
        """Reward one waiting vector step, add it to the replay, learn from what it owes."""
        nonlocal carry, updates, episodes_total
        if method == "rnd":
            intrinsic = rec["rnd"]
        else:
            explorer.suggest(rec["state_infos"])
            intrinsic = explorer.reward(rec["step_infos"])
        weight = config.rnd_weight if method == "rnd" else config.intrinsic_weight
        reward = rec["extrinsic"] + weight * intrinsic
        goals = next_goals = None
        if config.goal_conditioned:
            goals = explorer.goal_vectors()
            next_goals = goals  # the goals a next state's agent reads are its own; close enough for n-step
        replay.add(rec["obs"], rec["actions"], reward, rec["next_obs"], rec["terminated"], rec["truncated"],
                   goals, next_goals)
        eps_acc.step(rec["extrinsic"], intrinsic)
        for i in np.flatnonzero(rec["done"]):
            explorer.end_episode(int(i))
            record = eps_acc.finish(int(i), rec["t"], rec["step_infos"][i]["achievements"], rec["terminated"][i])
            episodes_file.write(json.dumps(record) + "\n")
            episodes_total += 1
        n_grad, carry = gradient_steps(dqn_config, config.n_envs, carry)
        if len(replay) >= dqn_config.learning_starts and method != "random":
            for _ in range(n_grad):
                batch = replay.sample(dqn_config.batch_size, rng)
                losses.append(agent.update(batch))
                if rnd is not None:
                    rnd.update(batch["obs"])
                updates += 1
        if target_sync_due(dqn_config, rec["t"] - config.n_envs, rec["t"]):
            agent.sync_target()

    def flush() -> None:
        if unknown:
            threads = torch.get_num_threads()
            torch.set_num_threads(config.lm_threads or threads)
            explorer.prefetch(sorted(unknown))
            torch.set_num_threads(threads)
            unknown.clear()
        while pending:
            store(pending.pop(0))

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.total_steps, initial=t, desc=f"{method}-s{seed}", unit="step", smoothing=0.05)
    try:
        while t < config.total_steps:
            goals = explorer.goal_vectors(explorer.suggest(state_infos)) if config.goal_conditioned else None
            actions = agent.act(obs, rng, 1.0 if method == "random" else epsilon(dqn_config, t), goals)
            next_obs, extrinsic, terminated, truncated, infos = envs.step(actions)
            done = terminated | truncated
            step_infos = per_env_infos(infos, config.n_envs)
            real_next = next_obs
            if done.any():
                final = per_env_infos(infos["final_info"], config.n_envs)
                step_infos = [final[i] if done[i] else step_infos[i] for i in range(config.n_envs)]
                real_next = _stack(infos["final_obs"][i] if done[i] else next_obs[i] for i in range(config.n_envs))
            t += config.n_envs
            rec = dict(obs=obs, actions=actions, extrinsic=extrinsic.astype(np.float32), next_obs=real_next,
                       terminated=terminated, truncated=truncated, done=done, t=t,
                       state_infos=state_infos, step_infos=step_infos)
            if rnd is not None:
                rec["rnd"] = rnd.intrinsic_reward(real_next)
            pending.append(rec)
            obs, state_infos = next_obs, per_env_infos(infos, config.n_envs)
            if lazy:
                unknown.update(explorer.unknown([s["caption"] for s in state_infos]))
                if len(unknown) >= config.lm_batch or len(pending) >= config.max_lag:
                    flush()
            else:
                flush()
            if bar is not None:
                bar.update(config.n_envs)
            if t - last_row_t >= config.log_every or t >= config.total_steps:
                flush()
                now = time.time()
                row = _row(t, updates, now - start, episodes_total, eps_acc.window, losses,
                           1.0 if method == "random" else epsilon(dqn_config, t), (t - last_row_t) / max(now - last_row_wall, 1e-9),
                           (explorer.stats.lm_seconds - lm_s0) / max(now - last_row_wall, 1e-9), explorer)
                writer.writerow(row)
                csv_file.flush()
                episodes_file.flush()
                rows_done += 1
                eps_acc.window, losses = [], []
                last_row_t, last_row_wall, lm_s0 = t, now, explorer.stats.lm_seconds
                if bar is not None:
                    bar.set_postfix(ach=row["achievements"], score=row["crafter_score"])
                if t % config.checkpoint_every < config.log_every or t >= config.total_steps:
                    atomic_torch_save(ckpt_path, {
                        "agent": agent.state_dict(), "replay": replay.state_dict(),
                        "rnd": rnd.state_dict() if rnd is not None else None,
                        "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                        "t": t, "carry": carry, "updates": updates, "restarts": restarts,
                        "rows": rows_done, "episodes": episodes_total,
                        "explorer_stats": {k: v for k, v in explorer.stats.__dict__.items()},
                    })  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
        envs.close()
        csv_file.close()
        episodes_file.close()
    (out / "explorer.json").write_text(json.dumps(_explorer_report(explorer, time.time() - start), indent=2))
    (out / "done.json").write_text(json.dumps({"env_steps": t, "updates": updates}))
    return out


def _truncate_lines(path: Path, keep: int) -> None:
    """Keep the first ``keep`` lines of a log a checkpoint knows about (a resumed run rewrites the rest)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)[:keep]
    path.write_text("".join(lines))


def _row(t, updates, wall, episodes_total, window, losses, eps, steps_per_s, lm_share, explorer) -> dict[str, Any]:
    unlocked = np.array([[a in ep["unlocked"] for a in ct.ACHIEVEMENTS] for ep in window], bool).reshape(-1, len(ct.ACHIEVEMENTS))
    stats = explorer.stats
    mean = lambda key: round(float(np.mean([ep[key] for ep in window])), 4) if window else ""  # noqa: E731
    return {
        "env_steps": t, "updates": updates, "wall_s": round(wall, 1), "episodes": episodes_total,
        "success_rate": "",  # Crafter has no single success: see achievements and crafter_score
        "mean_return": mean("return"), "mean_length": mean("length"),
        "achievements": round(float(unlocked.sum(1).mean()), 4) if window else "",
        "crafter_score": round(crafter_score(unlocked.mean(0)), 4) if window else "",
        "intrinsic_return": mean("intrinsic"), "epsilon": round(eps, 4),
        "loss": round(float(np.mean([x["loss"] for x in losses])), 5) if losses else "",
        "q_mean": round(float(np.mean([x["q_mean"] for x in losses])), 4) if losses else "",
        "steps_per_s": round(steps_per_s, 1), "lm_share": round(lm_share, 4),
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
def run_all(config: ELLMConfig, out: str | os.PathLike[str], progress: bool = True) -> Path:
    """Train every (method, seed) under ``out`` (skipping finished runs), then summarise."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # Runs in one folder must share their settings; only which methods and seeds may differ.
    shared = {k: v for k, v in asdict(config).items() if k not in ("methods", "seeds")}
    shared = json.loads(json.dumps(shared))
    marker = out / "settings.json"
    if marker.exists():
        # A setting added after the folder was made counts as its default there.
        defaults = json.loads(json.dumps(asdict(ELLMConfig())))
        old = {**{k: defaults[k] for k in shared if k in defaults}, **json.loads(marker.read_text())}
        diff = sorted(k for k in set(old) | set(shared) if old.get(k) != shared.get(k))
        if diff:
            raise ValueError(f"{out} holds runs made with other settings ({', '.join(diff)}): pass a new --out")
    marker.write_text(json.dumps(shared, indent=2))
    for seed in config.seeds:
        for method in config.methods:
            run = out / f"{method}-s{seed}"
            if (run / "done.json").exists():
                continue
            train_run(config, method, seed, run, resume=run.exists(), progress=progress)
    summary = summarise(out, config)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(markdown(summary))
    return out


def read_episodes(run: Path) -> list[dict[str, Any]]:
    with (run / "episodes.jsonl").open() as f:
        return [json.loads(line) for line in f if line.strip()]


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
        summary["config"] = asdict(config)
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
