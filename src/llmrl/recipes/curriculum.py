"""Automatic curriculum learning on a BabyAI task space: which teacher buys the most held-out success?

Claim under test: a teacher that picks each training episode's task from the learner's results
reaches higher success on *held-out* tasks per environment step than domain randomisation — as
ALP-GMM (Portelas et al. 2019, CoRL: 32% vs 4.3% of ToyEnv cells mastered) and PLR (Jiang,
Grefenstette, Rocktäschel 2021, ICML: better Procgen test returns) report — and an LM that reads
the learner's per-task success can be such a teacher (OMNI, Zhang et al. 2024, ICLR: train on
tasks that are learnable and interesting; :mod:`llmrl.roles.teacher`).

The task space is :mod:`llmrl.envs.task_space`'s grid (mission family × room size × distractors
× door); ``held_out_split`` keeps ``test_fraction`` of each family's tasks out of training. For
every seed and teacher a learner trains on the training split while the teacher chooses the
task of every episode (:class:`TaskEpisodes`, a Gymnasium wrapper per environment asks it at each
reset and reports each finished episode back). Teachers (:mod:`llmrl.rl.curriculum`):

- ``uniform``: domain randomisation over the training tasks;
- ``alp_gmm``: ALP-GMM over the Box [0, 1]^4 whose axes are (family, room size, distractors,
  door). Axis j holds factor j's k_j grid values in order — families as ``families``, sizes and
  distractor counts ascending, doors none < closed < locked — value l at the centre
  (l + 0.5)/k_j. A point plays the training task whose centre is nearest (Euclidean): the task of
  the cell it lies in when that task is a training task, else its nearest training neighbour
  (held-out or infeasible cells are never played). ALP is computed on the points, as ALP-GMM does;
  the family axis is categorical, so "near" there only means "next in the list";
- ``plr``: Prioritized Level Replay over the training tasks, scored by each episode's mean |GAE|
  (``value_l1``), taken from the learner's own rollout buffer after each update's GAE;
- ``lm``: the LM teacher (:class:`llmrl.roles.teacher.LMTeacher`, ``teacher_model``).

Learners: ``symbolic`` — Stable-Baselines3 PPO on BabyAI's symbolic view with BabyAI's encoder,
built by :mod:`llmrl.recipes.symbolic_ppo` (``symbolic`` holds its settings) — and ``glam`` — the
GLAM LM policy trained by :mod:`llmrl.recipes.glam`'s rollout and update (``glam``). Of the
nested learner configs only the learner's own fields are read (model, PPO, envs, prompts); the
recipe sets seeds, budgets and evaluation.

Every ``eval_every`` env steps (and at 0) the learner's sampled policy plays ``eval_episodes``
episodes of every held-out task: episode k is reset with seed ``eval_seed + k`` and plays test task
k mod n_test, the same episodes for every teacher, seed and checkpoint (training levels come from
seeds below ``eval_seed``). Run folder: ``records.jsonl`` (a ``split`` record naming the train and
test tasks, then one ``eval`` record per evaluation with every episode's success, return and
length, the per-task episode and step counts the teacher has spent so far, and the teacher's own
numbers), ``summary.json`` and ``done.json``. ``scripts/curriculum_results.py`` recomputes the
tables from the records. ``--resume`` keeps the (teacher, seed) runs that finished and redoes the
one that was cut.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import gymnasium as gym
import numpy as np

from llmrl.config import config_from as _config_from
from llmrl.config import require_positive
from llmrl.envs.task_space import DOORS, FAMILIES, TaskGrid, held_out_split, make_task_env, task_name
from llmrl.recipes.glam import GLAMConfig
from llmrl.recipes.symbolic_ppo import SymbolicPPOConfig
from llmrl.rl.curriculum import ALPGMMConfig, Curriculum, PLRConfig, make_curriculum
from llmrl.rl.ppo import PPOConfig
from llmrl.roles.teacher import LMTeacherConfig
from llmrl.runs import JsonLines, RunFolder, RunResult, atomic_write_json, atomic_write_text, env_seeds, read_json_lines
from llmrl.stats import t_interval

RECIPE = "curriculum"
TEACHERS = ("uniform", "alp_gmm", "plr", "lm")
LEARNERS = ("symbolic", "glam")
SEED_STRIDE = 1_000  # training environments a (teacher, seed) run may seed: seeds never share one
FACTORS = ("family", "room_size", "num_dists", "door")


def _symbolic() -> SymbolicPPOConfig:
    """The symbolic learner: SB3 PPO with 16 envs x 128 steps (2048 per update), 4 epochs."""
    return SymbolicPPOConfig(n_envs=16, ppo=PPOConfig(n_steps=128, n_epochs=4, minibatch_size=256, learning_rate=3e-4))


def _glam() -> GLAMConfig:
    """The GLAM learner at the GLAM cpu preset's scale (16 envs x 32 steps, one observation)."""
    return GLAMConfig(model="smollm2-135m-instruct", n_envs=16, n_observations=1, label="glam-curriculum",
                      ppo=PPOConfig(n_steps=32, n_epochs=1, minibatch_size=64, learning_rate=2e-4))


