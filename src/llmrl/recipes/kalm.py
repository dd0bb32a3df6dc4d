"""KALM (Pang et al. 2024): knowledgeable agents from an LM's imaginary rollouts, on CLEVR-Robot.

The pipeline, one stage after another (:func:`run_all`):

1. **collect**: a scripted expert (with ε-noise) pushes balls towards seen goals in the MuJoCo
   CLEVR-Robot environment; the episodes and their goal sentences form the real dataset
   (``real.npz``, and a Minari copy under ``minari/``);
2. **ground**: the LM learns numbers through adapters (state Linear, action Embedding, state and
   action heads) and LoRA, on four tasks built from the real episodes — rollout generation,
   dynamics prediction, terminal-state prediction and rollout explanation;
3. **imagine**: for novel goals (held-out rephrasings, unseen-easy, unseen-hard) the grounded LM
   decodes state/action rollouts greedily from real initial states, until the goal's judge holds
   on a generated state; rewards are recomputed with the environment's reward function;
4. **train**: goal-conditioned offline RL (BC, CQL) on state ⊕ MiniLM goal embedding, on the real
   data only, or on real and imaginary data mixed 1:1 in each batch (+KALM), for several seeds;
5. **evaluate**: every trained agent, plus random and expert references, on the four goal
   levels, from the same held-out initial states and goals.

Each stage writes to ``<out>/<stage>-<key>/`` where the key hashes the stage's own settings and
its inputs' keys: re-running skips finished work, a changed setting redoes only what depends on
it, and an interrupted stage resumes from its checkpoint.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from llmrl.config import config_from as _config_from
from llmrl.config import to_dict
from llmrl.envs.clevr_goals import LEVELS, Goal, goal_from_spec, sample_goal
from llmrl.roles.imagination import GroundingConfig
from llmrl.runs import RunResult, atomic_write_json, check_output_folder
from llmrl.scale import RayConfig
from llmrl.stats import t_interval, wilson_interval

RECIPE = "kalm"
STAGE_NAMES = ("collect", "ground", "imagine", "train", "evaluate")
NOVEL_LEVELS = ("rephrase", "easy", "hard")
OFFLINE_ALGOS = ("bc", "cql", "iql")  # llmrl.rl.offline.ALGOS, named here so a config needs no torch
GOAL_ENCODERS = ("minilm", "lm-mean", "bow")
POLICY_SUFFIX = {"greedy": "", "sampled": "~sampled"}  # result keys: <run><suffix>@<step>
DATASETS = ("real", *NOVEL_LEVELS)  # real alone, or real + one level's imagined rollouts (KALM's code)


@dataclass
class ImaginationConfig:
    """How many imaginary rollouts the grounded LM writes per novel goal level, and how."""

    rephrase: int = 400
    """Rollouts for held-out rephrasings of seen goals (KALM: 5,600)."""
    easy: int = 400
    """Rollouts for unseen-easy goals (KALM: 72,400)."""
    hard: int = 200
    """Rollouts for unseen-hard goals (KALM: 1,680)."""
    batch_size: int = 32
    """Rollouts decoded together (KV cache, batched)."""
    length_factor: float = 2.0
    """A rollout stops after this many times the real episodes' mean length (and at its level's
    own limit: 50 steps, easy 1). KALM caps at 50 with real episodes of 11.2 steps."""
    project: bool = True
    """Clip every generated state to the table and each ball's move to a push's reach before it
    is judged and fed back (KALM's generation does not)."""
    drop_beyond: float = 0.1
    """Drop a rollout when one of the LM's raw states lies further than this outside the table or
    beyond a push's reach (0: keep every rollout, as KALM does)."""

    def __post_init__(self) -> None:
        if min(self.rephrase, self.easy, self.hard) < 0 or self.batch_size < 1:
            raise ValueError("imagined rollout counts must be >= 0 and batch_size >= 1")
        if self.length_factor <= 0 or self.drop_beyond < 0:
            raise ValueError("length_factor must be > 0 and drop_beyond >= 0")

    def count(self, level: str) -> int:
        return {"rephrase": self.rephrase, "easy": self.easy, "hard": self.hard}[level]


@dataclass
class KALMConfig:
    """Everything a KALM pipeline depends on; ``PRESETS`` holds the named instances."""

    seed: int = 0
    """Seed of data collection, grounding and imagination (offline RL has its own ``offline_seeds``)."""
    # -- collect
    n_real_episodes: int = 6400
    """Real (goal, rollout) pairs collected by the scripted expert on seen goals (KALM's offline RL uses 6,400)."""
    expert_epsilon: float = 0.74
    """Probability that the expert takes a random action (mostly a push of another ball) instead
    of its choice. 0.74 makes episodes as long as KALM's real data (11.2 steps on average, 28% of
    pushes on the named ball): measured 11.2 steps, 37% on the named ball, 100% success over 150
    episodes. The direct expert (0.1) needs 3.1 steps."""
    # -- ground
    grounding: GroundingConfig = field(default_factory=lambda: GroundingConfig(episodes=6400))
    """The LM to ground and how (tasks, epochs, batch, learning rate, LoRA or full)."""
    # -- imagine
    imagination: ImaginationConfig = field(default_factory=ImaginationConfig)
    """Imaginary rollouts per novel goal level."""
    # -- train
    algos: tuple[str, ...] = ("bc", "cql")
    """Offline RL algorithms (llmrl.rl.offline): bc, cql, iql."""
    offline_seeds: tuple[int, ...] = (0, 1, 2)
    """One offline RL run per (goal encoder, algorithm, data, seed)."""
    goal_encoders: tuple[str, ...] = ("minilm", "lm-mean")
    """How goal sentences become vectors: minilm (paraphrase-trained MiniLM), lm-mean (the frozen
    base LM's mean hidden state: no paraphrase training, like KALM's BERT pooler), bow (hashed
    bag of words)."""
    gradient_steps: int = 20_000
    """Gradient steps per offline RL run (KALM: 500k)."""
    bc_learning_rate: float = 1e-3
    """BC's Adam learning rate (KALM: 1e-3)."""
    cql_learning_rate: float = 6.25e-5
    """CQL's Adam learning rate (KALM: 6.25e-5)."""
    snapshots: int = 5
    """Agents kept at the end of each run, gradient_steps / 50 apart; reported success is their
    mean (KALM: the last 5 of 50 checkpoints)."""
    offline_real_episodes: int = 0
    """Real episodes the offline RL sees (0: all collected; KALM: 6,400 of its 100k)."""
    mix_ratio: float = 0.5
    """Share of each +KALM batch drawn from the imaginary data (KALM: 1:1)."""
    imaginary_filter: str = "all"
    """all (KALM: every imagined rollout, rewards recomputed) or reached (only rollouts whose generated states reach the goal)."""
    # -- evaluate
    eval_episodes: int = 100
    """Held-out episodes per goal level."""
    eval_seed: int = 100_000
    """Seed of the first evaluation episode; all agents see the same goals and initial states."""
    eval_lm_policy: bool = True
    """Also evaluate the grounded LM itself as a closed-loop policy (greedy actions, real states fed back)."""
    eval_policies: tuple[str, ...] = ("greedy", "sampled")
    """How the offline agents act when evaluated: greedy (KALM: d3rlpy's ``predict``) and/or
    sampled from the softmax of their scores (greedy ones get stuck repeating a push that changes
    nothing; see docs/results/kalm.md). Sampled results are keyed ``<run>~sampled@<step>``."""
    # -- both
    workers: int = 1
    """Processes that train and evaluate offline agents side by side (llmrl.workers; one torch
    thread each, so results do not depend on it): set it to the cores you can spare."""
    ray: RayConfig = field(default_factory=RayConfig)
    """Scale out (llmrl.scale): imagination on ray.lm_replicas actors, each with the grounded LM,
    and the offline runs and evaluations on ``workers`` actors. The run folder must be on a file
    system every node sees."""

    def __post_init__(self) -> None:
        if self.ray.mode != "sync":
            raise ValueError(f"ray.mode {self.ray.mode!r}: KALM runs on Ray in sync mode only (async rollouts are GLAM's)")
        self.algos, self.offline_seeds = tuple(self.algos), tuple(int(s) for s in self.offline_seeds)
        self.goal_encoders = tuple(self.goal_encoders)
        self.eval_policies = tuple(self.eval_policies)
        bad = [p for p in self.eval_policies if p not in POLICY_SUFFIX]
        if bad or not self.eval_policies:
            raise ValueError(f"unknown evaluation policy {bad}: choose from {', '.join(POLICY_SUFFIX)}")
        bad = [a for a in self.algos if a not in OFFLINE_ALGOS]
        if bad or not self.algos:
            raise ValueError(f"unknown offline algorithm(s) {bad}: choose from {', '.join(OFFLINE_ALGOS)}")
        bad = [e for e in self.goal_encoders if e not in GOAL_ENCODERS]
        if bad or not self.goal_encoders:
            raise ValueError(f"unknown goal encoder(s) {bad}: choose from {', '.join(GOAL_ENCODERS)}")
        if not 1 <= self.snapshots <= 50 or self.gradient_steps < 50:
            raise ValueError(f"snapshots must be in [1, 50] (they are gradient_steps / 50 apart) and gradient_steps "
                             f">= 50, got {self.snapshots} and {self.gradient_steps}")
        if min(self.bc_learning_rate, self.cql_learning_rate) <= 0:
            raise ValueError("learning rates must be positive")
        if self.grounding.episodes > self.n_real_episodes:
            raise ValueError(f"grounding.episodes ({self.grounding.episodes}) exceeds n_real_episodes "
                             f"({self.n_real_episodes}): collect more or ground on fewer")
        if self.imaginary_filter not in ("all", "reached"):
            raise ValueError(f"imaginary_filter must be 'all' or 'reached', got {self.imaginary_filter!r}")
        if not 0.0 < self.mix_ratio < 1.0:
            raise ValueError(f"mix_ratio must be in (0, 1), got {self.mix_ratio}")
        if not 0 <= self.offline_real_episodes <= self.n_real_episodes:
            raise ValueError(f"offline_real_episodes must be in [0, n_real_episodes = {self.n_real_episodes}] "
                             f"(0 = all), got {self.offline_real_episodes}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1 (processes for offline runs), got {self.workers}")
        if min(self.n_real_episodes, len(self.offline_seeds), self.gradient_steps, self.eval_episodes) < 1:
            raise ValueError("n_real_episodes, offline_seeds, gradient_steps and eval_episodes must be positive")


Config = KALMConfig

PRESETS = {
    # The paper's scale where it is known (data sizes, 500k offline steps); the LM is ours.
    "paper": KALMConfig(n_real_episodes=100_000, grounding=GroundingConfig(episodes=100_000, epochs=10),
                        imagination=ImaginationConfig(rephrase=5_600, easy=72_400, hard=1_680),
                        offline_real_episodes=6_400, gradient_steps=500_000, eval_episodes=111),
    # A 2-core CPU: about 3.5 h in all, grounding 2¼ h of it (docs/results/kalm.md has every stage's time).
    # Offline settings chosen on the seen level only (scripts/kalm_tune_offline.py): CQL learns
    # faster at lr 3e-4 than at KALM's 6.25e-5. 20k steps: BC has peaked by then; CQL still gains
    # (sampled 0.53 → 0.64 at 40k) but 40k doubles the 48-run train stage (37 → ~75 min on 2 cores).
    "cpu": KALMConfig(n_real_episodes=6400, grounding=GroundingConfig(episodes=2000, epochs=3),
                      imagination=ImaginationConfig(rephrase=1000, easy=4000, hard=400), gradient_steps=20_000,
                      cql_learning_rate=3e-4, eval_episodes=100, workers=2),
}


def config_from(preset: str = "cpu", **overrides: Any) -> KALMConfig:
    """A preset with (dotted) fields replaced; unknown names are errors that list the valid ones."""
    return _config_from(PRESETS, preset, overrides)


# --------------------------------------------------------------------------- stage folders
STAGE_FIELDS = {
    "collect": ("seed", "n_real_episodes", "expert_epsilon"),
    "ground": ("seed", "grounding"),
    "imagine": ("seed", "imagination"),
    "train": ("algos", "offline_seeds", "goal_encoders", "gradient_steps", "bc_learning_rate", "cql_learning_rate",
              "snapshots", "offline_real_episodes", "mix_ratio", "imaginary_filter"),
    "evaluate": ("eval_episodes", "eval_seed", "eval_lm_policy", "eval_policies"),
}
UPSTREAM = {"collect": (), "ground": ("collect",), "imagine": ("ground",), "train": ("collect", "imagine"),
            "evaluate": ("train", "ground")}
# Bump when a stage's code changes what it produces, so old artifacts are not reused.
STAGE_VERSION = {"collect": 1, "ground": 2, "imagine": 3, "train": 3, "evaluate": 4}
# Settings that cannot change a stage's result; they stay out of its key.
BOOKKEEPING = {"grounding": ("checkpoint_every", "log_every"), "imagination": ("batch_size",)}


def stage_key(config: KALMConfig, stage: str) -> str:
    """Hash of the stage's settings, its code version and (recursively) its inputs' keys."""
    settings = {}
    for name in STAGE_FIELDS[stage]:
        value = to_dict(getattr(config, name)) if name in BOOKKEEPING else getattr(config, name)
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in BOOKKEEPING[name]}
        settings[name] = value
    payload = {"stage": stage, "version": STAGE_VERSION[stage], "settings": settings,
               "inputs": {up: stage_key(config, up) for up in UPSTREAM[stage]}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=list).encode()).hexdigest()[:12]


