"""Environments stepped together: :class:`EnvGroup` (a lockstep list of environments, as the
recipes step them) and helpers for Gymnasium vector environments that reset in the same step
(``AutoresetMode.SAME_STEP``).

A vector step returns infos as a dict of arrays (``infos["caption"][i]``); roles and learners want
one dict per environment. When environment ``i``'s episode ends, the returned observation and
info already belong to the next episode; the last ones are in ``infos["final_obs"]`` and
``infos["final_info"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np


def unstack_infos(infos: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """A vector env's dict of arrays -> one dict per environment (mask keys ``_x`` and the final
    observation/info left out)."""
    keys = [k for k in infos if not k.startswith("_") and k not in ("final_obs", "final_info")]
    return [{k: infos[k][i] for k in keys} for i in range(n)]


def final_transition(next_obs: np.ndarray, infos: dict[str, Any], done: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """What each environment's step really led to: ``(next observations, per-env infos)`` with the
    final observation and info where an episode ended (not the reset ones)."""
    n = len(done)
    step_infos = unstack_infos(infos, n)
    if not np.any(done):
        return next_obs, step_infos
    final = unstack_infos(infos["final_info"], n)
    step_infos = [final[i] if done[i] else step_infos[i] for i in range(n)]
    real_next = np.stack([infos["final_obs"][i] if done[i] else next_obs[i] for i in range(n)])
    return real_next, step_infos


@dataclass(frozen=True)
class Step:
    """One environment's step in an :class:`EnvGroup`. When the episode ended the environment has
    already been reset: ``obs``/``next_info`` belong to the new episode, ``info`` and ``final_obs``
    to the step that ended the old one."""

    obs: Any
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]
    final_obs: Any
    next_info: dict[str, Any]

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


def step_and_reset(env: gym.Env, action: Any) -> Step:
    obs, reward, terminated, truncated, info = env.step(action)
    next_obs, next_info = (env.reset() if terminated or truncated else (obs, info))
    return Step(next_obs, float(reward), bool(terminated), bool(truncated), info, obs, next_info)


class EnvGroup:
    """Environments stepped in lockstep in this process, each reset as soon as its episode ends
    (later resets continue the environment's own generator, as one environment's would).

    The recipes' interface to their environments: :class:`llmrl.scale.env_runners.RayEnvGroup`
    is the same group with the environments in Ray actors. A group pickles as its environments,
    so a checkpoint holds them whichever group stepped them.
    """

    def __init__(self, envs: Sequence[gym.Env]) -> None:
        self.envs = list(envs)

    def __len__(self) -> int:
        return len(self.envs)

    def reset(self, seeds: Sequence[int | None]) -> list[tuple[Any, dict[str, Any]]]:
        """Reset environment i with ``seeds[i]``; returns its (observation, info)."""
        if len(seeds) != len(self.envs):
            raise ValueError(f"{len(seeds)} seeds for {len(self.envs)} environments")
        return [env.reset(seed=s) for env, s in zip(self.envs, seeds)]

    def step(self, actions: Sequence[Any]) -> list[Step]:
        if len(actions) != len(self.envs):
            raise ValueError(f"{len(actions)} actions for {len(self.envs)} environments")
        return [step_and_reset(env, a) for env, a in zip(self.envs, actions)]

    def local_envs(self) -> list[gym.Env]:
        """The environments themselves, in order (for a checkpoint, or to step them elsewhere)."""
        return self.envs

    def close(self) -> None:
        for env in self.envs:
            env.close()
