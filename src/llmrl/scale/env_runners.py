"""Environments in Ray actors ("env runners", as RLlib calls them) behind the interfaces recipes
already step: :class:`RayEnvGroup` is an :class:`llmrl.envs.vector.EnvGroup` and
:class:`RayVectorEnv` a Gymnasium ``VectorEnv`` (``AutoresetMode.SAME_STEP``).

Environment i lives in the runner that holds the i-th contiguous shard. A step sends each runner
its shard's actions at once and reads the replies in runner order, so results come back in the
order one process would produce them; each environment keeps its own random generator, so a
seeded run steps through the same episodes wherever its environments live.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from llmrl.envs.vector import EnvGroup, Step
from llmrl.scale import RayConfig, connect, shards


class _GroupRunner:
    """The actor body of :class:`RayEnvGroup`: a shard of the environments."""

    def __init__(self, envs: list[gym.Env]) -> None:
        self.group = EnvGroup(envs)

    def reset(self, seeds: list[int | None]) -> list[tuple[Any, dict[str, Any]]]:
        return self.group.reset(seeds)

    def step(self, actions: list[Any]) -> list[Step]:
        return self.group.step(actions)

    def local_envs(self) -> list[gym.Env]:
        return self.group.local_envs()

    def close(self) -> None:
        self.group.close()


class RayEnvGroup:
    """An :class:`~llmrl.envs.vector.EnvGroup` whose environments step in ``config.env_runners``
    actors. Built from environment objects (shipped to the actors as they are, state included),
    and pickled back as a plain ``EnvGroup`` of them, so checkpoints do not depend on Ray."""

    def __init__(self, envs: Sequence[gym.Env], config: RayConfig) -> None:
        ray = connect(config)
        self._ray = ray
        self._n = len(envs)
        self._parts = shards(self._n, config.env_runners)
        runner = ray.remote(num_cpus=config.env_runner_cpus)(_GroupRunner)
        self._runners = [runner.remote([envs[i] for i in part]) for part in self._parts]

    def __len__(self) -> int:
        return self._n

    def _each(self, method: str, per_env: Sequence[Any]) -> list[Any]:
        refs = [getattr(r, method).remote([per_env[i] for i in part]) for r, part in zip(self._runners, self._parts)]
        return [x for shard in self._ray.get(refs) for x in shard]

    def reset(self, seeds: Sequence[int | None]) -> list[tuple[Any, dict[str, Any]]]:
        if len(seeds) != self._n:
            raise ValueError(f"{len(seeds)} seeds for {self._n} environments")
        return self._each("reset", list(seeds))

    def step(self, actions: Sequence[Any]) -> list[Step]:
        if len(actions) != self._n:
            raise ValueError(f"{len(actions)} actions for {self._n} environments")
        return self._each("step", [a.item() if isinstance(a, np.generic) else a for a in actions])

    def local_envs(self) -> list[gym.Env]:
        return [env for shard in self._ray.get([r.local_envs.remote() for r in self._runners]) for env in shard]

    def close(self) -> None:
        for r in self._runners:
            self._ray.kill(r)
        self._runners = []

    def __reduce__(self) -> tuple[Any, ...]:
        return EnvGroup, (self.local_envs(),)


# --------------------------------------------------------------------------- Gymnasium vector env
class _VectorRunner:
    """The actor body of :class:`RayVectorEnv`: one vector env over a shard."""

    def __init__(self, make_vec: Callable[[int], gym.vector.VectorEnv], n: int) -> None:
        self.env = make_vec(n)

    def spaces(self) -> tuple[gym.Space, gym.Space, dict[str, Any]]:
        return self.env.single_observation_space, self.env.single_action_space, dict(self.env.metadata)

    def reset(self, seed: Any, options: Any) -> tuple[Any, dict[str, Any]]:
        return self.env.reset(seed=seed, options=options)

    def step(self, actions: np.ndarray) -> tuple[Any, ...]:
        return self.env.step(actions)

    def close(self) -> None:
        self.env.close()


class RayVectorEnv(gym.vector.VectorEnv):
    """A Gymnasium vector env of ``n_envs`` environments made by ``make_vec(k)`` (a vector env of
    k) in each of ``config.env_runners`` actors; observations and infos are joined in order, as
    one ``make_vec(n_envs)`` would return them. Reset seeds follow Gymnasium's rule (an int seed
    gives environment i ``seed + i``), so the same environments see the same worlds."""

    def __init__(self, make_vec: Callable[[int], gym.vector.VectorEnv], n_envs: int, config: RayConfig) -> None:
        ray = connect(config)
        self._ray = ray
        self.num_envs = n_envs
        self._parts = shards(n_envs, config.env_runners)
        runner = ray.remote(num_cpus=config.env_runner_cpus)(_VectorRunner)
        self._runners = [runner.remote(make_vec, len(part)) for part in self._parts]
        obs_space, act_space, metadata = ray.get(self._runners[0].spaces.remote())
        self.single_observation_space, self.single_action_space = obs_space, act_space
        self.observation_space = gym.vector.utils.batch_space(obs_space, n_envs)
        self.action_space = gym.vector.utils.batch_space(act_space, n_envs)
        self.metadata = metadata
        self.render_mode = None

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if isinstance(seed, (int, np.integer)):
            seeds: list[Any] = [int(seed) + part.start for part in self._parts]
        elif seed is None:
            seeds = [None] * len(self._parts)
        else:
            if len(seed) != self.num_envs:
                raise ValueError(f"{len(seed)} seeds for {self.num_envs} environments")
            seeds = [list(seed[part.start: part.stop]) for part in self._parts]
        replies = self._ray.get([r.reset.remote(s, options) for r, s in zip(self._runners, seeds)])
        return self._join([o for o, _ in replies]), merge_infos([i for _, i in replies], self._sizes())

    def step(self, actions: Any) -> tuple[Any, ...]:
        actions = np.asarray(actions)
        replies = self._ray.get([r.step.remote(actions[part.start: part.stop])
                                 for r, part in zip(self._runners, self._parts)])
        obs, rewards, terminated, truncated, infos = zip(*replies)
        return (self._join(obs), np.concatenate(rewards), np.concatenate(terminated), np.concatenate(truncated),
                merge_infos(list(infos), self._sizes()))

    def _sizes(self) -> list[int]:
        return [len(p) for p in self._parts]

    @staticmethod
    def _join(parts: Sequence[Any]) -> Any:
        if isinstance(parts[0], dict):
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return np.concatenate(parts)

    def close_extras(self, **kwargs: Any) -> None:
        if getattr(self, "_runners", None):
            self._ray.get([r.close.remote() for r in self._runners])
            for r in self._runners:
                self._ray.kill(r)
            self._runners = []


def merge_infos(parts: Sequence[dict[str, Any]], sizes: Sequence[int]) -> dict[str, Any]:
    """Vector infos (dicts of arrays, ``_key`` masks) of consecutive shards -> the infos of the
    whole vector, as Gymnasium builds them: a key any shard has becomes an array over every
    environment (zeros or None where a shard lacks it) with its mask; nested dicts recurse."""
    keys = [k for k in dict.fromkeys(k for p in parts for k in p) if not k.startswith("_")]
    out: dict[str, Any] = {}
    for key in keys:
        present = [p.get(key) for p in parts]
        masks = [np.asarray(p.get("_" + key, np.ones(n, bool))) if key in p else np.zeros(n, bool)
                 for p, n in zip(parts, sizes)]
        if any(isinstance(v, dict) for v in present):
            out[key] = merge_infos([v if isinstance(v, dict) else {} for v in present], sizes)
        else:
            like = next(np.asarray(v) for v in present if v is not None)
            filled = [np.asarray(v) if v is not None else _blank(like, n) for v, n in zip(present, sizes)]
            out[key] = np.concatenate(filled) if like.dtype != object else _object_concat(filled)
        out["_" + key] = np.concatenate(masks)
    return out


def _blank(like: np.ndarray, n: int) -> np.ndarray:
    if like.dtype == object:
        return np.full(n, None, dtype=object)
    return np.zeros((n, *like.shape[1:]), dtype=like.dtype)


def _object_concat(parts: Sequence[np.ndarray]) -> np.ndarray:
    # np.concatenate would try to stack equal-shaped arrays held in object cells into one block.
    out = np.empty(sum(len(p) for p in parts), dtype=object)
    i = 0
    for p in parts:
        for x in p:
            out[i] = x
            i += 1
    return out