@dataclass
class CurriculumConfig:
    """The curriculum study's settings; every field lands in the run's ``config.json``."""

    teachers: tuple[str, ...] = TEACHERS
    """teachers compared: uniform, alp_gmm, plr, lm"""
    seeds: tuple[int, ...] = (0, 1, 2)
    """each seed trains one learner per teacher (its init, training levels and the teacher's draws)"""
    learner: str = "symbolic"
    """symbolic (SB3 PPO on BabyAI's symbolic view) or glam (the LM policy; much slower)"""
    total_env_steps: int = 1_000_000
    """environment steps per (teacher, seed) run; a multiple of eval_every"""
    eval_every: int = 100_000
    """env steps between held-out evaluations; a multiple of the learner's rollout (n_envs x ppo.n_steps)"""
    eval_episodes: int = 10
    """episodes per held-out task at every evaluation (episode k: seed eval_seed + k, test task k mod n_test)"""
    eval_seed: int = 10_000_000
    """first evaluation seed; training seeds stay below it"""
    families: tuple[str, ...] = FAMILIES
    """mission families of the task grid (goto, pickup, open, putnext)"""
    room_sizes: tuple[int, ...] = (5, 6, 8)
    """room sides of the task grid, walls included"""
    num_dists: tuple[int, ...] = (0, 2, 4, 8)
    """distractor counts of the task grid"""
    doors: tuple[str, ...] = DOORS
    """doors of the task grid (none, closed, locked)"""
    test_fraction: float = 0.2
    """share of each family's tasks held out for evaluation"""
    split_seed: int = 0
    """draws the held-out tasks (the same split for every teacher and seed)"""
    success_window: int = 20
    """episodes per task behind a teacher's success rates (the LM teacher's prompt)"""
    symbolic: SymbolicPPOConfig = field(default_factory=_symbolic)
    """the symbolic learner (n_envs, ppo, features_dim, mission_len, reward_scale, memory are read)"""
    glam: GLAMConfig = field(default_factory=_glam)
    """the GLAM learner (model, n_envs, ppo, LoRA, prompt, reward_scale are read)"""
    alp_gmm: ALPGMMConfig = field(default_factory=ALPGMMConfig)
    """ALP-GMM's settings (teachDeepRL's defaults)"""
    plr: PLRConfig = field(default_factory=PLRConfig)
    """PLR's settings (level-replay's defaults: value_l1, rank, β = 0.1, ρ = 0.1)"""
    lm_teacher: LMTeacherConfig = field(default_factory=LMTeacherConfig)
    """the LM teacher's settings (ask_every, epsilon, temperature)"""
    teacher_model: str = "gemma-3-270m"
    """the LM teacher's model (``llmrl.lm.load_model``)"""
    torch_threads: int = 1
    """torch intra-op threads"""
    label: str = RECIPE
    """the study's name in tables"""

    def __post_init__(self) -> None:
        self.teachers, self.seeds = tuple(self.teachers), tuple(int(s) for s in self.seeds)
        for name in ("families", "room_sizes", "num_dists", "doors"):
            setattr(self, name, tuple(getattr(self, name)))
        bad = [t for t in self.teachers if t not in TEACHERS]
        if bad or not self.teachers or len(set(self.teachers)) != len(self.teachers):
            raise ValueError(f"teachers: unknown, repeated or none ({bad or list(self.teachers)}); "
                             f"choose from {', '.join(TEACHERS)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: give at least one seed, each once, got {self.seeds}")
        if self.learner not in LEARNERS:
            raise ValueError(f"learner: unknown {self.learner!r}; choose from {', '.join(LEARNERS)}")
        require_positive(self, "total_env_steps", "eval_every", "eval_episodes", "success_window", "torch_threads")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1), got {self.test_fraction}")
        if self.total_env_steps % self.eval_every:
            raise ValueError(f"total_env_steps ({self.total_env_steps}) must be a multiple of eval_every "
                             f"({self.eval_every}), so every run is evaluated at the same steps")
        if self.eval_every % self.rollout_steps:
            raise ValueError(f"eval_every ({self.eval_every}) must be a multiple of the {self.learner} learner's "
                             f"rollout, n_envs x ppo.n_steps = {self.rollout_steps}")
        if max(self.seeds) * SEED_STRIDE + SEED_STRIDE > self.eval_seed:
            raise ValueError(f"eval_seed ({self.eval_seed}) must exceed the training seeds (up to "
                             f"{(max(self.seeds) + 1) * SEED_STRIDE}): raise eval_seed")
        try:
            grid = TaskGrid(self.families, self.room_sizes, self.num_dists, self.doors)
        except ValueError as e:
            raise ValueError(f"task grid (families, room_sizes, num_dists, doors): {e}") from None
        train, test = held_out_split(grid.tasks(), self.test_fraction, self.split_seed)
        if not train or not test:
            raise ValueError(f"the task grid has {len(train)} training and {len(test)} held-out tasks: "
                             "widen the grid or change test_fraction")

    @property
    def rollout_steps(self) -> int:
        """Env steps per learner update."""
        if self.learner == "glam":
            return self.glam.batch_size
        return self.symbolic.n_envs * self.symbolic.ppo.n_steps

    def split(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(training tasks, held-out tasks)."""
        grid = TaskGrid(self.families, self.room_sizes, self.num_dists, self.doors)
        return held_out_split(grid.tasks(), self.test_fraction, self.split_seed)


Config = CurriculumConfig

_SMOKE_SYMBOLIC = SymbolicPPOConfig(n_envs=4, features_dim=32,
                                    ppo=PPOConfig(n_steps=32, n_epochs=1, minibatch_size=64, learning_rate=3e-4))
PRESETS: dict[str, CurriculumConfig] = {
    # About 1.5 h on 2 CPU cores with the seeds split over two processes (--seeds 0,1 / --seeds 2).
    # Measured 2026-12-07, one torch thread: a 491,520-step run (240 updates of 2,048 steps, 13
    # evaluations of 80 episodes) took 8 min alone on a core; the LM teacher adds its asks
    # (gemma-3-270m, 38 tasks, 4-6 s each, one per 64 episodes). Three families without putnext
    # (rarely solved by a small PPO budget), rooms 5 and 6: 38 training and 8 held-out tasks.
    "cpu": CurriculumConfig(families=("goto", "pickup", "open"), room_sizes=(5, 6), num_dists=(0, 2, 4),
                            total_env_steps=491_520, eval_every=40_960, eval_episodes=10,
                            alp_gmm=ALPGMMConfig(fit_rate=100), lm_teacher=LMTeacherConfig(ask_every=64)),
    # PLR's MiniGrid scale (tens of millions of steps would be Procgen's): a GPU-days budget, not run here.
    "paper": CurriculumConfig(total_env_steps=20_971_520, eval_every=524_288, eval_episodes=50,
                              symbolic=replace(_symbolic(), n_envs=64, ppo=PPOConfig(
                                  n_steps=256, n_epochs=4, minibatch_size=2048, learning_rate=3e-4))),
    "smoke": CurriculumConfig(families=("goto", "open"), room_sizes=(5,), num_dists=(0, 2), doors=("none", "closed"),
                              test_fraction=0.4, seeds=(0,), total_env_steps=256, eval_every=128, eval_episodes=1,
                              symbolic=_SMOKE_SYMBOLIC, alp_gmm=ALPGMMConfig(fit_rate=4, potential_ks=(2,)),
                              lm_teacher=LMTeacherConfig(ask_every=4), teacher_model="smollm2-135m-instruct",
                              glam=replace(_glam(), n_envs=2, ppo=PPOConfig(n_steps=4, n_epochs=1, minibatch_size=8),
                                           micro_batch_size=8)),
}  # fmt: skip

_RESUMABLE = ("torch_threads", "label", "seeds", "teachers")


def config_from(preset: str = "cpu", **overrides: Any) -> CurriculumConfig:
    return _config_from(PRESETS, preset, overrides)


# --------------------------------------------------------------------------- the teacher's tasks
def task_axes(config: CurriculumConfig) -> list[tuple[Any, ...]]:
    """The grid values of each factor, in the order of the ALP-GMM Box's axes."""
    return [tuple(config.families), tuple(sorted(config.room_sizes)), tuple(sorted(config.num_dists)),
            tuple(d for d in DOORS if d in config.doors)]


def task_centres(tasks: Sequence[dict[str, Any]], axes: list[tuple[Any, ...]]) -> np.ndarray:
    """Each task's point in [0, 1]^4: factor value l of k at (l + 0.5) / k (module docstring)."""
    return np.array([[(axis.index(t[f]) + 0.5) / len(axis) for f, axis in zip(FACTORS, axes)] for t in tasks])


def make_teacher(config: CurriculumConfig, name: str, seed: int, train: list[dict[str, Any]],
                 lm: Any = None) -> tuple[Curriculum, Callable[[Any], int]]:
    """The teacher ``name`` over the training tasks, and the map from its tasks to task indices."""
    common = {"seed": seed, "success_window": config.success_window}
    if name == "alp_gmm":
        from gymnasium import spaces

        centres = task_centres(train, task_axes(config))
        box = spaces.Box(0.0, 1.0, (len(FACTORS),), np.float64)
        teacher = make_curriculum("alp_gmm", box, **common, **asdict(config.alp_gmm))
        return teacher, lambda point: int(np.argmin(((centres - point) ** 2).sum(1)))
    if name == "lm":
        from llmrl.roles.teacher import LMTeacher, describe_babyai_task

        teacher = LMTeacher([describe_babyai_task(t) for t in train], lm, config.lm_teacher, **common)
        return teacher, int
    settings = {}
    if name == "plr":
        settings = asdict(config.plr)
    return make_curriculum(name, len(train), **common, **settings), int


class TaskEpisodes:
    """Between a teacher and the learner's environments: asks the teacher for each episode's
    task, counts where the budget goes, and hands finished episodes back with their GAE.

    Each environment is wrapped by :meth:`wrap`; the teacher hears of an episode at the end of
    the rollout it finished in (:meth:`settle`), when the learner has computed its advantages,
    as PLR does.
    """

    def __init__(self, teacher: Curriculum, to_index: Callable[[Any], int], tasks: list[dict[str, Any]]) -> None:
        self.teacher, self.to_index, self.tasks = teacher, to_index, tasks
        self.episodes = np.zeros(len(tasks), np.int64)  # finished episodes per training task
        self.successes = np.zeros(len(tasks), np.int64)
        self.steps = np.zeros(len(tasks), np.int64)
        self.owners: list[list[int]] = []  # per environment: the episode of each step of this rollout
        self.open: dict[int, dict[str, Any]] = {}
        self.next_id = 0

    def wrap(self, env: gym.Env) -> gym.Env:
        self.owners.append([])
        return _ChosenTask(env, self, len(self.owners) - 1)

    def start(self) -> tuple[int, dict[str, Any]]:
        task = self.teacher.sample()
        index = self.to_index(task)
        self.next_id += 1
        self.open[self.next_id] = {"task": task, "index": index, "return": 0.0, "advantages": [], "success": None}
        return self.next_id, self.tasks[index]

    def step(self, env: int, episode: int, reward: float, done: bool, success: bool) -> None:
        ep = self.open[episode]
        self.owners[env].append(episode)
        ep["return"] += float(reward)
        self.steps[ep["index"]] += 1
        if done:
            ep["success"] = bool(success)

    def settle(self, advantages: np.ndarray) -> None:
        """Give the steps of the rollout just finished their advantages, shape (steps, envs), and
        report every episode that ended in it to the teacher."""
        for i, owners in enumerate(self.owners):
            if len(owners) != advantages.shape[0]:
                raise RuntimeError(f"env {i} took {len(owners)} steps in a rollout of {advantages.shape[0]}")
            for t, episode in enumerate(owners):
                self.open[episode]["advantages"].append(float(advantages[t, i]))
            owners.clear()
        for episode in [k for k, ep in self.open.items() if ep["success"] is not None]:
            ep = self.open.pop(episode)
            self.episodes[ep["index"]] += 1
            self.successes[ep["index"]] += ep["success"]
            self.teacher.update(ep["task"], ep["return"], success=ep["success"], advantages=np.array(ep["advantages"]))


class _ChosenTask(gym.Wrapper):
    """Plays the teacher's task from every reset on and reports each step (unscaled reward)."""

    def __init__(self, env: gym.Env, episodes: TaskEpisodes, index: int) -> None:
        super().__init__(env)
        self.episodes, self.index, self.episode = episodes, index, 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        self.episode, task = self.episodes.start()
        return self.env.reset(seed=seed, options={**(options or {}), "task": task})

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.episodes.step(self.index, self.episode, float(reward), terminated or truncated,
                           bool(info.get("success", reward > 0)))
        return obs, reward, terminated, truncated, info


class _HeldOutTask(gym.Wrapper):
    """Evaluation: the episode reset with seed ``first + k`` plays ``tasks[k % len(tasks)]``."""

    def __init__(self, env: gym.Env, tasks: list[dict[str, Any]], first: int) -> None:
        super().__init__(env)
        self.tasks, self.first = tasks, first

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        task = self.tasks[(int(seed) - self.first) % len(self.tasks)]
        return self.env.reset(seed=seed, options={**(options or {}), "task": task})


# --------------------------------------------------------------------------- learners
class SymbolicLearner:
    """SB3 PPO on BabyAI's symbolic view, as :mod:`llmrl.recipes.symbolic_ppo` builds it; one
    ``learn`` call per rollout so the teacher hears of each rollout's episodes and GAE."""

    def __init__(self, config: CurriculumConfig, seed: int, episodes: TaskEpisodes) -> None:
        from stable_baselines3.common.vec_env import DummyVecEnv

        from llmrl.recipes.symbolic_ppo import _model, _training_env

        self.config = replace(config.symbolic, seed=seed)
        sym = self.config
        first = episodes.tasks[0]

        def make() -> gym.Env:
            return _training_env(episodes.wrap(make_task_env(first, text=True)), sym.mission_len, sym.reward_scale)

        self.env = DummyVecEnv([make for _ in range(sym.n_envs)])
        self.env.seed(env_seeds(seed, 1, stride=SEED_STRIDE)[0])  # env i: that + i
        self.model = _model(sym, self.env, seed, [])
        self.rollout_steps = sym.n_envs * sym.ppo.n_steps

    def train_rollout(self) -> np.ndarray:
        """One rollout and PPO update; the rollout's advantages, shape (n_steps, n_envs)."""
        grab = _RolloutAdvantages()
        self.model.learn(self.rollout_steps, callback=grab, reset_num_timesteps=False)
        return grab.advantages

    def agent(self, name: str, seed: int) -> Any:
        from llmrl.agents.sb3 import SB3PolicyAgent

        return SB3PolicyAgent(self.model, deterministic=False, name=name, seed=seed)

    @property
    def eval_envs(self) -> int:
        return 32

    def close(self) -> None:
        self.env.close()


def _RolloutAdvantages() -> Any:
    """An SB3 callback that copies the rollout's GAE, shape (n_steps, n_envs), before the update
    flattens the buffer."""
    from stable_baselines3.common.callbacks import BaseCallback

    class RolloutAdvantages(BaseCallback):
        advantages: np.ndarray

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            self.advantages = np.array(self.model.rollout_buffer.advantages, copy=True)

    return RolloutAdvantages()


class GLAMLearner:
    """The GLAM LM policy, trained by :mod:`llmrl.recipes.glam`'s rollout and PPO update."""

    def __init__(self, config: CurriculumConfig, seed: int, episodes: TaskEpisodes) -> None:
        import torch

        from llmrl.recipes import glam

        self.glam = glam
        self.config = replace(config.glam, seed=seed)
        self.policy = glam.build_policy(self.config)
        trainable = [p for p in self.policy.parameters() if p.requires_grad]
        self.optim = torch.optim.Adam(trainable, lr=self.config.ppo.learning_rate, eps=self.config.ppo.adam_eps)
        first = episodes.tasks[0]
        self.rollouts = glam.start_rollouts(self.config, lambda: episodes.wrap(
            make_task_env(first, text=True, articles=self.config.articles)))
        self.rollout_steps = self.config.batch_size

    def train_rollout(self) -> np.ndarray:
        batch = self.glam.collect(self.policy, self.config, self.rollouts)
        self.rollouts.finished.clear()
        self.glam.update(self.policy, self.optim, self.config, batch, self.rollouts.rng)
        return batch["advantages"].reshape(self.config.ppo.n_steps, self.config.n_envs).numpy()

    def agent(self, name: str, seed: int) -> Any:
        return self.glam.policy_agent(self.policy.lm, replace(self.config, label=name), "sampled", seed=seed)

    @property
    def eval_envs(self) -> int:
        return self.config.n_envs

    def close(self) -> None:
        self.rollouts.envs.close()


# --------------------------------------------------------------------------- one (teacher, seed) run
def held_out_success(learner: Any, config: CurriculumConfig, test: list[dict[str, Any]], name: str,
                     seed: int) -> dict[str, Any]:
    """The learner's sampled policy on ``eval_episodes`` episodes of every held-out task."""
    from llmrl.evaluation import evaluate

    n = config.eval_episodes * len(test)
    make = lambda: _HeldOutTask(make_task_env(test[0], text=True), test, config.eval_seed)  # noqa: E731
    result = evaluate(learner.agent(name, seed), make, n, n_envs=min(learner.eval_envs, n), seed=config.eval_seed)
    return {"successes": [int(e.success) for e in result.episodes],
            "returns": [round(float(e.episode_return), 4) for e in result.episodes],
            "lengths": [int(e.length) for e in result.episodes], "eval_seconds": round(result.wall_seconds, 2)}


def run_one(config: CurriculumConfig, teacher_name: str, seed: int, lm: Any, emit: Callable[[dict[str, Any]], None],
            progress: bool) -> None:
    """Train one learner under one teacher, emitting an ``eval`` record every ``eval_every`` steps."""
    import torch

    train, test = config.split()
    torch.manual_seed(seed)
    teacher, to_index = make_teacher(config, teacher_name, seed, train, lm)
    episodes = TaskEpisodes(teacher, to_index, train)
    learner = (GLAMLearner if config.learner == "glam" else SymbolicLearner)(config, seed, episodes)
    name = f"{config.learner}-{teacher_name}-s{seed}"
    steps, t0 = 0, time.perf_counter()
    while True:
        if steps % config.eval_every == 0:
            record = {"kind": "eval", "teacher": teacher_name, "seed": seed, "learner": config.learner,
                      "env_steps": steps, "train_episodes": int(episodes.episodes.sum()),
                      **held_out_success(learner, config, test, name, seed),
                      "task_episodes": episodes.episodes.tolist(), "task_successes": episodes.successes.tolist(),
                      "task_steps": episodes.steps.tolist(), "teacher_stats": _scalars(teacher.stats()),
                      "wall_s": round(time.perf_counter() - t0, 2), "final": steps >= config.total_env_steps}
            emit(record)
        if steps >= config.total_env_steps:
            break
        episodes.settle(learner.train_rollout())
        steps += learner.rollout_steps
    learner.close()


def _scalars(stats: dict[str, Any]) -> dict[str, float]:
    """A teacher's own numbers (``name/...``) that are scalars, plus coverage."""
    out = {k: float(v) for k, v in stats.items() if "/" in k and np.ndim(v) == 0}
    return {"coverage": float(stats["coverage"]), **out}


def _teacher_lm(config: CurriculumConfig) -> Any:
    from llmrl.lm import load_model

    return load_model(config.teacher_model)


# --------------------------------------------------------------------------- the study
def run(config: CurriculumConfig, out: str | os.PathLike[str], *, resume: bool = False, progress: bool = True
        ) -> RunResult:
    import torch

    torch.set_num_threads(config.torch_threads)
    folder = RunFolder(out, RECIPE, config, resume=resume, may_change=_RESUMABLE,
                       identity={"label": config.label, "env_id": "babyai-task-space", "learner": config.learner})
    path = folder.path / "records.jsonl"
    train, test = config.split()
    finished = {(r["teacher"], r["seed"]) for r in read_json_lines(path) if r.get("final")} if folder.resumed else set()
    # A cut run's records are dropped: it starts again from step 0.
    kept = [r for r in read_json_lines(path) if r["kind"] == "split" or (r["teacher"], r["seed"]) in finished] \
        if folder.resumed else []  # fmt: skip
    if not kept:
        kept = [{"kind": "split", "train": [task_name(t) for t in train], "test": [task_name(t) for t in test],
                 "train_tasks": train, "test_tasks": test}]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    log = JsonLines(path, "env_steps", resume_at=math.inf)
    records = list(kept)

    def emit(record: dict[str, Any]) -> None:
        log.write(record)
        log.flush()
        records.append(record)
        if progress:
            print(f"[{config.label}] {record['teacher']} seed {record['seed']} step {record['env_steps']}: held-out "
                  f"success {np.mean(record['successes']):.3f} ({record['wall_s']:.0f} s)", flush=True)

    lm = _teacher_lm(config) if "lm" in config.teachers and any(
        ("lm", s) not in finished for s in config.seeds) else None  # fmt: skip
    for seed in config.seeds:
        for teacher in config.teachers:
            if (teacher, seed) not in finished:
                run_one(config, teacher, seed, lm, emit, progress)
    log.close()
    summary = summarise(records)
    atomic_write_json(folder.path / "summary.json", summary)
    metrics = {f"{t}/final_success": s["final"]["mean"] for t, s in summary["teachers"].items()}
    metrics.update({f"{t}/auc": s["auc"]["mean"] for t, s in summary["teachers"].items()})
    folder.finish(metrics)
    return RunResult(RECIPE, folder.path, metrics, {"records": path, "summary": folder.path / "summary.json"},
                     report=curve_table(summary))


# --------------------------------------------------------------------------- the numbers
def curves(records: list[dict[str, Any]]) -> dict[str, dict[int, dict[int, float]]]:
    """teacher -> seed -> {env_steps: held-out success (mean over the evaluation's episodes)}."""
    out: dict[str, dict[int, dict[int, float]]] = {}
    for r in records:
        if r.get("kind") == "eval":
            out.setdefault(r["teacher"], {}).setdefault(int(r["seed"]), {})[int(r["env_steps"])] = \
                float(np.mean(r["successes"]))  # fmt: skip
    return out


def auc(curve: dict[int, float]) -> float:
    """Mean held-out success over training: the trapezoid area under success vs env steps,
    divided by the steps spanned (1.0 = always solved)."""
    steps = sorted(curve)
    if len(steps) < 2:
        return curve[steps[0]]
    y = [curve[s] for s in steps]
    area = sum((b - a) * (ya + yb) / 2 for a, b, ya, yb in zip(steps, steps[1:], y, y[1:]))
    return area / (steps[-1] - steps[0])


def _interval(values: list[float]) -> dict[str, Any]:
    mean, lo, hi = t_interval(values)
    return {"mean": mean, "low": lo, "high": hi, "seeds": len(values)}


def budget(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """teacher -> factor -> value -> share of training episodes (mean over seeds), from each
    run's last evaluation record (its cumulative per-task counts)."""
    split = next(r for r in records if r.get("kind") == "split")
    tasks = split["train_tasks"]
    last: dict[tuple[str, int], dict[str, Any]] = {}
    for r in records:
        if r.get("kind") == "eval" and r["env_steps"] >= last.get((r["teacher"], r["seed"]), {"env_steps": -1})["env_steps"]:
            last[(r["teacher"], r["seed"])] = r
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    for (teacher, _), r in sorted(last.items()):
        counts = np.asarray(r["task_episodes"], dtype=np.float64)
        total = max(counts.sum(), 1.0)
        for factor in FACTORS:
            for value in dict.fromkeys(t[factor] for t in tasks):
                share = sum(c for c, t in zip(counts, tasks) if t[factor] == value) / total
                out.setdefault(teacher, {}).setdefault(factor, {}).setdefault(str(value), []).append(share)
    return {t: {f: {v: float(np.mean(s)) for v, s in vals.items()} for f, vals in fs.items()} for t, fs in out.items()}


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per teacher: held-out success at every evaluation step and at the last, and the AUC, each
    with a 95% t-interval over seeds; and where each teacher spent its episodes."""
    teachers: dict[str, Any] = {}
    for teacher, by_seed in curves(records).items():
        steps = sorted(set.intersection(*(set(c) for c in by_seed.values())))
        teachers[teacher] = {
            "curve": {str(s): _interval([c[s] for c in by_seed.values()]) for s in steps},
            "final": _interval([c[max(c)] for c in by_seed.values()]),
            "auc": _interval([auc(c) for c in by_seed.values()]),
        }
    return {"teachers": teachers, "budget": budget(records)}


def curve_table(summary: dict[str, Any], steps: Sequence[int] | None = None) -> str:
    """Held-out success at env-step checkpoints per teacher, mean [95% t-interval] over seeds."""
    teachers = summary["teachers"]
    all_steps = sorted({int(s) for t in teachers.values() for s in t["curve"]})
    steps = list(steps) if steps else all_steps
    lines = ["| teacher | " + " | ".join(f"{s:,} steps" for s in steps) + " | AUC |",
             "|---" * (len(steps) + 2) + "|"]
    for name, t in teachers.items():
        cells = [_cell(t["curve"].get(str(s))) for s in steps]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_cell(t['auc'])} |")
    return "\n".join(lines)


def _cell(s: dict[str, Any] | None) -> str:
    if s is None:
        return ""
    if s["seeds"] < 2:
        return f"{s['mean']:.3f}"
    return f"{s['mean']:.3f} [{s['low']:.3f}, {s['high']:.3f}]"


def budget_table(summary: dict[str, Any]) -> str:
    """Share of training episodes per factor value, per teacher (mean over seeds)."""
    b = summary["budget"]
    if not b:
        return ""
    columns = [(f, v) for f in FACTORS for v in next(iter(b.values()))[f]]
    lines = ["| teacher | " + " | ".join(f"{f}={v}" for f, v in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for teacher, fs in b.items():
        lines.append(f"| {teacher} | " + " | ".join(f"{fs[f].get(v, 0.0):.2f}" for f, v in columns) + " |")
    return "\n".join(lines)
