"""ELLM (Du et al. 2023): an LM's suggested goals guide a DQN agent's exploration in Crafter.

One run (:func:`train_run`) trains a (dueling) Double DQN with 3-step returns on Crafter-Text for
``total_env_steps`` environment steps (:class:`llmrl.rl.offpolicy.OffPolicyLoop`). As in ELLM's
code, the agent acts with its 139 verb-noun actions, Crafter pays nothing during this
pretraining (``extrinsic_reward="none"``: ELLM zeroes the health term and adds no achievement
reward), and the reward is the intrinsic term of one exploration *method*. ELLM and the paper's
four baselines:

* ``ellm``    — the frozen LM suggests goals from each state caption; an action whose name
  matches a goal (MiniLM cosine > threshold) and succeeds by ELLM's loose rule pays the
  similarity, once per goal (and its equivalent) per episode;
* ``novelty`` — the same rule with every verb-noun goal not yet achieved this episode, paid on
  the *attempt* (ELLM's novelty baseline);
* ``apt``     — APT's particle-based entropy on a learned representation (Liu & Abbeel 2021);
* ``rnd``     — Random Network Distillation's prediction error (Burda et al. 2019);
* ``oracle``  — the same rule as ``ellm`` with ELLM's prerequisite oracle as the goal source.

Also available, reported apart: ``achievement-novelty`` (every achievement not yet unlocked,
paid on success: Crafter's own reward signal), ``feasible-achievements`` (achievements one
action away), ``none`` (no reward at all), ``random`` (uniform actions, no learning) and
``motif`` (Klissarov et al.: the LM's preferences between transition captions, distilled into a
reward model, pay Motif's normalised, thresholded, count-discounted bonus; :mod:`llmrl.roles.motif`;
usually with ``extrinsic_reward="crafter"`` beside ``none``, as Motif adds its bonus to the game's score).

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

import functools
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
from llmrl.envs.vector import final_transition, unstack_infos
from llmrl.rl.apt import APT, APTBonus, APTConfig, agent_features
from llmrl.rl.dqn import DQN, ConvEncoder, DQNConfig, GridEncoder, NStepReplay, QNetwork
from llmrl.rl.offpolicy import OffPolicyLoop
from llmrl.rl.rnd import RND, RNDBonus, RNDConfig
from llmrl.scale import MAY_CHANGE as RAY_MAY_CHANGE
from llmrl.scale import RayConfig
from llmrl.roles.explorer import ExplorerConfig, GoalBonus, GoalExplorer
from llmrl.roles.motif import CaptionRewardModel, MotifBonus, MotifConfig, PairwiseJudge, caption_pairs
from llmrl.runs import (
    JsonLines,
    RunFolder,
    RunResult,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    env_seeds,
    read_json_lines,
    rng,
)
from llmrl.stats import t_interval

RECIPE = "ellm"
METHODS = ("ellm", "novelty", "apt", "rnd", "oracle", "achievement-novelty", "feasible-achievements", "none",
           "random", "motif")
COMPARED = METHODS[:5]  # ELLM and the paper's four baselines
GOAL_SOURCE = {"ellm": "llm", "novelty": "novelty", "oracle": "oracle", "achievement-novelty": "achievement-novelty",
               "feasible-achievements": "feasible-achievements"}  # the others: no goals
EXTRINSIC = ("none", "health", "crafter")
SEED_STRIDE = 100_003  # env seeds a run may use; a restart moves on by RESTART_STRIDE
RESTART_STRIDE = 7_919


def _ellm_dqn() -> DQNConfig:
    """ELLM's learner in Crafter: dueling Double DQN with 512-wide heads, 3-step returns, Adam
    6.25e-5, batches of 64 every 4 steps after 5k, target copy every 8k steps, ε from 1 to 0.01
    over 1M steps."""
    return DQNConfig(learning_rate=6.25e-5, gamma=0.99, n_step=3, batch_size=64, buffer_size=500_000,
                     learning_starts=5_000, train_frequency=4, target_update=8_000, eps_decay=1_000_000,
                     eps_end=0.01, dueling=True, head_hidden=512, head_layers=2)


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
    """verb_noun (ELLM's 139 actions, its loose success rule) or standard (Crafter's 17)."""
    observation: str = "pixels"
    """pixels (ELLM's: 4 stacked 84x84 grayscale frames, a CNN) or symbolic (local semantic map
    + inventory, an MLP)."""
    caption: str = "ellm"
    """ellm (ELLM's state captions) or llmrl (this library's earlier ones: all needs, "table")."""
    extrinsic_reward: str = "none"
    """What Crafter pays besides the intrinsic term: none (ELLM's pretraining), health, or crafter
    (health and +1 per new achievement)."""
    model: str = "gemma-3-270m"
    """The frozen LM that suggests goals (``llmrl.lm.load_model``)."""
    lm_cache: str = ""
    """The sqlite file of LM replies and embeddings ("": the per-user default, shared by all runs)."""
    intrinsic_weight: float = 1.0
    """Weight of the goal reward (ellm, novelty, oracle) next to Crafter's health reward."""
    rnd_weight: float = 1.0
    """Weight of RND's bonus, normalised to unit std per step (ELLM: 1)."""
    goal_conditioned: bool = False
    """Give the Q-network the mean embedding of the current goals (ELLM-GC)."""
    explorer: ExplorerConfig = field(default_factory=ExplorerConfig)
    """How goals are suggested, paid and batched (threshold: ELLM's 0.99)."""
    apt: APTConfig = field(default_factory=APTConfig)
    """APT's representation and particle-based reward (ELLM's settings)."""
    motif: MotifConfig = field(default_factory=MotifConfig)
    """Motif's annotation (the LM's preferences between transition captions), reward model and bonus"""
    dqn: DQNConfig = field(default_factory=_ellm_dqn)
    """The DQN learner (defaults: ELLM's)."""
    eval_episodes: int = 20
    """Episodes the trained agent plays at the end with ε = 0.001, nothing learnt or paid (ELLM
    evaluates 10 such episodes every 25k steps, on worlds of seed + 1); 0 skips it."""
    eval_epsilon: float = 0.001
    """ε of the final evaluation (ELLM's)."""
    log_every: int = 10_000
    """Environment steps per progress.csv row."""
    checkpoint_every: int = 100_000
    """Environment steps between atomic checkpoints."""
    torch_threads: int = 0
    """torch threads in the learner process (0: torch's default)."""
    lm_torch_threads: int = 0
    """torch threads while the LM generates (0: as ``torch_threads``); the env workers idle meanwhile."""
    ray: RayConfig = field(default_factory=RayConfig)
    """Scale out (llmrl.scale): the environments in Ray env runners and the LM on Ray replicas;
    sync, so a seeded run writes the rows it would in one process."""

    def __post_init__(self) -> None:
        if self.ray.mode != "sync":
            raise ValueError(f"ray.mode {self.ray.mode!r}: ELLM runs on Ray in sync mode only (async rollouts are GLAM's)")
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
        if self.caption not in ct.CAPTIONS:
            raise ValueError(f"caption must be one of {ct.CAPTIONS}, got {self.caption!r}")
        if self.extrinsic_reward not in EXTRINSIC:
            raise ValueError(f"extrinsic_reward must be one of {EXTRINSIC}, got {self.extrinsic_reward!r}")
        require_positive(self, "total_env_steps", "n_envs", "episode_length", "log_every", "checkpoint_every")
        if self.eval_episodes < 0 or not 0.0 <= self.eval_epsilon <= 1.0:
            raise ValueError("eval_episodes must be >= 0 and eval_epsilon in [0, 1]")
        if not self.seeds:
            raise ValueError("seeds is empty: give at least one seed, e.g. --seeds 1")


Config = ELLMConfig

PRESETS: dict[str, ELLMConfig] = {
    # ELLM's Crafter settings: 4 stacked 84x84 grayscale frames, 139 verb-noun actions, no
    # extrinsic reward, 5M steps, its dueling Double DQN conditioned on the goals. ELLM's replay holds 5M frames, each once;
    # ours keeps both ends of each transition (56 KB): 1M transitions take 56 GB.
    "paper": ELLMConfig(dqn=DQNConfig(**{**to_dict(_ellm_dqn()), "buffer_size": 1_000_000}), goal_conditioned=True),
    # A 2-core CPU: ELLM's actions, captions, rewards and learner, on the symbolic view (an MLP
    # learns from it in far fewer steps than a CNN from pixels) for 60k steps, with ε and the
    # replay scaled to the budget. Measured timings: docs/results/ellm.md.
    "cpu": ELLMConfig(
        total_env_steps=60_000, n_envs=8, observation="symbolic",
        dqn=DQNConfig(learning_rate=2.5e-4, gamma=0.99, n_step=3, batch_size=64, buffer_size=60_000,
                      learning_starts=2_000, train_frequency=4, target_update=2_000, eps_decay=30_000, eps_end=0.05,
                      dueling=True),
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


FRAME_STACK = 4  # ELLM's


def _encoder(config: ELLMConfig) -> torch.nn.Module:
    if config.observation == "symbolic":
        return GridEncoder((ct.VIEW[1], ct.VIEW[0]), ct.N_CLASSES, ct.N_EXTRA, 9.0, config.dqn.hidden_sizes)
    return ConvEncoder(_obs_shape(config), out_dim=config.dqn.head_hidden)


def _obs_shape(config: ELLMConfig) -> tuple[int, ...]:
    if config.observation == "symbolic":
        return (ct.SYMBOLIC_SIZE,)
    return (ct.GRAY_SIZE, ct.GRAY_SIZE, FRAME_STACK)


def _make_envs(config: ELLMConfig) -> Any:
    """The run's vector of Crafter-Text environments: subprocesses here, or Ray env runners."""
    pixels = config.observation == "pixels"
    make = functools.partial(ct.make_vec, length=config.episode_length, reward=config.extrinsic_reward,
                             action_set=config.action_set, observation="gray84" if pixels else "symbolic",
                             caption=config.caption, frame_stack=FRAME_STACK if pixels else 1)
    if config.ray.enabled:
        from llmrl.scale.env_runners import RayVectorEnv

        return RayVectorEnv(functools.partial(make, asynchronous=False), config.n_envs, config.ray)
    return make(config.n_envs)


def _load_lm(config: ELLMConfig) -> Any:
    """ELLM's frozen LM behind the result cache: in this process, or on Ray LM replicas."""
    from llmrl.lm.cache import CachedLM

    if config.ray.enabled:
        from llmrl.scale.lm_replicas import RayLM

        return CachedLM(RayLM(config.model, config.ray), config.lm_cache or None)
    from llmrl.lm import load_model

    return CachedLM(load_model(config.model), config.lm_cache or None)


def motif_reward_model(config: ELLMConfig, seed: int, folder: Path, progress: bool = False) -> CaptionRewardModel:
    """Motif's phases 1 and 2 for one run: transition captions from random play, the LM's
    preferences between pairs of them, the Bradley–Terry reward model; kept in ``motif.pt`` (and
    what the LM said in ``motif.json``), so a resumed run reuses them."""
    from llmrl.lm.embed import default_embedder

    with torch.random.fork_rng(devices=[]):  # building the model must not shift the agent's init
        model = CaptionRewardModel(default_embedder().embed, config.motif.hidden, seed)
    saved = folder / "motif.pt"
    if saved.exists():
        model.load_state_dict(torch.load(saved, weights_only=False))
        return model
    m = config.motif
    env = ct.CrafterTextEnv(action_set=config.action_set, observation="symbolic", caption=config.caption,
                            length=config.episode_length, reward="none")  # fmt: skip
    rng_ = np.random.default_rng((seed, 17))
    env.reset(seed=seed * SEED_STRIDE + 99_991)
    captions = []
    for _ in range(m.caption_steps):
        _, _, terminated, truncated, info = env.step(int(rng_.integers(env.action_space.n)))
        captions.append(info["transition_caption"])
        if terminated or truncated:
            env.reset(seed=int(rng_.integers(2**31)))
    env.close()
    pairs = caption_pairs(captions, m.max_pairs, rng_)
    lm = _load_lm(config)
    judge = PairwiseJudge(lm)
    t0 = time.time()
    p_first = judge.prefer_first(pairs)
    fit = model.fit(pairs, p_first, m.margin, m.epochs)
    model.calibrate(captions, m.threshold_quantile)
    distinct = sorted(set(captions))
    report = {"steps": m.caption_steps, "distinct_captions": len(distinct), "abstained": judge.abstained,
              "lm_seconds": round(time.time() - t0, 1), **fit,
              "pairs": [[a, b, None if not np.isfinite(p) else round(float(p), 4)] for (a, b), p in zip(pairs, p_first)],
              "captions": {c: {"count": captions.count(c), "reward": round(float(r), 4)}
                           for c, r in zip(distinct, model.normalised(distinct))}}  # fmt: skip
    atomic_write_json(folder / "motif.json", report)
    atomic_torch_save(saved, model.state_dict())
    if progress:
        print(f"[motif-s{seed}] {len(distinct)} captions, {fit['decided']}/{len(pairs)} pairs decided by the LM, "
              f"reward model agrees with {fit['train_agreement']:.2f} of them", flush=True)
    return model


def _goal_dim(config: ELLMConfig) -> int:
    """Size of the goal embedding a goal-conditioned agent reads (the embedder's, not assumed)."""
    if not config.goal_conditioned:
        return 0
    from llmrl.lm.embed import default_embedder

    with torch.random.fork_rng(devices=[]):  # loading the embedder must not shift the networks' init
        return default_embedder().dim


class _Learner:
    """What one run trains and how it explores: the DQN, its replay, the explorer and the bonus."""

    def __init__(self, config: ELLMConfig, method: str, seed: int, motif: CaptionRewardModel | None = None) -> None:
        torch.manual_seed(seed)
        self.rng = rng(seed)
        c = config.dqn
        goal_dim = _goal_dim(config)
        actions = ct.ACTION_SETS[config.action_set]
        self.agent = DQN(QNetwork.from_config(_encoder(config), len(actions), c, goal_dim), c)
        self.replay = NStepReplay(c.buffer_size, _obs_shape(config), np.uint8, config.n_envs, c.n_step, c.gamma,
                                  goal_dim)
        self.rnd = RND(lambda: _encoder(config), RNDConfig()) if method == "rnd" else None
        self.apt = APT(agent_features(self.agent.q), self.agent.q.encoder.out_dim, len(actions),
                       config.apt) if method == "apt" else None
        lm = None
        if method == "ellm":
            lm = _load_lm(config)
        self.explorer = GoalExplorer(GOAL_SOURCE.get(method, "none"), config.n_envs, config.explorer, lm,
                                     goal_captions=[ct.ACHIEVEMENT_CAPTIONS[a] for a in ct.ACHIEVEMENTS],
                                     all_goals=actions, valid_goals=ct.VALID_GOALS, equivalents=ct.EQUIVALENT_GOALS)
        lazy = not config.goal_conditioned
        if method == "motif":
            self.bonus = MotifBonus(motif, config.n_envs, config.motif.count_exponent)
        elif self.rnd is not None:
            self.bonus: Any = RNDBonus(self.rnd)
        elif self.apt is not None:
            self.bonus = APTBonus(self.apt)
        else:
            self.bonus = GoalBonus(self.explorer, lazy, config.lm_torch_threads)
        self.weight = config.rnd_weight if method == "rnd" else config.intrinsic_weight

    def state_dict(self) -> dict[str, Any]:
        return {"rnd": self.rnd.state_dict() if self.rnd is not None else None,
                "apt": self.apt.state_dict() if self.apt is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.rnd is not None:
            self.rnd.load_state_dict(state["rnd"])
        if self.apt is not None:
            self.apt.load_state_dict(state["apt"])

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
    folder = RunFolder(out_dir, RECIPE, config, resume=resume, may_change=("methods", "seeds", *RAY_MAY_CHANGE),
                       identity={"label": method, "env_id": env_id, "seed": seed, "method": method})
    if folder.done:
        return folder.path
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    state = folder.load_checkpoint()  # before the LM loads: a bad folder fails in a second
    motif = motif_reward_model(config, seed, folder.path, progress) if method == "motif" else None
    learner = _Learner(config, method, seed, motif)
    explorer = learner.explorer
    t0 = state["loop"]["t"] if state is not None else 0
    log = folder.progress(PROGRESS, resume_at=t0, digits=None)  # _row rounds each column itself
    episodes = _EpisodeLog(folder.path / "episodes.jsonl", t0, state["episodes"] if state is not None else 0)
    envs = _make_envs(config)
    loop = OffPolicyLoop(envs, learner.agent, learner.replay, config.dqn, learner.rng, bonus=learner.bonus,
                         intrinsic_weight=learner.weight, max_lag=config.explorer.max_lag,
                         explore=(lambda t: 1.0) if method == "random" else None, learn=method != "random",
                         goals=learner.goals if config.goal_conditioned else None, on_episode=episodes.write)
    restarts = 0
    if state is not None:
        loop.load_state_dict(state["loop"])
        learner.load_state_dict(state["bonus"])
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
                    "loop": loop.state_dict(), "bonus": learner.state_dict(),
                    "restarts": restarts, "episodes": episodes.total, "explorer_stats": dict(explorer.stats.__dict__),
                })  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
        envs.close()
        log.close()
        episodes.close()
    atomic_write_json(folder.path / "explorer.json", _explorer_report(explorer, time.time() - start))
    if config.eval_episodes and not (folder.path / "eval_episodes.jsonl").exists():
        evaluate_agent(learner.agent, config, seed, folder.path / "eval_episodes.jsonl",
                       epsilon=1.0 if method == "random" else None,
                       explorer=learner.explorer if config.goal_conditioned else None)
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


def evaluate_agent(agent: DQN, config: ELLMConfig, seed: int, path: Path, epsilon: float | None = None,
                   explorer: GoalExplorer | None = None) -> list[dict[str, Any]]:
    """``eval_episodes`` episodes of the trained agent at ε = ``eval_epsilon`` (or ``epsilon``: the
    random reference is evaluated at 1) on worlds of seed + 1 (ELLM's evaluation), each with the
    achievements it unlocked; written to ``path`` (JSON lines). A goal-conditioned agent reads
    the goals ``explorer`` suggests, as in training (what it achieved drops out of them), while
    nothing is learnt."""
    epsilon = config.eval_epsilon if epsilon is None else epsilon
    envs = _make_envs(config)
    generator = rng(seed, 1)
    obs, infos = envs.reset(seed=env_seeds(seed + 1, config.n_envs, stride=SEED_STRIDE))
    records: list[dict[str, Any]] = []
    lengths = np.zeros(config.n_envs, int)
    if explorer is not None:
        for i in range(config.n_envs):
            explorer.end_episode(i)
    try:
        while len(records) < config.eval_episodes:
            goals = None
            if explorer is not None:
                goals = explorer.goal_vectors(explorer.suggest(unstack_infos(infos, config.n_envs)))
            obs, _, terminated, truncated, infos = envs.step(agent.act(obs, generator, epsilon, goals))
            lengths += 1
            done = terminated | truncated
            if explorer is None and not done.any():
                continue
            _, finals = final_transition(obs, infos, done)
            if explorer is not None:
                explorer.reward(finals)  # keeps the achieved goals out of the next suggestions
                for i in np.flatnonzero(done):
                    explorer.end_episode(int(i))
            if done.any():
                for i in np.flatnonzero(done)[: config.eval_episodes - len(records)]:
                    unlocked = [a for a, u in zip(ct.ACHIEVEMENTS, finals[i]["achievements"]) if u]
                    records.append({"length": int(lengths[i]), "died": bool(terminated[i]), "unlocked": unlocked})
                lengths[done] = 0
    finally:
        envs.close()
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))
    return records


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
    report["quality"] = dict(explorer.stats.quality)
    report["suggestions"] = {c: list(g) for c, g in list(explorer.suggestions.items())[:200]}
    return report