def stage_dir(out: str | os.PathLike[str], config: KALMConfig, stage: str) -> Path:
    return Path(out) / f"{stage}-{stage_key(config, stage)}"


def is_done(path: Path) -> bool:
    return (path / "done.json").exists()


def open_stage(out: str | os.PathLike[str], config: KALMConfig, stage: str, resume: bool) -> tuple[Path, bool]:
    """The stage's folder (created) and whether the stage has already finished there. A finished
    stage is reused (its key says its inputs are the same); an interrupted one continues only with
    ``resume=True``."""
    path = stage_dir(out, config, stage)
    done = is_done(path)
    if not done and path.is_dir() and any(path.iterdir()) and not resume:
        raise FileExistsError(f"stage {stage!r} was interrupted in {path}: pass --resume to continue it")
    path.mkdir(parents=True, exist_ok=True)
    return path, done


def mark_done(path: Path, config: KALMConfig, stage: str, summary: dict[str, Any], started: float) -> RunResult:
    record = {"stage": stage, "key": stage_key(config, stage), "config": to_dict(config),
              "seconds": round(time.time() - started, 1), **summary}
    atomic_write_json(path / "done.json", record)
    return _result(path)


def _result(path: Path) -> RunResult:
    """A finished stage's RunResult, from its done.json."""
    record = json.loads((path / "done.json").read_text())
    metrics = {k: v for k, v in record.items() if k not in ("stage", "key", "config")}
    report = (path / "results.md").read_text() if (path / "results.md").exists() else ""
    return RunResult(f"{RECIPE} {record['stage']}", path, metrics, {}, report)


