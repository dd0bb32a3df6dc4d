"""Automatic curriculum learning: teachers that pick the student's next task from its results.

A recipe holds one :class:`Curriculum` and, around every episode, calls::

    task = curriculum.sample()                    # a point of a Box, or an index into a task list
    ...                                           # run one episode on that task
    curriculum.update(task, episode_return, success=..., advantages=..., values=...)
    writer.add_scalars(curriculum.stats())        # where the teacher spends its budget

``state_dict()`` / ``load_state_dict()`` hold everything, the random generator included, so a
resumed run draws the same tasks as one never stopped. Teachers (``make_curriculum(name, ...)``):

* ``uniform`` — domain randomisation: every task equally likely; the baseline of all the others.
* ``alp_gmm`` — ALP-GMM (Portelas et al. 2019, "Teacher algorithms for curriculum learning of
  Deep RL in continuously parameterized environments", CoRL), for a ``Box`` task space. Each
  episode's absolute learning progress is |r − r'|, r' the return of the nearest earlier task
  (0 while at most 5 are known). After ``n_bootstrap`` random episodes, and then every
  ``fit_rate``, Gaussian mixtures with k = 2..10 components are fitted (scikit-learn, full
  covariance) on the last ``fit_rate`` (task, ALP) points and the lowest-AIC one is kept. A task
  is then drawn from a Gaussian picked in proportion to its mean ALP, or uniformly with
  probability ``random_task_ratio``. Defaults are teachDeepRL's ``alp_gmm.py`` (MIT): fit every
  250, bootstrap = 250, 20% random, k in 2..10, AIC, one EM init, sklearn seeded with the
  teacher's seed. One deliberate change: tasks are rescaled to the unit cube before the
  nearest-neighbour search and the fit, so the ALP axis and the task axes share a scale whatever
  the Box's bounds (identical to teachDeepRL on the unit square of its ToyEnv). As teachDeepRL
  maps BipedalWalker returns from (−150, 350) to [0, 1], ``return_range`` rescales returns.
* ``plr`` — Prioritized Level Replay (Jiang, Grefenstette, Rocktäschel 2021, ICML), for a
  discrete set of levels. Each seen level keeps a score S_i; the replay distribution is
  P_replay = (1 − ρ)·P_S + ρ·P_C with P_S ∝ h(S_i)^(1/β), h = 1/rank (rank 1 = highest score
  among seen levels), and P_C ∝ c − C_i, the episodes since level i was last drawn (staleness).
  Each draw first decides replay vs a new (unseen, uniform) level: with probability
  |seen| / |levels| (the paper's "proportionate" schedule, the default) or a fixed
  ``replay_prob``. Scores are per-episode means over its steps, of |GAE| (``value_l1``, the
  paper's default), of max(GAE, 0) (``positive_value_loss``) or of R_max − V(s_t) with R_max the
  best return seen on the level (``max_mc``); the last two come from Jiang et al. 2021b
  ("Replay-Guided Adversarial Environment Design", NeurIPS). Defaults as in level-replay's
  README command: rank transform, β = 0.1, ρ = 0.1, score smoothing α = 1 (newest score wins).
  level-replay's own CLI also waits until every level is seen before any replay
  (``--level_replay_rho 1.0``); ``min_seen_fraction`` is that knob, 0 by default as in the paper.
  Formulas and defaults were read in facebookresearch/level-replay (CC-BY-NC: facts only, no code).
* ``learning_progress`` — the learning-progress teacher of Kanitscheider et al. 2021 ("Multi-task
  curriculum learning in a complex, visual, hard-exploration domain: Minecraft"), as Syllabus
  writes it (OMNI builds on it): per task, a fast EMA of success p_f ← α·s + (1−α)·p_f and a
  slow one p_s ← α·p_f + (1−α)·p_s (α = 0.1); LP = |g(p_f) − g(p_s)| with the reweighting
  g(p) = p(1−θ) / (p + θ(1−2p)), θ = 0.1; tasks with LP > 0 or success > 0 are drawn with
  probability ∝ sigmoid(z-score of LP). Syllabus refreshes every task's success by periodic
  evaluation; here each episode updates its own task, every task is tried once first, and
  ``random_task_ratio`` (20%) of draws are uniform so stale estimates are refreshed.

Why not Syllabus (syllabus-rl 0.7, MIT): it has no ALP-GMM; it installs ``ray`` and
``pettingzoo`` unconditionally (ray is an optional extra of llmrl) and its curriculum base
imports matplotlib and wandb hooks; its curricula are written around its own task-space and
multiprocess-synchronisation classes, and its learning-progress teacher needs an evaluator that
runs the agent on every task. The three teachers here are ~100 lines each, depend on numpy
(scikit-learn for ALP-GMM, already installed with sentence-transformers) and resume exactly.
A recipe that wants Syllabus's multiprocess sync can still wrap these teachers.

``run_toy_env(curriculum, n_episodes)`` runs a teacher on teachDeepRL's ToyEnv
(:mod:`llmrl.envs.toy_env`) and returns the % of cells mastered along the way.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from llmrl.config import require_choice, require_positive
from llmrl.envs.toy_env import ToyEnv

__all__ = [
    "ALPGMM",
    "CURRICULA",
    "PLR",
    "SCORE_FUNCTIONS",
    "ALPGMMConfig",
    "Curriculum",
    "LearningProgress",
    "LearningProgressConfig",
    "PLRConfig",
    "Task",
    "TaskStats",
    "Uniform",
    "make_curriculum",
    "max_mc",
    "positive_value_loss",
    "run_toy_env",
    "value_l1",
]

Task = int | np.ndarray
"""An index into a discrete set of tasks (``Discrete`` space) or a point of a ``Box``."""
TaskSpace = spaces.Box | spaces.Discrete | int
"""A ``Box`` with finite bounds, a ``Discrete`` space, or the number of discrete tasks."""


# --------------------------------------------------------------------------- per-task statistics
class TaskStats:
    """Where a teacher spends its budget: episode counts, mean return and the success rate of the
    last ``window`` episodes, per task (discrete) or per cell of a ``bins``-per-axis grid (Box)."""

    def __init__(self, space: spaces.Box | spaces.Discrete, bins: int = 10, window: int = 20) -> None:
        if bins < 1 or window < 1:
            raise ValueError(f"stats bins and window must be >= 1, got {bins}, {window}")
        self.space = space
        discrete = isinstance(space, spaces.Discrete)
        self.shape: tuple[int, ...] = (int(space.n),) if discrete else (bins,) * space.shape[0]
        n_cells = math.prod(self.shape)
        if not discrete and n_cells > 100_000:
            raise ValueError(f"{bins}^{len(self.shape)} = {n_cells} stats cells is too many: lower stats_bins")
        self.bins = bins
        self.window = window
        self.counts = np.zeros(n_cells, dtype=np.int64)
        self.return_sum = np.zeros(n_cells)
        self.recent_success = np.full((n_cells, window), np.nan)  # ring buffer per cell

    def cell(self, task: Task) -> int:
        if isinstance(self.space, spaces.Discrete):
            return int(task) - int(self.space.start)
        low, high = self.space.low.astype(np.float64), self.space.high.astype(np.float64)
        u = (np.asarray(task, dtype=np.float64) - low) / np.where(high > low, high - low, 1.0)
        idx = np.clip((u * self.bins).astype(np.int64), 0, self.bins - 1)
        return int(np.ravel_multi_index(tuple(idx), self.shape))

    def record(self, task: Task, episode_return: float, success: bool) -> None:
        i = self.cell(task)
        self.recent_success[i, self.counts[i] % self.window] = float(success)
        self.counts[i] += 1
        self.return_sum[i] += episode_return

    def summary(self) -> dict[str, Any]:
        """``counts``, ``mean_return`` and ``success_rate`` (NaN where never tried), shaped as
        the tasks (discrete) or the grid; ``episodes`` and ``coverage`` (share of cells tried)."""
        tried = self.counts > 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # mean of an empty slice: NaN is meant
            success = np.nanmean(self.recent_success, axis=1)
        return {
            "episodes": int(self.counts.sum()),
            "coverage": float(tried.mean()),
            "counts": self.counts.reshape(self.shape).copy(),
            "mean_return": np.where(tried, self.return_sum / np.maximum(self.counts, 1), np.nan).reshape(self.shape),
            "success_rate": success.reshape(self.shape),
        }

    def state_dict(self) -> dict[str, Any]:
        return {"counts": self.counts.copy(), "return_sum": self.return_sum.copy(),
                "recent_success": self.recent_success.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("counts", "return_sum", "recent_success"):
            if np.shape(state[name]) != getattr(self, name).shape:
                raise ValueError(f"stats {name} has shape {np.shape(state[name])}, this curriculum "
                                 f"{getattr(self, name).shape}: same task space and stats settings?")
            setattr(self, name, np.array(state[name], copy=True))


# --------------------------------------------------------------------------- the interface
class Curriculum(ABC):
    """A teacher over a task space: ``sample()`` the next task, ``update()`` after its episode.

    Args:
        space: a ``Box`` with finite bounds (tasks are float arrays) or a ``Discrete`` space /
            an int n (tasks are indices 0..n-1 into the recipe's task list).
        seed: seeds the teacher's own generator; the same seed and results give the same tasks.
        stats_bins: per-axis grid cells for a Box's statistics.
        success_window: episodes per task behind ``stats()["success_rate"]``.
    """

    name = "curriculum"

    def __init__(self, space: TaskSpace, seed: int = 0, stats_bins: int = 10, success_window: int = 20) -> None:
        self.space = _check_space(space)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.task_stats = TaskStats(self.space, stats_bins, success_window)

    @abstractmethod
    def sample(self) -> Task:
        """The next task to train on."""

    def update(self, task: Task, episode_return: float, *, success: bool | None = None, **extra: Any) -> None:
        """Record one finished episode on ``task``.

        ``success`` defaults to ``episode_return > 0`` (MiniGrid/BabyAI pay only on success).
        ``extra`` carries what a teacher scores with (PLR: ``score``, ``advantages``, ``values``);
        teachers ignore what they do not use.
        """
        self._check_task(task)
        ret = float(episode_return)
        self.task_stats.record(task, ret, ret > 0 if success is None else bool(success))
        self._update(task, ret, success, **extra)

    def _update(self, task: Task, episode_return: float, success: bool | None, **extra: Any) -> None:
        """The teacher's own bookkeeping (none for a uniform teacher)."""

    def stats(self) -> dict[str, Any]:
        """Per-task (or per-cell) counts, mean return and recent success, plus the teacher's own
        numbers under ``"<name>/..."`` keys."""
        return self.task_stats.summary()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: plain numpy arrays, numbers and dicts."""
        return {"name": self.name, "seed": self.seed, "rng": copy.deepcopy(self.rng.bit_generator.state),
                "task_stats": self.task_stats.state_dict(), **self._state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"state_dict is from a {state.get('name')!r} curriculum, this is {self.name!r}")
        self.seed = int(state["seed"])  # ALP-GMM's fits are seeded with it
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
        self.task_stats.load_state_dict(state["task_stats"])
        self._load(state)

    def _state(self) -> dict[str, Any]:
        return {}

    def _load(self, state: dict[str, Any]) -> None:
        pass

    # -- helpers ---------------------------------------------------------------------------
    def _uniform_task(self) -> Task:
        if isinstance(self.space, spaces.Discrete):
            return int(self.space.start + self.rng.integers(self.space.n))
        return self.space.low + self.rng.random(self.space.shape) * (self.space.high - self.space.low)

    def _check_task(self, task: Task) -> None:
        if isinstance(self.space, spaces.Discrete):
            start, stop = int(self.space.start), int(self.space.start + self.space.n)
            if not isinstance(task, (int, np.integer)) or not start <= task < stop:
                raise ValueError(f"task must be an int in [{start}, {stop}), got {task!r}")
        elif np.shape(task) != self.space.shape:
            raise ValueError(f"task must be an array of shape {self.space.shape}, got {task!r}")


def _check_space(space: TaskSpace) -> spaces.Box | spaces.Discrete:
    if isinstance(space, (int, np.integer)) and not isinstance(space, bool):
        space = spaces.Discrete(int(space)) if space > 0 else space
    if isinstance(space, spaces.Discrete):
        return space
    if isinstance(space, spaces.Box):
        if len(space.shape) != 1 or not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ValueError(f"a Box task space must be 1-d with finite bounds, got {space}")
        return space
    raise ValueError(f"space must be a gymnasium Box, a Discrete space or a positive int, got {space!r}")


# --------------------------------------------------------------------------- uniform
class Uniform(Curriculum):
    """Domain randomisation: every task equally likely, whatever the results."""

    name = "uniform"

    def sample(self) -> Task:
        return self._uniform_task()


# --------------------------------------------------------------------------- ALP-GMM
@dataclass
class ALPGMMConfig:
    """ALP-GMM's settings; defaults from teachDeepRL's ``alp_gmm.py`` (Portelas et al. 2019)."""

    fit_rate: int = 250
    """Episodes between two GMM fits; each fit uses the last ``fit_rate`` (task, ALP) points."""
    n_bootstrap: int | None = None
    """Random episodes before the first fit (None: ``fit_rate``, teachDeepRL's choice)."""
    random_task_ratio: float = 0.2
    """Share of tasks drawn uniformly after the bootstrap, so new progress can still be found."""
    potential_ks: tuple[int, ...] = tuple(range(2, 11))
    """Numbers of Gaussians tried at each fit."""
    criterion: str = "aic"
    """How the number of Gaussians is chosen: "aic" or "bic" (lowest wins)."""
    n_em_init: int = 1
    """EM restarts per fit (sklearn's ``n_init``)."""
    alp_max_size: int | None = None
    """The nearest earlier task is looked for among the last this many (None: all of them)."""
    return_range: tuple[float, float] | None = None
    """Returns are mapped linearly from this range onto [0, 1] (clipped); None keeps them."""

    def __post_init__(self) -> None:
        self.potential_ks = tuple(int(k) for k in self.potential_ks)
        require_positive(self, "fit_rate", "n_em_init")
        require_choice(self, "criterion", ("aic", "bic"))
        if not self.potential_ks or min(self.potential_ks) < 1:
            raise ValueError(f"potential_ks must be positive numbers of Gaussians, got {self.potential_ks}")
        if max(self.potential_ks) >= self.fit_rate:
            raise ValueError(f"fit_rate ({self.fit_rate}) must exceed the largest k ({max(self.potential_ks)}): "
                             "each fit sees fit_rate points")
        if self.n_bootstrap is not None and self.n_bootstrap < self.fit_rate:
            raise ValueError(f"n_bootstrap must be >= fit_rate ({self.fit_rate}), got {self.n_bootstrap}")
        if not 0.0 <= self.random_task_ratio <= 1.0:
            raise ValueError(f"random_task_ratio must lie in [0, 1], got {self.random_task_ratio}")
        if self.alp_max_size is not None and self.alp_max_size < 1:
            raise ValueError(f"alp_max_size must be >= 1 or None, got {self.alp_max_size}")
        if self.return_range is not None:
            lo, hi = self.return_range
            if not hi > lo:
                raise ValueError(f"return_range must be (low, high) with high > low, got {self.return_range}")
            self.return_range = (float(lo), float(hi))


_TREE_EVERY = 500  # teachDeepRL's alp_buffer_size


class ALPGMM(Curriculum):
    """ALP-GMM over a ``Box`` task space (see the module docstring)."""

    name = "alp_gmm"

    def __init__(self, space: TaskSpace, config: ALPGMMConfig | None = None, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(space, seed, **kwargs)
        if not isinstance(self.space, spaces.Box):
            raise ValueError("ALP-GMM needs a continuous Box task space; for discrete tasks use PLR or "
                             "learning_progress")
        self.config = config or ALPGMMConfig()
        self.n_bootstrap = self.config.n_bootstrap or self.config.fit_rate
        dim = self.space.shape[0]
        self._low = self.space.low.astype(np.float64)
        self._span = np.where(self.space.high > self.space.low, self.space.high - self._low, 1.0)
        # Every episode's task (in unit-cube coordinates), return and ALP, grown by doubling.
        self._tasks = np.zeros((1024, dim))
        self._returns = np.zeros(1024)
        self._alps = np.zeros(1024)
        self.n_episodes = 0
        # The current mixture over (task, ALP): none until the first fit.
        self.means: np.ndarray | None = None
        self.covariances: np.ndarray | None = None
        self.weights: np.ndarray | None = None
        self._chol: np.ndarray | None = None
        self._tree: Any = None  # scipy cKDTree over the first _tree_n tasks
        self._tree_n = 0
        self.n_fits = 0
        self.fit_seconds = 0.0

    def sample(self) -> Task:
        bootstrapping = self.n_episodes < self.n_bootstrap or self.means is None
        if bootstrapping or self.rng.random() < self.config.random_task_ratio:
            return self._uniform_task()
        assert self._chol is not None
        # A Gaussian in proportion to its mean ALP (uniform if none shows progress), then a task in it.
        alp_means = np.maximum(self.means[:, -1], 0.0)
        total = alp_means.sum()
        if total <= 0:
            k = int(self.rng.integers(len(alp_means)))
        else:
            k = int(np.searchsorted(np.cumsum(alp_means / total), self.rng.random(), side="right"))
            k = min(k, len(alp_means) - 1)  # guards a cumulative sum that rounds below 1
        x = self.means[k] + self._chol[k] @ self.rng.standard_normal(len(self.means[k]))
        return self._low + np.clip(x[:-1], 0.0, 1.0) * self._span

    def _update(self, task: Task, episode_return: float, success: bool | None, **extra: Any) -> None:
        x = (np.asarray(task, dtype=np.float64) - self._low) / self._span
        r = episode_return
        if self.config.return_range is not None:
            r = float(np.interp(r, self.config.return_range, (0.0, 1.0)))
        n = self.n_episodes
        alp = 0.0
        if n > 5:  # teachDeepRL waits for more than 5 earlier tasks
            alp = abs(r - self._returns[self._nearest(x, n)])
        if n == len(self._returns):
            self._tasks = np.concatenate([self._tasks, np.zeros_like(self._tasks)])
            self._returns = np.concatenate([self._returns, np.zeros_like(self._returns)])
            self._alps = np.concatenate([self._alps, np.zeros_like(self._alps)])
        self._tasks[n], self._returns[n], self._alps[n] = x, r, alp
        self.n_episodes = n + 1
        if self.n_episodes >= self.n_bootstrap and self.n_episodes % self.config.fit_rate == 0:
            self.fit()

    def _nearest(self, x: np.ndarray, n: int) -> int:
        """Index of the earlier task nearest to ``x``: as teachDeepRL's buffered dataset, a
        kd-tree over the older tasks, rebuilt every ``_TREE_EVERY`` episodes, plus a linear
        scan of the newer ones; a linear scan of the window when ``alp_max_size`` is set."""
        if self.config.alp_max_size is not None:
            start = max(0, n - self.config.alp_max_size)
            return start + int(np.argmin(((self._tasks[start:n] - x) ** 2).sum(axis=1)))
        if n - self._tree_n >= _TREE_EVERY:
            from scipy.spatial import cKDTree

            self._tree, self._tree_n = cKDTree(self._tasks[:n]), n
        best, best_d2 = -1, np.inf
        if self._tree is not None:
            dist, best = self._tree.query(x)
            best_d2 = dist**2
        if self._tree_n < n:
            d2 = ((self._tasks[self._tree_n:n] - x) ** 2).sum(axis=1)
            j = int(np.argmin(d2))
            if d2[j] < best_d2:
                best = self._tree_n + j
        return int(best)

    def fit(self) -> None:
        """Fit GMMs with each k on the last ``fit_rate`` (task, ALP) points; keep the best by AIC/BIC."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        start = time.perf_counter()
        n, m = self.n_episodes, min(self.config.fit_rate, self.n_episodes)
        data = np.concatenate([self._tasks[n - m:n], self._alps[n - m:n, None]], axis=1)
        best, best_score = None, np.inf
        for k in self.config.potential_ks:
            gmm = GaussianMixture(k, covariance_type="full", n_init=self.config.n_em_init, random_state=self.seed)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    gmm.fit(data)
            except ValueError:  # ill-defined covariance (e.g. fewer distinct points than k): skip this k
                continue
            score = gmm.aic(data) if self.config.criterion == "aic" else gmm.bic(data)
            if score < best_score:
                best, best_score = gmm, score
        if best is not None:
            self._set_mixture(best.means_, best.covariances_, best.weights_)
        self.n_fits += 1
        self.fit_seconds += time.perf_counter() - start

    def _set_mixture(self, means: np.ndarray | None, covariances: np.ndarray | None,
                     weights: np.ndarray | None) -> None:
        self.means, self.covariances, self.weights = _copy(means), _copy(covariances), _copy(weights)
        # Cholesky factors drawn once per fit: a sample is then mean + L·z (sklearn's covariances
        # carry reg_covar on the diagonal, so they are positive definite).
        self._chol = None if self.covariances is None else np.linalg.cholesky(self.covariances)

    @property
    def alps(self) -> np.ndarray:
        """The ALP of every episode so far."""
        return self._alps[: self.n_episodes].copy()

    def stats(self) -> dict[str, Any]:
        recent = self._alps[max(0, self.n_episodes - self.config.fit_rate):self.n_episodes]
        return {
            **super().stats(),
            "alp_gmm/n_fits": self.n_fits,
            "alp_gmm/n_components": 0 if self.means is None else len(self.means),
            "alp_gmm/mean_alp": float(recent.mean()) if len(recent) else 0.0,
            "alp_gmm/fit_seconds": self.fit_seconds,
        }

    def _state(self) -> dict[str, Any]:
        n = self.n_episodes
        return {"tasks": self._tasks[:n].copy(), "returns": self._returns[:n].copy(), "alps": self._alps[:n].copy(),
                "means": _copy(self.means), "covariances": _copy(self.covariances), "weights": _copy(self.weights),
                "n_fits": self.n_fits, "fit_seconds": self.fit_seconds, "config": asdict(self.config)}

    def _load(self, state: dict[str, Any]) -> None:
        tasks = np.asarray(state["tasks"], dtype=np.float64)
        if tasks.ndim != 2 or tasks.shape[1] != self.space.shape[0]:
            raise ValueError(f"state_dict tasks have shape {tasks.shape}, this task space is {self.space.shape}")
        n = len(tasks)
        capacity = max(1024, 1 << max(n, 1).bit_length())
        self._tasks = np.zeros((capacity, tasks.shape[1]))
        self._returns, self._alps = np.zeros(capacity), np.zeros(capacity)
        self._tasks[:n], self._returns[:n], self._alps[:n] = tasks, state["returns"], state["alps"]
        self.n_episodes = n
        self._tree, self._tree_n = None, 0
        self._set_mixture(state["means"], state["covariances"], state["weights"])
        self.n_fits, self.fit_seconds = int(state["n_fits"]), float(state["fit_seconds"])


def _copy(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else np.array(a, dtype=np.float64, copy=True)


# --------------------------------------------------------------------------- PLR
SCORE_FUNCTIONS = ("value_l1", "positive_value_loss", "max_mc")


def value_l1(advantages: np.ndarray) -> float:
    """PLR's default score: the mean |GAE| over the episode's steps (Jiang et al. 2021, §4)."""
    return float(np.mean(np.abs(np.asarray(advantages, dtype=np.float64))))


def positive_value_loss(advantages: np.ndarray) -> float:
    """Mean of max(GAE, 0): only where the agent did better than it expected (Jiang et al. 2021b)."""
    return float(np.mean(np.maximum(np.asarray(advantages, dtype=np.float64), 0.0)))


def max_mc(values: np.ndarray, max_return: float) -> float:
    """Mean of R_max − V(s_t), R_max the best return ever reached on the level (Jiang et al. 2021b)."""
    return float(np.mean(max_return - np.asarray(values, dtype=np.float64)))


@dataclass
class PLRConfig:
    """Prioritized Level Replay's settings; defaults from level-replay's README command."""

    score_function: str = "value_l1"
    """How an episode scores its level: "value_l1", "positive_value_loss" or "max_mc"."""
    temperature: float = 0.1
    """β: rank weights are (1/rank)^(1/β); small β concentrates on the top-scored levels."""
    staleness_coef: float = 0.1
    """ρ: weight of the staleness distribution in P_replay."""
    replay_prob: float | None = None
    """Probability of replaying a seen level rather than trying a new one; None: the share of
    levels seen so far (the paper's proportionate schedule)."""
    min_seen_fraction: float = 0.0
    """No replay until this share of levels has been seen (level-replay's CLI uses 1.0)."""
    score_alpha: float = 1.0
    """A replayed level's score becomes (1−α)·old + α·new; 1 keeps the newest."""

    def __post_init__(self) -> None:
        require_choice(self, "score_function", SCORE_FUNCTIONS)
        require_positive(self, "temperature")
        for name in ("staleness_coef", "min_seen_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if not 0.0 < self.score_alpha <= 1.0:
            raise ValueError(f"score_alpha must lie in (0, 1], got {self.score_alpha}")
        if self.replay_prob is not None and not 0.0 <= self.replay_prob <= 1.0:
            raise ValueError(f"replay_prob must lie in [0, 1] or be None, got {self.replay_prob}")


class PLR(Curriculum):
    """Prioritized Level Replay over a discrete set of levels (see the module docstring)."""

    name = "plr"

    def __init__(self, space: TaskSpace, config: PLRConfig | None = None, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(space, seed, **kwargs)
        if not isinstance(self.space, spaces.Discrete):
            raise ValueError("PLR needs a discrete set of levels (a Discrete space or an int); use ALP-GMM for a Box")
        self.config = config or PLRConfig()
        n = int(self.space.n)
        self.scores = np.zeros(n)
        self.seen = np.zeros(n, dtype=bool)
        self.staleness = np.zeros(n)  # episodes since each level was last drawn (c − C_i)
        self.max_returns = np.full(n, -np.inf)
        self.n_replays = 0
        self.n_samples = 0

    def replay_probs(self) -> np.ndarray:
        """P_replay over all levels (0 for unseen): (1 − ρ)·P_S + ρ·P_C."""
        seen = np.flatnonzero(self.seen)
        probs = np.zeros(len(self.scores))
        if len(seen) == 0:
            return probs
        # Rank 1 = highest score; ties ranked by level index (a stable sort).
        order = np.argsort(-self.scores[seen], kind="stable")
        ranks = np.empty(len(seen))
        ranks[order] = np.arange(1, len(seen) + 1)
        p_score = (1.0 / ranks) ** (1.0 / self.config.temperature)
        p_score /= p_score.sum()
        stale = self.staleness[seen]
        p_stale = stale / stale.sum() if stale.sum() > 0 else np.zeros(len(seen))
        rho = self.config.staleness_coef
        mix = (1.0 - rho) * p_score + rho * p_stale
        probs[seen] = mix / mix.sum()  # renormalised when no level is stale yet
        return probs

    def replay_decision_prob(self) -> float:
        """Probability that the next draw replays a seen level instead of trying a new one."""
        n_seen, n = int(self.seen.sum()), len(self.seen)
        if n_seen == 0 or n_seen / n < self.config.min_seen_fraction:
            return 0.0
        if n_seen == n:
            return 1.0
        return n_seen / n if self.config.replay_prob is None else self.config.replay_prob

    def sample(self) -> Task:
        self.n_samples += 1
        if self.rng.random() < self.replay_decision_prob():
            level = int(self.rng.choice(len(self.scores), p=self.replay_probs()))
            self.n_replays += 1
        else:
            unseen = np.flatnonzero(~self.seen)
            level = int(unseen[self.rng.integers(len(unseen))])
        self.staleness += 1
        self.staleness[level] = 0
        return int(self.space.start) + level

    def _update(self, task: Task, episode_return: float, success: bool | None, *, score: float | None = None,
                advantages: np.ndarray | None = None, values: np.ndarray | None = None, **extra: Any) -> None:
        i = int(task) - int(self.space.start)
        self.max_returns[i] = max(self.max_returns[i], episode_return)
        if score is None:
            score = self._score(advantages, values, self.max_returns[i])
        alpha = self.config.score_alpha if self.seen[i] else 1.0
        self.scores[i] = (1.0 - alpha) * self.scores[i] + alpha * float(score)
        self.seen[i] = True

    def _score(self, advantages: np.ndarray | None, values: np.ndarray | None, max_return: float) -> float:
        fn = self.config.score_function
        if fn == "max_mc":
            if values is None:
                raise ValueError("PLR with score_function='max_mc' needs update(..., values=<V(s_t) per step>) "
                                 "or score=")
            return max_mc(values, max_return)
        if advantages is None:
            raise ValueError(f"PLR with score_function={fn!r} needs update(..., advantages=<GAE per step>) or score=")
        return value_l1(advantages) if fn == "value_l1" else positive_value_loss(advantages)

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "plr/seen_fraction": float(self.seen.mean()),
            "plr/replay_fraction": self.n_replays / max(self.n_samples, 1),
            "plr/mean_score": float(self.scores[self.seen].mean()) if self.seen.any() else 0.0,
            "plr/scores": np.where(self.seen, self.scores, np.nan),
        }

    def _state(self) -> dict[str, Any]:
        return {"scores": self.scores.copy(), "seen": self.seen.copy(), "staleness": self.staleness.copy(),
                "max_returns": self.max_returns.copy(), "n_replays": self.n_replays, "n_samples": self.n_samples,
                "config": asdict(self.config)}

    def _load(self, state: dict[str, Any]) -> None:
        if np.shape(state["scores"]) != self.scores.shape:
            raise ValueError(f"state_dict holds {np.shape(state['scores'])[0]} levels, this PLR {len(self.scores)}")
        self.scores = np.array(state["scores"], dtype=np.float64)
        self.staleness = np.array(state["staleness"], dtype=np.float64)
        self.seen = np.array(state["seen"], dtype=bool)
        self.max_returns = np.array(state["max_returns"], dtype=np.float64)
        self.n_replays, self.n_samples = int(state["n_replays"]), int(state["n_samples"])


# --------------------------------------------------------------------------- learning progress
@dataclass
class LearningProgressConfig:
    """The learning-progress teacher's settings; defaults from Syllabus's ``LearningProgress``."""

    ema_alpha: float = 0.1
    """Step size of the fast success EMA and of the slow EMA that follows it."""
    p_theta: float = 0.1
    """θ of the reweighting g(p) = p(1−θ) / (p + θ(1−2p)), which favours rare successes."""
    random_task_ratio: float = 0.2
    """Share of uniform draws (ours: Syllabus re-evaluates every task instead)."""

    def __post_init__(self) -> None:
        for name in ("ema_alpha", "p_theta"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must lie in (0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.random_task_ratio <= 1.0:
            raise ValueError(f"random_task_ratio must lie in [0, 1], got {self.random_task_ratio}")


class LearningProgress(Curriculum):
    """Learning-progress teacher over discrete tasks (Kanitscheider et al. 2021; module docstring)."""

    name = "learning_progress"

    def __init__(self, space: TaskSpace, config: LearningProgressConfig | None = None, seed: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(space, seed, **kwargs)
        if not isinstance(self.space, spaces.Discrete):
            raise ValueError("LearningProgress needs discrete tasks (a Discrete space or an int)")
        self.config = config or LearningProgressConfig()
        n = int(self.space.n)
        self.p_fast = np.zeros(n)
        self.p_slow = np.zeros(n)
        self.tried = np.zeros(n, dtype=bool)

    def learning_progress(self) -> np.ndarray:
        theta = self.config.p_theta

        def g(p: np.ndarray) -> np.ndarray:
            return p * (1.0 - theta) / (p + theta * (1.0 - 2.0 * p))

        return np.abs(g(self.p_fast) - g(self.p_slow))

    def task_probs(self) -> np.ndarray:
        """The distribution of the non-uniform draws: sigmoid of z-scored LP over promising tasks."""
        lp = self.learning_progress()
        promising = (lp > 0) | (self.p_fast > 0)
        if not promising.any():
            return np.full(len(lp), 1.0 / len(lp))
        sub = lp[promising]
        z = (sub - sub.mean()) / (sub.std() or 1.0)
        weights = 1.0 / (1.0 + np.exp(-z))
        probs = np.zeros(len(lp))
        probs[promising] = weights / weights.sum()
        return probs

    def sample(self) -> Task:
        untried = np.flatnonzero(~self.tried)
        if len(untried):
            level = int(untried[self.rng.integers(len(untried))])
        elif self.rng.random() < self.config.random_task_ratio:
            level = int(self.rng.integers(len(self.tried)))
        else:
            level = int(self.rng.choice(len(self.tried), p=self.task_probs()))
        return int(self.space.start) + level

    def _update(self, task: Task, episode_return: float, success: bool | None, **extra: Any) -> None:
        i = int(task) - int(self.space.start)
        s = float(episode_return > 0 if success is None else success)
        a = self.config.ema_alpha
        if not self.tried[i]:
            self.p_fast[i] = self.p_slow[i] = s
            self.tried[i] = True
        else:
            self.p_fast[i] = a * s + (1.0 - a) * self.p_fast[i]
            self.p_slow[i] = a * self.p_fast[i] + (1.0 - a) * self.p_slow[i]

    def stats(self) -> dict[str, Any]:
        lp = self.learning_progress()
        return {**super().stats(), "learning_progress/mean_lp": float(lp.mean()), "learning_progress/lp": lp}

    def _state(self) -> dict[str, Any]:
        return {"p_fast": self.p_fast.copy(), "p_slow": self.p_slow.copy(), "tried": self.tried.copy(),
                "config": asdict(self.config)}

    def _load(self, state: dict[str, Any]) -> None:
        if np.shape(state["p_fast"]) != self.p_fast.shape:
            raise ValueError(f"state_dict holds {np.shape(state['p_fast'])[0]} tasks, this teacher {len(self.p_fast)}")
        self.p_fast = np.array(state["p_fast"], dtype=np.float64)
        self.p_slow = np.array(state["p_slow"], dtype=np.float64)
        self.tried = np.array(state["tried"], dtype=bool)


# --------------------------------------------------------------------------- by name
CURRICULA: dict[str, tuple[type[Curriculum], type | None]] = {
    "uniform": (Uniform, None),
    "alp_gmm": (ALPGMM, ALPGMMConfig),
    "plr": (PLR, PLRConfig),
    "learning_progress": (LearningProgress, LearningProgressConfig),
}
"""Teacher name -> (class, config dataclass or None)."""


def make_curriculum(name: str, space: TaskSpace, seed: int = 0, stats_bins: int = 10, success_window: int = 20,
                    **config: Any) -> Curriculum:
    """A teacher by name, its config fields as keyword arguments:
    ``make_curriculum("plr", len(tasks), seed=0, temperature=0.3)``."""
    if name not in CURRICULA:
        raise ValueError(f"unknown curriculum {name!r}; choose one of {', '.join(CURRICULA)}")
    cls, config_cls = CURRICULA[name]
    common = {"seed": seed, "stats_bins": stats_bins, "success_window": success_window}
    if config_cls is None:
        if config:
            raise ValueError(f"the {name!r} curriculum takes no settings, got {sorted(config)}")
        return cls(space, **common)
    fields = set(config_cls.__dataclass_fields__)
    if set(config) - fields:
        raise ValueError(f"unknown {name!r} settings {sorted(set(config) - fields)}; known: {sorted(fields)}")
    return cls(space, config_cls(**config), **common)


# --------------------------------------------------------------------------- ToyEnv run
def run_toy_env(curriculum: Curriculum, n_episodes: int, env: ToyEnv | None = None,
                score_every: int = 1000) -> list[float]:
    """Train teachDeepRL's ToyEnv student for ``n_episodes`` on the teacher's tasks.

    Returns the % of cells mastered before episode 0 and after every ``score_every`` episodes
    (the last entry is after ``n_episodes``). The curriculum's space must be a Box of the ToyEnv's
    dimension inside the unit cube.
    """
    env = env or ToyEnv()
    if not isinstance(curriculum.space, spaces.Box) or curriculum.space.shape != (env.n_dims,):
        raise ValueError(f"run_toy_env needs a Box task space of shape ({env.n_dims},), got {curriculum.space}")
    scores = [env.mastered_percent()]
    for episode in range(1, n_episodes + 1):
        task = curriculum.sample()
        curriculum.update(task, env.episode(task))
        if episode % score_every == 0 or episode == n_episodes:
            scores.append(env.mastered_percent())
    return scores