# --------------------------------------------------------------------------------- the comparison
def run(config: ELLMConfig, out: str | os.PathLike[str], *, resume: bool = False, progress: bool = True) -> RunResult:
    """Train every (method, seed) under ``out`` (finished runs are skipped), then summarise.

    All runs in one folder share their settings (only ``methods`` and ``seeds`` may differ); a
    folder that already holds runs needs ``resume=True``, which also continues killed runs.
    """
    folder = RunFolder(out, RECIPE, config, resume=resume, may_change=("methods", "seeds", *RAY_MAY_CHANGE))
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
    ``final_fraction`` of training and in the final evaluation (ε = 0.001), per-achievement
    success rates, curves over ``bins`` equal spans of env steps, and the LM's costs."""
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
            evaluated = _unlocked_matrix(read_json_lines(run / "eval_episodes.jsonl"))
            per_seed.append({
                "eval_episodes": len(evaluated),
                "eval_achievements": float(evaluated.sum(1).mean()) if len(evaluated) else float("nan"),
                "eval_crafter_score": crafter_score(evaluated.mean(0)) if len(evaluated) else float("nan"),
                "eval_success": evaluated.mean(0).tolist() if len(evaluated) else None,
                "run": run.name, "episodes": len(final), "achievements": float(unlocked.sum(1).mean()),
                "crafter_score": crafter_score(unlocked.mean(0)), "success": unlocked.mean(0).tolist(),
                "curve": curve, "wall_s": explorer["wall_s"], "lm_share_of_wall": explorer["lm_share_of_wall"],
                "lm_prompts": explorer["lm_prompts"], "lm_new_prompts": explorer["lm_new_prompts"],
                "lm_cache_hit_rate": explorer["lm_cache_hit_rate"], "malformed": explorer["malformed"],
                "rewards_paid": explorer["rewards_paid"], "paid": explorer["paid"],
            })  # fmt: skip
        entry: dict[str, Any] = {"seeds": per_seed}
        if method == "ellm":
            reports = [json.loads((r / "explorer.json").read_text()) for r in runs[method]]
            entry["suggestions"] = suggestion_stats([rep["suggestions"] for rep in reports])
            entry["quality"] = suggestion_quality([rep.get("quality", {}) for rep in reports])
        for key in ("achievements", "crafter_score", "eval_achievements", "eval_crafter_score"):
            mean, lo, hi = t_interval([s[key] for s in per_seed])
            entry[key] = {"mean": mean, "lo": lo, "hi": hi}
        entry["success"] = dict(zip(ct.ACHIEVEMENTS, np.mean([s["success"] for s in per_seed], axis=0).tolist()))
        summary["methods"][method] = entry
    summary["versus"] = paired_differences(summary["methods"])
    if config is not None:
        summary["config"] = to_dict(config)
    return summary