def require(out: str | os.PathLike[str], config: KALMConfig, stage: str) -> Path:
    path = stage_dir(out, config, stage)
    if not is_done(path):
        raise FileNotFoundError(f"stage {stage!r} has not finished for this configuration ({path} has no done.json): "
                                f"run `llmrl train kalm --stage {stage}` with the same settings first, or "
                                "`llmrl train kalm` for all stages")
    return path


def _log(message: str, progress: bool) -> None:
    if progress:
        print(f"[kalm {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------- 1. collect
def rollout_expert(env: Any, expert: Any, seed: int, rng: np.random.Generator) -> Any:
    """One expert episode on a freshly sampled seen goal."""
    from llmrl.data import Episode

    obs, info = env.reset(seed=seed)
    goal, start = info["goal"], obs.copy()
    observations, actions, rewards, terms, truncs = [obs], [], [], [], []
    while True:
        action = expert.act(env.unwrapped.positions, goal, start, rng)
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        terms.append(terminated)
        truncs.append(truncated)
        if terminated or truncated:
            break
    return Episode(observations=np.asarray(observations, np.float32), actions=np.asarray(actions, np.int64),
                   rewards=np.asarray(rewards, np.float32), terminations=np.asarray(terms, bool),
                   truncations=np.asarray(truncs, bool), goal=goal.text,
                   infos={"level": goal.level, "goal_spec": goal.spec(), "success": bool(terms[-1]),
                          "imaginary": False})


def collect(config: KALMConfig, out: str | os.PathLike[str], *, resume: bool = False,
            progress: bool = True) -> RunResult:
    """Stage 1: real expert episodes on seen goals → ``real.npz``."""
    from llmrl.data import EpisodeDataset
    from llmrl.envs.clevr_expert import ClevrExpert
    from llmrl.envs.clevr_robot import ClevrRobotEnv

    path, done = open_stage(out, config, "collect", resume)
    if done:
        return _result(path)
    started = time.time()
    partial = path / "partial.npz"
    data = EpisodeDataset.load(partial) if partial.exists() else EpisodeDataset([], {})
    env = ClevrRobotEnv(goal_level="seen")
    expert = ClevrExpert(epsilon=config.expert_epsilon)
    for i in range(len(data), config.n_real_episodes):
        # Each episode's randomness depends only on its index, so a resumed stage reproduces the rest.
        rng = np.random.default_rng([config.seed, i])
        data.episodes.append(rollout_expert(env, expert, seed=config.seed * 10_000_000 + i, rng=rng))
        if (i + 1) % 200 == 0 or i + 1 == config.n_real_episodes:
            data.save(partial)
            _log(f"collect: {i + 1}/{config.n_real_episodes} episodes, expert success "
                 f"{np.mean([e.infos['success'] for e in data.episodes]):.2f}", progress)
    data.metadata = {"source": "scripted expert", "expert_epsilon": config.expert_epsilon, "level": "seen"}
    data.save(path / "real.npz")
    # The same episodes in Minari's format, for other offline-RL libraries.
    data.to_minari("clevr-robot/expert-v0", data_path=path / "minari", n_actions=40,
                   algorithm_name=f"scripted expert, epsilon {config.expert_epsilon}", author="llmrl",
                   description="CLEVR-Robot (llmrl, MuJoCo) expert episodes on seen goals, with their goal sentences")
    partial.unlink(missing_ok=True)
    success = float(np.mean([e.infos["success"] for e in data.episodes]))
    return mark_done(path, config, "collect",
                     {"episodes": len(data), "steps": data.n_steps, "expert_success": success}, started)


# --------------------------------------------------------------------------- 2. ground
def ground(config: KALMConfig, out: str | os.PathLike[str], *, resume: bool = False,
           progress: bool = True) -> RunResult:
    """Stage 2: fine-tune the LM's adapters and LoRA on the four KALM tasks → ``grounded/``."""
    from llmrl.data import EpisodeDataset
    from llmrl.roles import imagination

    from llmrl.envs.clevr_robot import N_ACTIONS

    path, done = open_stage(out, config, "ground", resume)
    if done:
        return _result(path)
    started = time.time()
    g = config.grounding
    real = EpisodeDataset.load(require(out, config, "collect") / "real.npz")
    episodes = [{"observations": e.observations, "actions": e.actions, "goal": e.goal}
                for e in list(real)[: g.episodes or None]]
    _log(f"ground: {g.model} on {len(episodes)} episodes × tasks {', '.join(g.tasks)}", progress)

    def report(row: dict[str, Any]) -> None:
        _log(f"ground: step {row['step']} loss {float(row['loss']):.3f} (state MSE {float(row['mse_state']):.3f}, "
             f"action CE {float(row['ce_action']):.3f}, text CE {float(row['ce_text']):.3f}), "
             f"{float(row['tokens_per_s']):.0f} tokens/s", progress)

    # The stage folder is the grounding run's folder; one killed mid-way continues from its checkpoint.
    imagination.ground(g, episodes, path, n_actions=N_ACTIONS, seed=config.seed, resume=True, progress=report)
    return mark_done(path, config, "ground", {"episodes": len(episodes)}, started)


# --------------------------------------------------------------------------- 3. imagine
def load_grounded(path: Path, config: KALMConfig) -> Any:
    from llmrl.lm import load_model
    from llmrl.lm.numeric import GroundedLM

    return GroundedLM.load(path / "grounded", load_model(config.grounding.model, dtype=config.grounding.dtype))


def novel_goals(config: KALMConfig, real: Any) -> list[tuple[Goal, np.ndarray]]:
    """Goals of the novel levels with real initial states, seeded apart from evaluation."""
    rng = np.random.default_rng([config.seed, 7])
    starts = np.stack([e.observations[0] for e in real])
    out = []
    for level in NOVEL_LEVELS:
        for _ in range(config.imagination.count(level)):
            out.append((sample_goal(level, rng), starts[int(rng.integers(len(starts)))]))
    return out


# KALM's plausibility judge (its appendix): a ball centre off the table, or a move no push makes.
OFF_TABLE = {"x": 0.5, "y_low": -0.2, "y_high": 0.6}
BEYOND_DYNAMICS = 0.5


def implausible(states: np.ndarray) -> tuple[int, int]:
    """KALM's counts over a rollout's transitions: (states with a ball off the table, moves no
    push makes)."""
    xy = np.asarray(states, np.float32).reshape(len(states), -1, 2)
    off = np.any((np.abs(xy[1:, :, 0]) > OFF_TABLE["x"]) | (xy[1:, :, 1] < OFF_TABLE["y_low"])
                 | (xy[1:, :, 1] > OFF_TABLE["y_high"]), axis=1)
    jump = np.max(np.linalg.norm(xy[1:] - xy[:-1], axis=2), axis=1) > BEYOND_DYNAMICS
    return int(off.sum()), int(jump.sum())


def push_reach(real: Any) -> float:
    """The furthest any ball moved in one real step: what one push can do in this physics."""
    return float(max(np.linalg.norm(np.diff(e.observations.reshape(len(e.observations), -1, 2), axis=0), axis=2).max()
                     for e in real if len(e.actions)))


def project_state(previous: np.ndarray, state: np.ndarray, reach: float) -> np.ndarray:
    """The nearest state the physics allows: each ball moves at most ``reach`` from where it was,
    and its centre stays on the table."""
    from llmrl.envs.clevr_robot import X_BOUNDS, Y_BOUNDS

    prev, xy = np.asarray(previous, np.float32).reshape(-1, 2), np.array(state, np.float32).reshape(-1, 2)
    move = xy - prev
    norm = np.linalg.norm(move, axis=1, keepdims=True)
    xy = prev + move * np.minimum(1.0, reach / np.maximum(norm, 1e-9))
    xy[:, 0] = np.clip(xy[:, 0], *X_BOUNDS)
    xy[:, 1] = np.clip(xy[:, 1], *Y_BOUNDS)
    return xy.reshape(np.shape(state)).astype(np.float32)


def imaginary_episode(goal: Goal, rollout: dict[str, Any], reach: float = float("inf")) -> Any:
    """An imagined rollout as an Episode, rewards and ends recomputed by the goal's judge. Its
    ``infos`` say how plausible the LM's raw states were (KALM's counts, ``raw_off_table`` and
    ``raw_beyond_dynamics``) and how far the furthest one lay from what the physics allows from
    the state before it (``raw_excess``)."""
    from llmrl.data import Episode

    obs = np.asarray(rollout["observations"], np.float32)
    actions = np.asarray(rollout["actions"], np.int64)
    start = obs[0]
    rewards = np.array([goal.reward(obs[t], obs[t + 1], start) for t in range(len(actions))], np.float32)
    success = np.array([goal.success(obs[t + 1], start) for t in range(len(actions))], bool)
    truncs = np.zeros(len(actions), bool)
    if len(actions) and not success[-1]:
        truncs[-1] = True
    raw = np.asarray(rollout.get("raw_observations", obs), np.float32)
    off, jump = implausible(raw)
    excess = max((float(np.abs(project_state(obs[t], raw[t + 1], reach) - raw[t + 1]).max())
                  for t in range(len(actions))), default=0.0)
    return Episode(observations=obs, actions=actions, rewards=rewards, terminations=success, truncations=truncs,
                   goal=goal.text, infos={"level": goal.level, "goal_spec": goal.spec(),
                                          "success": bool(success.any()), "imaginary": True,
                                          "raw_off_table": off, "raw_beyond_dynamics": jump, "raw_excess": excess})


def plausibility(episodes: Sequence[Any], raw: bool = False) -> dict[str, float]:
    """KALM's check of imagined transitions: the share with a ball off the table, or with a ball
    moving further than a push can; ``raw=True`` judges the LM's own states (before projection)."""
    n = sum(len(e.actions) for e in episodes)
    if raw:
        off = sum(e.infos.get("raw_off_table", 0) for e in episodes)
        jump = sum(e.infos.get("raw_beyond_dynamics", 0) for e in episodes)
    else:
        counts = [implausible(e.observations) for e in episodes]
        off, jump = sum(c[0] for c in counts), sum(c[1] for c in counts)
    return {"off_table": off / max(n, 1), "beyond_dynamics": jump / max(n, 1)}


def replayed(episodes: Sequence[Any]) -> dict[str, float]:
    """How real the imagined actions are: replay each rollout's actions open-loop in the real
    environment from its real s0 and judge the goal there; and how often the first action pushes
    the ball the goal names (where it names one)."""
    from llmrl.envs.clevr_robot import ClevrRobotEnv

    reached, named, right_ball = 0, 0, 0
    for e in episodes:
        goal = goal_from_spec(e.infos["goal_spec"])
        env = ClevrRobotEnv(goal_level=goal.level)
        env.reset(options={"goal": goal, "positions": e.observations[0]})
        for a in e.actions:
            _, _, terminated, truncated, _ = env.step(int(a))
            if terminated or truncated:
                reached += int(terminated)
                break
        if hasattr(goal, "ball") and len(e.actions):
            named += 1
            right_ball += int(e.actions[0]) // 8 == goal.ball
    return {"replayed_success": reached / max(len(episodes), 1),
            "first_action_moves_goal_ball": right_ball / named if named else float("nan")}


def imagine(config: KALMConfig, out: str | os.PathLike[str], *, resume: bool = False,
            progress: bool = True) -> RunResult:
    """Stage 3: imaginary rollouts for novel goals → ``imaginary.npz`` (the kept rollouts) and
    ``quality.json`` (KALM's plausibility of the LM's raw states, what projection and dropping
    did, and how the imagined actions fare when replayed in the real physics)."""
    from llmrl.data import EpisodeDataset

    path, done = open_stage(out, config, "imagine", resume)
    if done:
        return _result(path)
    started = time.time()
    cfg = config.imagination
    real = EpisodeDataset.load(require(out, config, "collect") / "real.npz")
    todo = novel_goals(config, real)
    partial = path / "partial.npz"
    data = EpisodeDataset.load(partial) if partial.exists() else EpisodeDataset([], {})
    for level in NOVEL_LEVELS:
        batch = [(g, s) for g, s in todo if g.level == level][sum(e.infos["level"] == level for e in data):]
        step = 4 * cfg.batch_size
        chunks = [(config, str(out), batch[i: i + step]) for i in range(0, len(batch), step)]
        if config.ray.enabled:  # chunks on LM replicas; saved in order as the finished ones line up
            from llmrl.workers import run_jobs

            jobs = run_jobs(_imagine_chunk, chunks, config.ray.lm_replicas, setup=_load_imagination,
                            setup_args=(config, str(out)), cluster=config.ray)
        else:
            jobs = ((k, _imagine_chunk(*c)) for k, c in enumerate(chunks))
        finished: dict[int, list[Any]] = {}
        saved = 0
        for k, episodes in jobs:
            finished[k] = episodes
            while saved in finished:
                data.episodes.extend(finished.pop(saved))
                saved += 1
                data.save(partial)
                _log(f"imagine {level}: {min(saved * step, len(batch))}/{len(batch)}", progress)
    _LOADED.clear()
    reach, real_length, cap = _imagination_limits(config, real)
    kept = [e for e in data if not (cfg.drop_beyond and e.infos["raw_excess"] > cfg.drop_beyond)]
    quality = {"real_mean_length": real_length, "length_cap": cap, "push_reach": reach}
    for level in NOVEL_LEVELS:
        made = [e for e in data if e.infos["level"] == level]
        eps = [e for e in kept if e.infos["level"] == level]
        hits = sum(e.infos["success"] for e in eps)
        raw = plausibility(made, raw=True)
        quality[level] = {"rollouts": len(made), "kept": len(eps), "dropped": 1 - len(eps) / max(len(made), 1),
                          "goal_reached": hits / max(len(eps), 1), "interval": wilson_interval(hits, len(eps)),
                          "mean_length": float(np.mean([len(e.actions) for e in eps])) if eps else 0.0,
                          "raw_off_table": raw["off_table"], "raw_beyond_dynamics": raw["beyond_dynamics"],
                          **plausibility(eps), **replayed(eps)}
    out_data = EpisodeDataset(kept, {"source": f"imagined by {config.grounding.model}", "imaginary": True})
    out_data.save(path / "imaginary.npz")
    partial.unlink(missing_ok=True)
    atomic_write_json(path / "quality.json", quality)
    return mark_done(path, config, "imagine", {"quality": quality}, started)


# A process's copy of what its jobs read (the grounded LM, the train stage's inputs, or the
# evaluation episodes and goal vectors), loaded once per worker by _load_imagination,
# _load_offline_data or _load_evaluation.
_LOADED: dict[str, Any] = {}


def _imagination_limits(config: KALMConfig, real: Any) -> tuple[float, float, int]:
    """(push reach, real mean episode length, imagined rollouts' step cap) from the real data."""
    real_length = float(np.mean([len(e.actions) for e in real]))
    return push_reach(real), real_length, max(1, int(np.ceil(config.imagination.length_factor * real_length)))


def _load_imagination(config: KALMConfig, out: str) -> None:
    """The grounded LM and the limits from the real data, once per process (see ``_LOADED``)."""
    from llmrl.data import EpisodeDataset

    key = ("imagine", out, stage_key(config, "imagine"))
    if _LOADED.get("key") == key:
        return
    real = EpisodeDataset.load(require(out, config, "collect") / "real.npz")
    grounded = load_grounded(require(out, config, "ground"), config)
    _LOADED.clear()
    _LOADED.update(key=key, grounded=grounded, limits=_imagination_limits(config, real))


def _imagine_chunk(config: KALMConfig, out: str, chunk: list[tuple[Any, np.ndarray]]) -> list[Any]:
    """Imagined rollouts (greedy decoding) for a chunk of (goal, initial state) pairs of one level."""
    from llmrl.roles import imagination

    _load_imagination(config, out)
    reach, _, cap = _LOADED["limits"]
    cfg = config.imagination
    project = (lambda prev, s: project_state(prev, s, reach)) if cfg.project else None
    goals = [g for g, _ in chunk]
    rollouts = imagination.imagine(
        _LOADED["grounded"], [g.text for g in goals], np.stack([s for _, s in chunk]),
        stop=lambda j, s0, s: goals[j].success(s, s0),
        max_steps=min(goals[0].max_steps, cap), batch_size=cfg.batch_size, project=project)
    return [imaginary_episode(g, r, reach) for g, r in zip(goals, rollouts)]


# --------------------------------------------------------------------------- 4. train
BOW_DIM = 1024


def bag_of_words(texts: Sequence[str], dim: int = BOW_DIM) -> np.ndarray:
    """Hashed bag of lower-cased words, L2-normalised: knows words, not meanings."""
    out = np.zeros((len(texts), dim), np.float32)
    for i, text in enumerate(texts):
        for word in "".join(c if c.isalnum() else " " for c in text.lower()).split():
            out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % dim] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def embed_goals(texts: Sequence[str], cache: Path, encoder: str = "minilm", model: str | None = None) -> np.ndarray:
    """Goal sentences as vectors (KALM: BERT-base; see ``GOAL_ENCODERS``), cached in an npz:
    minilm (MiniLM sentence embeddings), lm-mean (``model``'s mean final hidden state) or bow."""
    known: dict[str, np.ndarray] = {}
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            known = dict(zip(z["texts"].tolist(), z["vectors"]))
    missing = sorted(set(texts) - set(known))
    if missing:
        if encoder == "minilm":
            from llmrl.lm.embed import SentenceEmbedder

            vectors = SentenceEmbedder().embed(missing)
        elif encoder == "lm-mean":
            from llmrl.lm import load_model

            vectors = load_model(model or "gemma-3-270m", dtype="fp32").mean_hidden(missing)
        elif encoder == "bow":
            vectors = bag_of_words(missing)
        else:
            raise ValueError(f"unknown goal encoder {encoder!r}: choose from {', '.join(GOAL_ENCODERS)}")
        known.update(zip(missing, vectors))
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, texts=np.array(list(known)), vectors=np.stack(list(known.values())).astype(np.float32))
        os.replace(tmp, cache)
    return np.stack([known[t] for t in texts]).astype(np.float32)


