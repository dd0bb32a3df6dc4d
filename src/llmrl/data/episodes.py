"""Episodes as plain arrays: the data that offline RL, sequence models and imagination share.

An :class:`Episode` is one rollout, for one goal sentence (KALM, BabyAI) or for none (``goal=""``,
D4RL-style control data); an :class:`EpisodeDataset` is a list of them plus a metadata dict.
Actions are discrete, ``(T,)`` int64, or continuous, ``(T, act_dim)`` float32. Episodes keep their final observation (``T + 1`` observations for
``T`` actions), so a truncated episode still has the next state of its last step.

:meth:`EpisodeDataset.transitions` flattens the episodes into d3rlpy-like arrays
(:class:`Transitions`) for offline RL. There, ``terminals`` marks a real termination (the value
after it is zero) and ``timeouts`` a truncation (the value after it is bootstrapped).

Files are a single ``.npz`` written atomically (temporary file, fsync, rename). Minari export is
:meth:`EpisodeDataset.to_minari`; :meth:`EpisodeDataset.from_minari` reads it back.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np

if TYPE_CHECKING:
    import minari

FILE_FORMAT = "llmrl.episodes/1"  # stored in every file; bump when the layout changes
_ARRAYS = ("observations", "actions", "rewards", "terminations", "truncations", "lengths", "goals", "infos", "metadata")


# --------------------------------------------------------------------------- one episode
@dataclass
class Episode:
    """One rollout for one goal. Arrays are converted to the dtypes below on construction."""

    observations: np.ndarray  # (T+1, obs_dim) float32, the final observation included
    actions: np.ndarray  # (T,) int64 discrete actions, or (T, act_dim) float32 continuous ones
    rewards: np.ndarray  # (T,) float32
    terminations: np.ndarray  # (T,) bool: the episode ended in a terminal state at this step
    truncations: np.ndarray  # (T,) bool: the episode was cut at this step (time limit, ...)
    goal: str  # the goal's text
    infos: dict[str, Any] = field(default_factory=dict)  # small JSON-able metadata

    def __post_init__(self) -> None:
        self.observations = np.asarray(self.observations, dtype=np.float32)
        self.actions = _as_actions(self.actions)
        self.rewards = np.asarray(self.rewards, dtype=np.float32)
        self.terminations = np.asarray(self.terminations, dtype=bool)
        self.truncations = np.asarray(self.truncations, dtype=bool)
        if self.observations.ndim != 2:
            raise ValueError(
                f"Episode.observations must be (T+1, obs_dim), got shape {self.observations.shape}"
            )
        T = len(self.observations) - 1
        if T < 0:
            raise ValueError("Episode.observations must hold at least the initial observation")
        for name in ("actions", "rewards", "terminations", "truncations"):
            shape = getattr(self, name).shape[:1]
            if shape != (T,):
                raise ValueError(
                    f"Episode.{name} must have shape (T,) = ({T},) for {T + 1} observations "
                    f"(the final observation is included), got {shape}"
                )
        if not isinstance(self.goal, str):
            raise TypeError(f"Episode.goal must be the goal's text (str), got {type(self.goal).__name__}")

    def __len__(self) -> int:
        """Number of steps (actions) T."""
        return len(self.actions)

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def continuous(self) -> bool:
        """True when the actions are real vectors ``(T, act_dim)`` rather than integers."""
        return self.actions.ndim == 2

    @property
    def episode_return(self) -> float:
        """Undiscounted sum of rewards."""
        return float(self.rewards.sum())


# --------------------------------------------------------------------------- flat arrays
@dataclass
class Transitions:
    """Flat (s, a, r, s') arrays for offline RL, d3rlpy style. ``goal_ids`` index ``goals``."""

    observations: np.ndarray  # (N, d) float32
    actions: np.ndarray  # (N,) int64, or (N, act_dim) float32 for continuous actions
    rewards: np.ndarray  # (N,) float32
    next_observations: np.ndarray  # (N, d) float32
    terminals: np.ndarray  # (N,) bool: true termination; no bootstrapping from s'
    timeouts: np.ndarray  # (N,) bool: truncation; s' is still bootstrapped
    goal_ids: np.ndarray  # (N,) int64, index into ``goals``
    goals: list[str]

    def __post_init__(self) -> None:
        N = len(self.actions)
        if self.observations.ndim != 2 or self.observations.shape != self.next_observations.shape:
            raise ValueError(
                "Transitions.observations and next_observations must both be (N, d); got "
                f"{self.observations.shape} and {self.next_observations.shape}"
            )
        for name in ("observations", "rewards", "terminals", "timeouts", "goal_ids"):
            if len(getattr(self, name)) != N:
                raise ValueError(f"Transitions.{name} has {len(getattr(self, name))} rows, actions has {N}")
        if N and (self.goal_ids.min() < 0 or self.goal_ids.max() >= len(self.goals)):
            raise ValueError(
                f"Transitions.goal_ids must lie in [0, {len(self.goals)}) (one id per entry of goals), "
                f"got range [{self.goal_ids.min()}, {self.goal_ids.max()}]"
            )

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def act_dim(self) -> int | None:
        """Width of a continuous action; None for discrete actions."""
        return self.actions.shape[1] if self.actions.ndim == 2 else None


# --------------------------------------------------------------------------- the dataset
class EpisodeDataset:
    """A list of :class:`Episode` plus a dataset-level ``metadata`` dict (JSON-able)."""

    def __init__(self, episodes: Iterable[Episode] = (), metadata: dict[str, Any] | None = None) -> None:
        self.episodes: list[Episode] = list(episodes)
        self.metadata: dict[str, Any] = dict(metadata or {})
        dims = {ep.obs_dim for ep in self.episodes}
        if len(dims) > 1:
            raise ValueError(f"all episodes must share one observation size, got sizes {sorted(dims)}")

    # ---- container protocol
    def __len__(self) -> int:
        return len(self.episodes)

    def __iter__(self) -> Iterator[Episode]:
        return iter(self.episodes)

    @overload
    def __getitem__(self, i: int) -> Episode: ...
    @overload
    def __getitem__(self, i: slice) -> EpisodeDataset: ...
    def __getitem__(self, i: int | slice) -> Episode | EpisodeDataset:
        if isinstance(i, slice):
            return EpisodeDataset(self.episodes[i], self.metadata)
        return self.episodes[i]

    def __repr__(self) -> str:
        return f"EpisodeDataset({len(self)} episodes, {self.n_steps} steps, {len(self.goals())} goals)"

    # ---- summaries
    @property
    def n_steps(self) -> int:
        """Total number of steps (transitions) over all episodes."""
        return sum(len(ep) for ep in self.episodes)

    @property
    def obs_dim(self) -> int | None:
        return self.episodes[0].obs_dim if self.episodes else None

    @property
    def act_dim(self) -> int | None:
        """Width of the continuous actions; None for discrete actions or an empty dataset."""
        return self.episodes[0].actions.shape[1] if self.episodes and self.episodes[0].continuous else None

    def _actions(self) -> np.ndarray:
        """All actions in one array; every episode must have the same kind and width of action."""
        kinds = {ep.actions.shape[1:] for ep in self.episodes}
        if len(kinds) > 1:
            raise ValueError(
                f"episodes mix action shapes {sorted(kinds)}: a dataset holds either discrete actions (T,) or "
                "continuous ones (T, act_dim) of one width"
            )
        if not self.episodes:
            return np.zeros((0,), np.int64)
        dtype = np.float32 if self.episodes[0].continuous else np.int64
        return _cat([ep.actions for ep in self.episodes], dtype, self.episodes[0].actions.shape[1:])

    def goals(self) -> list[str]:
        """The distinct goal texts, in order of first appearance."""
        return list(dict.fromkeys(ep.goal for ep in self.episodes))

    def lengths(self) -> np.ndarray:
        return np.array([len(ep) for ep in self.episodes], dtype=np.int64)

    def returns(self) -> np.ndarray:
        return np.array([ep.episode_return for ep in self.episodes], dtype=np.float64)

    def success_rate(self) -> float:
        """Fraction of episodes whose ``infos["success"]`` is true (every episode must record it)."""
        if not self.episodes:
            raise ValueError("success_rate of an empty EpisodeDataset is undefined")
        missing = [i for i, ep in enumerate(self.episodes) if "success" not in ep.infos]
        if missing:
            raise KeyError(
                f"{len(missing)} episodes (first: index {missing[0]}) have no infos['success']; "
                "record success when the episodes are collected"
            )
        return float(np.mean([bool(ep.infos["success"]) for ep in self.episodes]))

    # ---- combining
    def concat(self, other: EpisodeDataset) -> EpisodeDataset:
        """Both datasets' episodes; metadata is this dataset's, updated with ``other``'s."""
        return EpisodeDataset(self.episodes + other.episodes, {**self.metadata, **other.metadata})

    def filter(self, predicate: Callable[[Episode], bool]) -> EpisodeDataset:
        """The episodes for which ``predicate(episode)`` is true, with the same metadata."""
        return EpisodeDataset([ep for ep in self.episodes if predicate(ep)], self.metadata)

    # ---- flattening for offline RL
    def transitions(self, goal_index: dict[str, int] | None = None) -> Transitions:
        """Flat (s, a, r, s') arrays. ``goal_index`` fixes the goal ids (e.g. shared with another
        dataset, or with a goal-embedding matrix's rows); by default ids follow :meth:`goals`.
        A truncated step has ``timeouts`` set and ``terminals`` clear: truncation is not a terminal.
        """
        if goal_index is None:
            goals = self.goals()
            goal_index = {g: i for i, g in enumerate(goals)}
        else:
            goals = [g for g, _ in sorted(goal_index.items(), key=lambda kv: kv[1])]
            if sorted(goal_index.values()) != list(range(len(goal_index))):
                raise ValueError("goal_index must map goal texts to the ids 0 .. n_goals-1, each used once")
            unknown = [g for g in self.goals() if g not in goal_index]
            if unknown:
                raise KeyError(
                    f"{len(unknown)} goals of this dataset are missing from goal_index "
                    f"(first: {unknown[0]!r}); add them, or call transitions() without goal_index"
                )
        d = self.obs_dim or 0
        eps = self.episodes
        return Transitions(
            observations=_cat([ep.observations[:-1] for ep in eps], np.float32, (d,)),
            actions=self._actions(),
            rewards=_cat([ep.rewards for ep in eps], np.float32),
            next_observations=_cat([ep.observations[1:] for ep in eps], np.float32, (d,)),
            terminals=_cat([ep.terminations for ep in eps], bool),
            timeouts=_cat([ep.truncations for ep in eps], bool),
            goal_ids=_cat([np.full(len(ep), goal_index[ep.goal], dtype=np.int64) for ep in eps], np.int64),
            goals=goals,
        )

    # ---- files
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write one ``.npz`` file atomically: a killed save leaves the old file or the new one."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        d = self.obs_dim or 0
        infos = []
        for i, ep in enumerate(self.episodes):
            try:
                infos.append(json.dumps(ep.infos, default=_json_default))
            except (TypeError, ValueError) as e:
                raise TypeError(f"episode {i}'s infos are not JSON-able ({e}); keep infos to small plain values") from e
        try:
            metadata = json.dumps(self.metadata, default=_json_default)
        except (TypeError, ValueError) as e:
            raise TypeError(f"the dataset metadata is not JSON-able ({e})") from e
        arrays = {
            "format": np.array(FILE_FORMAT),
            "observations": _cat([ep.observations for ep in self.episodes], np.float32, (d,)),
            "actions": self._actions(),
            "rewards": _cat([ep.rewards for ep in self.episodes], np.float32),
            "terminations": _cat([ep.terminations for ep in self.episodes], bool),
            "truncations": _cat([ep.truncations for ep in self.episodes], bool),
            "lengths": self.lengths(),
            "goals": np.array([ep.goal for ep in self.episodes], dtype=str),
            "infos": np.array(infos, dtype=str),
            "metadata": np.array(metadata),
        }
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EpisodeDataset:
        """Read a file written by :meth:`save`."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: no episode dataset there. Check the path, or create the file with EpisodeDataset.save()"
            )
        try:
            with open(path, "rb") as fh:  # our handle, so a corrupt file is still closed
                z = np.load(fh, allow_pickle=False)
                if not isinstance(z, np.lib.npyio.NpzFile):
                    raise ValueError("a single array, not an .npz archive")
                with z:
                    if "format" not in z.files or str(z["format"]) != FILE_FORMAT:
                        found = str(z["format"]) if "format" in z.files else "none"
                        raise ValueError(f"file format {found!r}, expected {FILE_FORMAT!r}")
                    missing = sorted(set(_ARRAYS) - set(z.files))
                    if missing:
                        raise ValueError(f"arrays {missing} are missing")
                    a = {k: z[k] for k in _ARRAYS}
        except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError) as e:
            raise ValueError(
                f"{path} is not a readable llmrl episode file ({type(e).__name__}: {e}). It may be truncated "
                "or written by another program: regenerate it with EpisodeDataset.save()"
            ) from e
        lengths = a["lengths"]
        obs_ends = np.cumsum(lengths + 1)
        step_ends = np.cumsum(lengths)
        episodes = []
        for i, T in enumerate(lengths):
            o, s = obs_ends[i] - T - 1, step_ends[i] - T
            episodes.append(
                Episode(
                    observations=a["observations"][o : obs_ends[i]],
                    actions=a["actions"][s : step_ends[i]],
                    rewards=a["rewards"][s : step_ends[i]],
                    terminations=a["terminations"][s : step_ends[i]],
                    truncations=a["truncations"][s : step_ends[i]],
                    goal=str(a["goals"][i]),
                    infos=json.loads(str(a["infos"][i])),
                )
            )
        return cls(episodes, json.loads(str(a["metadata"])))

    # ---- Minari
    def to_minari(
        self,
        dataset_id: str,
        data_path: str | os.PathLike[str] | None = None,
        n_actions: int | None = None,
        action_space: Any = None,
        **metadata: Any,
    ) -> minari.MinariDataset:
        """Export as a Minari dataset (HDF5), readable with ``minari.load_dataset(dataset_id)``.

        Layout: when the episodes carry goals, the observation space is
        ``Dict(observation=Box(obs_dim), goal=Text)``, so every step's observation carries the goal
        text, as in Minari's goal-conditioned datasets (which use ``Dict(observation,
        desired_goal)``); goal-free data (every goal ``""``, D4RL style) keeps a plain ``Box``.
        Each episode's ``infos`` dict is kept as a JSON string in the episode metadata
        (``infos_json``), and this dataset's ``metadata`` as JSON in the dataset metadata
        (``llmrl_metadata``).

        ``dataset_id`` follows Minari's ``(namespace/)(env_name/)name-v<version>``; ``data_path``
        is the datasets root (``MINARI_DATASETS_PATH``; default ``~/.minari/datasets``).
        The action space is ``action_space`` when given; otherwise ``Discrete(n_actions)`` (default:
        the largest action + 1) for discrete actions, and an unbounded ``Box(act_dim)`` for
        continuous ones. ``metadata`` goes to ``minari.create_dataset_from_buffers``
        (``algorithm_name``, ``author``, ``description``, ``env_spec``, ...).
        """
        import gymnasium as gym
        import minari
        from minari.data_collector import EpisodeBuffer

        if not self.episodes:
            raise ValueError("cannot export an empty EpisodeDataset to Minari")
        actions = self._actions()  # checks that all episodes agree on the kind of action
        if action_space is None and self.act_dim is not None:
            action_space = gym.spaces.Box(-np.inf, np.inf, (self.act_dim,), np.float32)
        elif action_space is None:
            n = int(actions.max()) + 1 if n_actions is None and len(actions) else n_actions or 1
            action_space = gym.spaces.Discrete(n)
        with_goals = any(ep.goal for ep in self.episodes)
        box = gym.spaces.Box(-np.inf, np.inf, (self.obs_dim,), np.float32)
        if with_goals:
            chars = frozenset("".join(ep.goal for ep in self.episodes))
            observation_space = gym.spaces.Dict(
                {"observation": box, "goal": gym.spaces.Text(max(len(ep.goal) for ep in self.episodes), min_length=0,
                                                           charset=chars)}
            )
        else:
            observation_space = box

        def observations(ep: Episode) -> Any:
            if with_goals:
                return {"observation": ep.observations, "goal": [ep.goal] * (len(ep) + 1)}
            return ep.observations

        buffers = [
            EpisodeBuffer(id=i, observations=observations(ep), actions=ep.actions, rewards=ep.rewards,
                          terminations=ep.terminations, truncations=ep.truncations)
            for i, ep in enumerate(self.episodes)
        ]
        metadata.setdefault("author", "llmrl")
        metadata.setdefault("description", f"{len(self)} episodes exported by llmrl")
        with _minari_root(data_path), warnings.catch_warnings():
            # Minari nags about fields that have no meaning here (env spec, code permalink, ...).
            warnings.filterwarnings("ignore", category=UserWarning, module=r"minari\.")
            dataset = minari.create_dataset_from_buffers(
                dataset_id,
                buffers,
                observation_space=observation_space,
                action_space=action_space,
                jpeg_encoding=False,
                **metadata,
            )
            dataset.storage.update_episode_metadata(
                [{"goal": ep.goal, "infos_json": json.dumps(ep.infos, default=_json_default)} for ep in self.episodes],
                range(len(self.episodes)),
            )
            dataset.storage.update_metadata({"llmrl_metadata": json.dumps(self.metadata, default=_json_default)})
        return dataset

    @classmethod
    def from_minari(
        cls, dataset: str | minari.MinariDataset, data_path: str | os.PathLike[str] | None = None
    ) -> EpisodeDataset:
        """Read a Minari dataset of flat (``Box``) observations, or one written by :meth:`to_minari`
        (an id, or an already loaded dataset)."""
        import gymnasium as gym
        import minari

        with _minari_root(data_path):
            ds = minari.load_dataset(dataset) if isinstance(dataset, str) else dataset
            space = ds.observation_space
            with_goals = isinstance(space, gym.spaces.Dict) and "goal" in space.spaces
            if not with_goals and not isinstance(space, gym.spaces.Box):
                raise ValueError(
                    f"Minari dataset {ds.id} has {type(space).__name__} observations; only flat Box observations "
                    "or datasets written by EpisodeDataset.to_minari can be read"
                )
            metas = list(ds.storage.get_episode_metadata(ds.episode_indices))
            episodes = [
                Episode(
                    observations=ep.observations["observation"] if with_goals else ep.observations,
                    actions=ep.actions,
                    rewards=ep.rewards,
                    terminations=ep.terminations,
                    truncations=ep.truncations,
                    goal=str(meta.get("goal", ep.observations["goal"][0] if with_goals else "")),
                    infos=json.loads(meta.get("infos_json", "{}")),
                )
                for ep, meta in zip(ds.iterate_episodes(), metas)
            ]
            metadata = json.loads(ds.storage.metadata.get("llmrl_metadata", "{}"))
        return cls(episodes, metadata)


# --------------------------------------------------------------------------- helpers
def _as_actions(actions: Any) -> np.ndarray:
    """Integer or 1-d actions stay discrete (int64); real (T, act_dim) actions become float32."""
    a = np.asarray(actions)
    if a.ndim == 2:
        return a.astype(np.float32, copy=False)
    if a.ndim == 1 and a.dtype.kind in "iub":
        return a.astype(np.int64, copy=False)
    if a.ndim == 1 and a.size == 0:
        return a.astype(np.int64)
    if a.ndim == 1 and np.all(np.mod(a, 1) == 0):
        return a.astype(np.int64)
    raise ValueError(
        f"Episode.actions must be discrete (T,) integers or continuous (T, act_dim) reals, got shape {a.shape} "
        f"dtype {a.dtype}; give a 1-d continuous action as shape (T, 1)"
    )


def _cat(parts: list[np.ndarray], dtype: Any, shape: tuple[int, ...] = ()) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros((0, *shape), dtype=dtype)


def _json_default(x: Any) -> Any:
    """numpy scalars and arrays in infos become plain numbers and lists."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON-able")


@contextlib.contextmanager
def _minari_root(data_path: str | os.PathLike[str] | None) -> Iterator[None]:
    """Point Minari at ``data_path`` (its datasets root) for the duration of the block."""
    if data_path is None:
        yield
        return
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(data_path).resolve())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