def paired_differences(methods: dict[str, Any], reference: str = "ellm") -> dict[str, Any]:
    """``reference`` minus each other method, seed by seed (a seed's runs share their worlds), for
    every headline metric: mean difference with a 95% t-interval over the seeds both have."""
    if reference not in methods:
        return {}
    def seed(run: dict[str, Any]) -> str:
        return run["run"].rsplit("-s", 1)[1]

    ref = {seed(s): s for s in methods[reference]["seeds"]}
    out: dict[str, Any] = {}
    for method, entry in methods.items():
        if method == reference:
            continue
        pairs = [(ref[seed(s)], s) for s in entry["seeds"] if seed(s) in ref]
        if not pairs:
            continue
        out[method] = {"seeds": len(pairs)}
        for key in ("achievements", "crafter_score", "eval_achievements", "eval_crafter_score"):
            diffs = [a[key] - b[key] for a, b in pairs]
            mean, lo, hi = t_interval(diffs)
            out[method][key] = {"mean": mean, "lo": lo, "hi": hi, "per_seed": diffs}
    return out


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


def suggestion_quality(per_seed: list[dict[str, int]]) -> dict[str, Any]:
    """ELLM's judgement of the LM's suggestions over every state it suggested for: the share that
    were correct under the oracle (good), valid but not feasible now (poorly timed), an action that
    can do nothing (bad), or not an action at all (invalid); per seed and pooled."""
    from llmrl.roles.explorer import QUALITY

    def shares(counts: dict[str, int]) -> dict[str, float]:
        total = sum(counts.get(q, 0) for q in QUALITY)
        return {q: counts.get(q, 0) / total if total else float("nan") for q in QUALITY}

    pooled = {q: sum(c.get(q, 0) for c in per_seed) for q in QUALITY}
    return {"suggestions": sum(pooled.values()), "pooled": shares(pooled), "per_seed": [shares(c) for c in per_seed],
            "valid": (pooled["good"] + pooled["poorly_timed"]) / max(sum(pooled.values()), 1)}