def offline_runs(config: KALMConfig) -> list[tuple[str, str, str, int]]:
    """(goal encoder, algorithm, data, seed) of every offline RL run. data is "real" or a novel
    level: real plus that level's imagined rollouts, one agent per level as KALM's code trains them."""
    return [(e, a, d, s) for e in config.goal_encoders for a in config.algos for d in DATASETS
            for s in config.offline_seeds]


def run_name(encoder: str, algo: str, data: str, seed: int) -> str:
    return f"{encoder}-{algo}{'' if data == 'real' else '+kalm-' + data}-s{seed}"


def offline_config(config: KALMConfig, algo: str, seed: int) -> Any:
    from llmrl.rl.offline import PRESETS as OFFLINE_PRESETS

    rate = {"bc": config.bc_learning_rate, "cql": config.cql_learning_rate}.get(algo)
    base = OFFLINE_PRESETS[algo]
    return replace(base, gradient_steps=config.gradient_steps, seed=seed, mix_ratio=config.mix_ratio,
                   learning_rate=rate or base.learning_rate, snapshots=config.snapshots)




def _load_offline_data(config: KALMConfig, out: str) -> None:
    """Real transitions, each level's imaginary transitions and their goal vectors per encoder
    (computed and cached in the stage folder by the first process to need them)."""
    from llmrl.data import EpisodeDataset

    key = ("train", out, stage_key(config, "train"))
    if _LOADED.get("key") == key:
        return
    path = stage_dir(out, config, "train")
    real = EpisodeDataset.load(require(out, config, "collect") / "real.npz")
    real = real[: config.offline_real_episodes or len(real)].transitions()
    imagined = EpisodeDataset.load(require(out, config, "imagine") / "imaginary.npz")
    if config.imaginary_filter == "reached":  # judged on the LM's own states: no real interaction
        imagined = imagined.filter(lambda e: e.infos["success"])
    per_level = {lv: imagined.filter(lambda e, lv=lv: e.infos["level"] == lv) for lv in NOVEL_LEVELS}
    empty = [lv for lv, d in per_level.items() if not len(d)]
    if empty:
        raise ValueError(f"no imagined rollouts to train on for {', '.join(empty)} (none made, or all dropped or "
                         "filtered out): imagine more, raise imagination.drop_beyond, or use imaginary_filter='all'")
    imaginary = {lv: d.transitions() for lv, d in per_level.items()}
    vectors = {}
    for encoder in config.goal_encoders:
        cache = path / f"goal_embeddings-{encoder}.npz"
        vectors[encoder, "real"] = embed_goals(real.goals, cache, encoder, config.grounding.model)
        for lv, t in imaginary.items():
            vectors[encoder, lv] = embed_goals(t.goals, cache, encoder, config.grounding.model)
    _LOADED.clear()
    _LOADED.update(key=key, real=real, imaginary=imaginary, vectors=vectors)


