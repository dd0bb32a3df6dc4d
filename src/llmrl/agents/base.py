"""The batched interface every agent shares: one call acts for many environments at once.

An agent sees each environment's observation and info (for text agents: ``info["mission"]`` and
``info["descriptions"]``) and returns one action index per environment. ``begin_episode`` tells it
that environment ``i`` was just reset with episode seed ``seed``, so it can clear that
environment's history (or, for the BabyAI bot, plan against the new level). Stochastic agents draw
each episode's randomness from its own generator seeded by (agent seed, episode seed), so an
episode plays the same whatever the number of environments stepped alongside it.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np


class Agent(abc.ABC):
    """Acts in ``n_envs`` environments stepped in lockstep."""

    name: str = "agent"

    def begin_episode(self, i: int, env: gym.Env, obs: Any, info: dict[str, Any], seed: int) -> None:  # noqa: B027
        """Environment ``i`` was reset to a new episode (its seed, first ``obs`` and ``info``)."""

    @abc.abstractmethod
    def act(self, obs: Sequence[Any], infos: Sequence[dict[str, Any]], active: Sequence[int]) -> np.ndarray:
        """One action index for each environment listed in ``active`` (same order)."""

    @staticmethod
    def episode_rng(agent_seed: int, episode_seed: int) -> np.random.Generator:
        """The generator for one episode's random choices."""
        return np.random.default_rng([agent_seed, episode_seed])

    def lm_stats(self) -> dict[str, float]:
        """LM call counters for reports; empty for agents without a language model."""
        return {}