def _unlocked_matrix(episodes: list[dict[str, Any]]) -> np.ndarray:
    return np.array([[a in e["unlocked"] for a in ct.ACHIEVEMENTS] for e in episodes], bool).reshape(-1, len(ct.ACHIEVEMENTS))


def _fmt(entry: dict[str, float], n_seeds: int, digits: int = 2) -> str:
    mean, lo, hi = entry["mean"], entry["lo"], entry["hi"]
    if n_seeds < 2 or lo is None or math.isnan(lo):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def markdown(summary: dict[str, Any]) -> str:
    """The paper's comparison, the other variants, suggestion quality and per-achievement success rates."""
    methods = summary["methods"]
    pct = int(100 * summary["final_fraction"])
    lines = [f"Last {pct}% of training episodes; mean over seeds with a 95% Student-t interval.\n"]
    for title, names in (("ELLM and the paper's baselines", COMPARED),
                         ("Other variants (not in the paper's comparison)", METHODS[len(COMPARED):])):
        present = [m for m in names if m in methods]
        if not present:
            continue
        lines += [f"**{title}**", "",
                  "| method | seeds | achievements / episode (training) | Crafter score (%, training) | "
                  "achievements / episode (eval, ε 0.001) | Crafter score (%, eval) | LM share of wall time | "
                  "LM cache hit rate |", "|---|---|---|---|---|---|---|---|"]
        for m in present:
            e, n = methods[m], len(methods[m]["seeds"])
            share = [s["lm_share_of_wall"] for s in e["seeds"] if s["lm_share_of_wall"]]
            hits = [s["lm_cache_hit_rate"] for s in e["seeds"] if s["lm_prompts"]]
            lines.append(
                f"| {m} | {n} | {_fmt(e['achievements'], n)} | {_fmt(e['crafter_score'], n)} | "
                f"{_fmt(e['eval_achievements'], n)} | {_fmt(e['eval_crafter_score'], n)} | "
                f"{f'{np.mean(share):.0%}' if share else '—'} | {f'{np.mean(hits):.1%}' if hits else '—'} |"
            )
        lines.append("")
    versus = summary.get("versus", {})
    if versus:
        lines += ["**ELLM minus each method, seed by seed** (a seed's runs share their worlds; 95% t-interval "
                  "over seeds)", "", "| versus | seeds | achievements (training) | Crafter score (training) | "
                  "achievements (eval) | Crafter score (eval) |", "|---|---|---|---|---|---|"]
        for m, d in versus.items():
            n = d["seeds"]
            lines.append(f"| {m} | {n} | {_fmt(d['achievements'], n)} | {_fmt(d['crafter_score'], n)} | "
                         f"{_fmt(d['eval_achievements'], n)} | {_fmt(d['eval_crafter_score'], n)} |")
        lines.append("")
    if "ellm" in methods and "suggestions" in methods["ellm"]:
        sg = methods["ellm"]["suggestions"]
        top = ", ".join(f"{g} ({n})" for g, n in sg["top"][:6])
        lines += [f"LM suggestions over {sg['states']} sampled captions: {sg['goals_per_state']:.1f} goals per "
                  f"state, {sg['achievement_caption_share']:.0%} of them an achievement's caption; most frequent: {top}."]
        q = methods["ellm"].get("quality", {})
        if q.get("suggestions"):
            shares = ", ".join(f"{k.replace('_', ' ')} {v:.0%}" for k, v in q["pooled"].items())
            lines += ["", f"Suggestion quality over {q['suggestions']} suggestions (every state suggested for): "
                          f"{shares}; valid actions {q['valid']:.0%}, correct under the oracle "
                          f"{q['pooled']['good']:.0%}."]
    lines += ["", "Success rate per achievement (%, mean over seeds):", "",
              "| achievement | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for a in ct.ACHIEVEMENTS:
        lines.append(f"| {a} | " + " | ".join(f"{100 * methods[m]['success'][a]:.1f}" for m in methods) + " |")
    return "\n".join(lines) + "\n"