def _train_run(config: KALMConfig, out: str, encoder: str, algo: str, data: str, seed: int) -> str:
    """One offline RL run of the train stage (in whichever process ``run_jobs`` puts it)."""
    from llmrl.rl.offline import train_offline

    _load_offline_data(config, out)
    run = stage_dir(out, config, "train") / run_name(encoder, algo, data, seed)
    imaginary = _LOADED["imaginary"].get(data)
    train_offline(offline_config(config, algo, seed), _LOADED["real"], _LOADED["vectors"][encoder, "real"],
                  imaginary=imaginary, imaginary_goal_embeddings=None if imaginary is None else _LOADED["vectors"][encoder, data],
                  out_dir=run, resume=True)
    return run.name


def train(config: KALMConfig, out: str | os.PathLike[str], *, resume: bool = False,
          progress: bool = True) -> RunResult:
    """Stage 4: goal-conditioned offline RL on real data, and on real + each level's imaginary
    data (1:1 per batch), for every goal encoder → ``<run>/agent.pt`` and ``<run>/snapshots/``;
    ``config.workers`` runs side by side."""
    from llmrl.workers import run_jobs

    path, done = open_stage(out, config, "train", resume)
    if done:
        return _result(path)
    started = time.time()
    _load_offline_data(config, str(out))  # here first: goal vectors are computed once, then cached
    todo = [r for r in offline_runs(config) if not (path / run_name(*r) / "agent.pt").exists()]
    _log(f"train: {len(todo)} offline runs of {config.gradient_steps} steps, {config.workers} at a time", progress)
    for _, name in run_jobs(_train_run, [(config, str(out), *r) for r in todo], config.workers,
                            setup=_load_offline_data, setup_args=(config, str(out)), cluster=config.ray):
        _log(f"trained {name}", progress)
    return mark_done(path, config, "train", {"runs": [run_name(*r) for r in offline_runs(config)],
                                             "real_transitions": len(_LOADED["real"].actions),
                                             "imaginary_transitions": {lv: len(t.actions) for lv, t in
                                                                       _LOADED["imaginary"].items()}},
                     started)


# --------------------------------------------------------------------------- 5. evaluate
def evaluation_episodes(config: KALMConfig, level: str) -> list[tuple[dict[str, Any], np.ndarray]]:
    """The held-out (goal, initial positions) of a level: the same for every agent."""
    from llmrl.envs.clevr_robot import ClevrRobotEnv

    env = ClevrRobotEnv(goal_level=level)
    cases = []
    for i in range(config.eval_episodes):
        obs, info = env.reset(seed=config.eval_seed + i)
        cases.append((info["goal"].spec(), obs.copy()))
    return cases


_ENVS: list[Any] = []  # this process's environments for run_episodes, reused from call to call


def run_episodes(act: Callable[[np.ndarray, list[Goal], np.ndarray], np.ndarray],
                 cases: Sequence[tuple[dict[str, Any], np.ndarray]]) -> np.ndarray:
    """Run every case in lockstep; ``act(observations, goals, starts)`` picks a batch of actions."""
    from llmrl.envs.clevr_robot import ClevrRobotEnv

    goals = [goal_from_spec(spec) for spec, _ in cases]
    _ENVS.extend(ClevrRobotEnv() for _ in range(len(goals) - len(_ENVS)))  # building one costs ~4 ms
    envs = _ENVS[: len(goals)]  # a reset with a goal and positions sets the whole episode
    obs = np.stack([env.reset(options={"goal": g, "positions": p})[0] for env, g, (_, p) in zip(envs, goals, cases)])
    starts = obs.copy()
    success = np.zeros(len(cases), bool)
    live = np.ones(len(cases), bool)
    while live.any():
        idx = np.flatnonzero(live)
        actions = act(obs[idx], [goals[i] for i in idx], starts[idx])
        for i, a in zip(idx, actions):
            obs[i], _, terminated, truncated, _ = envs[i].step(int(a))
            if terminated or truncated:
                live[i], success[i] = False, terminated
    return success


def run_lm_policy(grounded: Any, cases: Sequence[tuple[dict[str, Any], np.ndarray]]) -> np.ndarray:
    """The grounded LM acting in the real environment from the rollout-generation prompt."""
    from llmrl.envs.clevr_robot import ClevrRobotEnv
    from llmrl.roles.imagination import act_in_world

    goals = [goal_from_spec(spec) for spec, _ in cases]
    envs = [ClevrRobotEnv(goal_level=g.level) for g in goals]
    starts = np.stack([env.reset(options={"goal": g, "positions": p})[0] for env, g, (_, p) in zip(envs, goals, cases)])
    success = np.zeros(len(cases), bool)

    def world(i: int, action: int) -> tuple[np.ndarray, bool]:
        obs, _, terminated, truncated, _ = envs[i].step(action)
        success[i] = terminated
        return obs, terminated or truncated

    act_in_world(grounded, [g.text for g in goals], starts, world, max_steps=max(g.max_steps for g in goals))
    return success


def evaluated_levels(data: str) -> tuple[str, ...]:
    """The levels an offline agent is judged on: real-only agents on all four; an agent trained
    with one level's imagined data on the seen goals and that level (as ImagineBench pairs them)."""
    return LEVELS if data == "real" else ("seen", data)


def _load_evaluation(config: KALMConfig, out: str) -> None:
    """The held-out episodes of every level and their goals' vectors per encoder."""
    key = ("evaluate", out, stage_key(config, "evaluate"))
    if _LOADED.get("key") == key:
        return
    trained = require(out, config, "train")
    cases = {level: evaluation_episodes(config, level) for level in LEVELS}
    texts = sorted({goal_from_spec(spec).text for level in LEVELS for spec, _ in cases[level]})
    vectors = {enc: dict(zip(texts, embed_goals(texts, trained / f"goal_embeddings-{enc}.npz", enc,
                                                config.grounding.model))) for enc in config.goal_encoders}
    _LOADED.clear()
    _LOADED.update(key=key, cases=cases, vectors=vectors)


def _evaluate_snapshot(config: KALMConfig, snapshot: str, encoder: str, data: str,
                       keys: dict[str, str]) -> dict[str, dict[str, list[bool]]]:
    """One offline agent acting greedily and/or sampled (``keys``: policy → result key) on the
    levels it is judged on; each policy's sampling rng starts afresh, so results do not depend on
    which process or order evaluates them."""
    from llmrl.rl.offline import OfflineAgent

    agent = OfflineAgent.load(Path(snapshot))
    vectors = _LOADED["vectors"][encoder]
    scores = {}
    for policy, key in keys.items():
        def act(obs, goals, starts, greedy=policy == "greedy", rng=np.random.default_rng(config.eval_seed)):
            return agent.act(obs, np.stack([vectors[g.text] for g in goals]), greedy=greedy, rng=rng)

        scores[key] = {lv: run_episodes(act, _LOADED["cases"][lv]).tolist() for lv in evaluated_levels(data)}
    return scores


def evaluate(config: KALMConfig, out: str | os.PathLike[str], *, resume: bool = False,
             progress: bool = True) -> RunResult:
    """Stage 5: success per goal level of every snapshot of every trained agent, of the grounded
    LM as a policy, and of random and expert references → ``results.json`` (``name`` or
    ``name@step`` → level → one outcome per episode)."""
    from llmrl.envs.clevr_expert import ClevrExpert
    from llmrl.rl.offline import snapshot_paths
    from llmrl.workers import run_jobs

    path, done = open_stage(out, config, "evaluate", resume)
    if done:  # the table is re-derived from the raw results, so it follows summarise()
        results = json.loads((path / "results.json").read_text())
        (path / "results.md").write_text(markdown(summarise(config, results), config))
        return _result(path)
    started = time.time()
    trained = require(out, config, "train")
    partial = path / "partial.json"
    results: dict[str, dict[str, list[bool]]] = json.loads(partial.read_text()) if partial.exists() else {}
    _load_evaluation(config, str(out))  # here first: goal vectors are computed once, then cached
    cases = _LOADED["cases"]

    rng = np.random.default_rng(config.eval_seed)
    expert = ClevrExpert(epsilon=0.0)
    agents: dict[str, tuple[Callable[..., np.ndarray], tuple[str, ...]]] = {
        "random": (lambda obs, goals, starts: rng.integers(40, size=len(goals)), LEVELS),
        "expert": (lambda obs, goals, starts: np.array([expert.act(o, g, s, rng) for o, g, s in zip(obs, goals, starts)]),
                   LEVELS),
    }
    jobs = []
    for encoder, algo, data, seed in offline_runs(config):
        name = run_name(encoder, algo, data, seed)
        for snap in snapshot_paths(trained / name)[-config.snapshots:]:
            keys = {p: f"{name}{POLICY_SUFFIX[p]}@{int(snap.stem.split('_')[1])}" for p in config.eval_policies}
            if any(lv not in results.get(k, {}) for k in keys.values() for lv in evaluated_levels(data)):
                jobs.append((config, str(snap), encoder, data, keys))
    for _, scores in run_jobs(_evaluate_snapshot, jobs, config.workers, setup=_load_evaluation,
                              setup_args=(config, str(out)), cluster=config.ray):
        for key, levels in scores.items():
            results.setdefault(key, {}).update(levels)
            _log(f"evaluate {key}: " + ", ".join(f"{lv} {np.mean(v):.2f}" for lv, v in levels.items()), progress)
        atomic_write_json(partial, results)
    if config.eval_lm_policy:
        grounded = None

        def lm_policy(level: str) -> np.ndarray:
            nonlocal grounded
            grounded = grounded or load_grounded(require(out, config, "ground"), config)
            return run_lm_policy(grounded, cases[level])

        agents["grounded-lm"] = (lm_policy, LEVELS)
    for name, (act, levels) in agents.items():
        for level in levels:
            if level in results.get(name, {}):
                continue
            success = act(level) if name == "grounded-lm" else run_episodes(act, cases[level])
            results.setdefault(name, {})[level] = success.tolist()
            atomic_write_json(partial, results)
            _log(f"evaluate {name} on {level}: {success.mean():.2f}", progress)
    atomic_write_json(path / "results.json", results)
    partial.unlink(missing_ok=True)
    table = summarise(config, results)
    (path / "results.md").write_text(markdown(table, config))
    return mark_done(path, config, "evaluate", {"summary": table}, started)


COLUMNS = (*LEVELS, "novel")  # novel: the episodes of rephrase, easy and hard pooled (KALM's headline)
SINGLE_AGENTS = ("random", "expert", "grounded-lm")


def per_seed_success(results: dict[str, dict[str, list[bool]]]) -> dict[str, dict[str, float]]:
    """Offline run (``name`` without ``@step``) → level → success averaged over its snapshots
    (KALM: the mean of the last 5 checkpoints)."""
    runs: dict[str, dict[str, list[float]]] = {}
    for key, levels in results.items():
        if "@" not in key:
            continue
        run = key.split("@")[0]
        for level, outcomes in levels.items():
            runs.setdefault(run, {}).setdefault(level, []).append(float(np.mean(outcomes)))
    return {run: {lv: float(np.mean(v)) for lv, v in levels.items()} for run, levels in runs.items()}


def summarise(config: KALMConfig, results: dict[str, dict[str, list[bool]]]) -> dict[str, dict[str, Any]]:
    """Rows of the results table: the single agents (one run, 95% Wilson interval), and per goal
    encoder and algorithm the real-data agent and the +KALM agents (mean over seeds with a 95%
    t-interval, each seed the mean over its snapshots). The +KALM row takes each novel level
    from the agent trained with that level's imagined data and the seen column as the mean of
    the three; its novel column averages the three levels (equal episodes per level)."""
    table: dict[str, dict[str, Any]] = {}
    for name in SINGLE_AGENTS:
        if name not in results:
            continue
        row = {}
        for column in COLUMNS:
            levels = NOVEL_LEVELS if column == "novel" else (column,)
            outcomes = sum((results[name][lv] for lv in levels), [])
            low, high = wilson_interval(int(sum(outcomes)), len(outcomes))
            row[column] = {"mean": float(np.mean(outcomes)), "low": low, "high": high, "per_seed": [float(np.mean(outcomes))]}
        table[name] = row
    runs = per_seed_success(results)

    def cell(values: list[float]) -> dict[str, Any]:
        if len(values) == 1:
            return {"mean": values[0], "low": float("nan"), "high": float("nan"), "per_seed": values}
        mean, low, high = t_interval(values)
        return {"mean": mean, "low": max(0.0, low), "high": min(1.0, high), "per_seed": values}

    for policy, encoder, algo in itertools.product(config.eval_policies, config.goal_encoders, config.algos):
        key = lambda data, s: run_name(encoder, algo, data, s) + POLICY_SUFFIX[policy]  # noqa: E731
        tail = "" if policy == "greedy" else f" ({policy})"
        real = [runs[key("real", s)] for s in config.offline_seeds if key("real", s) in runs]
        if real:
            row = {lv: cell([r[lv] for r in real]) for lv in LEVELS}
            row["novel"] = cell([float(np.mean([r[lv] for lv in NOVEL_LEVELS])) for r in real])
            table[f"{encoder} {algo}{tail}"] = row
        seeds = [s for s in config.offline_seeds if all(key(lv, s) in runs for lv in NOVEL_LEVELS)]
        if seeds:
            kalm = [{lv: runs[key(lv, s)] for lv in NOVEL_LEVELS} for s in seeds]
            row = {"seen": cell([float(np.mean([k[lv]["seen"] for lv in NOVEL_LEVELS])) for k in kalm])}
            row.update({lv: cell([k[lv][lv] for k in kalm]) for lv in NOVEL_LEVELS})
            row["novel"] = cell([float(np.mean([k[lv][lv] for lv in NOVEL_LEVELS])) for k in kalm])
            table[f"{encoder} {algo}+KALM{tail}"] = row
    return table


def markdown(table: dict[str, dict[str, Any]], config: KALMConfig) -> str:
    lines = [f"Success per goal level ({config.eval_episodes} held-out episodes per level; novel = mean of rephrase, "
             f"easy and hard; offline RL: mean over {len(config.offline_seeds)} seeds [95% t-interval], each seed the "
             f"mean of its last {config.snapshots} snapshots; +KALM: one agent per novel level trained on real + that "
             "level's imagined rollouts, seen = the mean of the three; single runs [95% Wilson interval])", "",
             "| agent | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for group, row in table.items():
        cells = []
        for c in COLUMNS:
            lo, hi = row[c]["low"], row[c]["high"]
            interval = "" if lo != lo else f" [{lo:.2f}, {hi:.2f}]"  # NaN: one seed, no interval
            cells.append(f"{row[c]['mean']:.2f}{interval}")
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- all
STAGES: dict[str, Callable[..., RunResult]] = {
    "collect": collect, "ground": ground, "imagine": imagine, "train": train, "evaluate": evaluate,
}


def run(config: KALMConfig, out: str | os.PathLike[str], *, resume: bool = False, progress: bool = True) -> RunResult:
    """Every stage in order into ``out`` (one sub-folder per stage, keyed by its inputs); finished
    stages are reused, an interrupted one continues with ``resume=True``."""
    root = check_output_folder(out)
    atomic_write_json(root / f"config-{stage_key(config, 'evaluate')}.json", {"recipe": RECIPE, "config": to_dict(config)})
    result = None
    for name, stage in STAGES.items():
        result = stage(config, root, resume=resume, progress=progress)
        _log(f"{name} done: {result.out}", progress)
    assert result is not None
    return result
