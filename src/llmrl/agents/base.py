"""The batched interface every agent shares: one call acts for many environments at once.

An agent sees each environment's observation and info (for text agents: ``info["mission"]`` and
``info["descriptions"]``) and returns one action index per environment. ``begin_episode`` tells it
that environment ``i`` was just reset, so it can clear that environment's history (or, for the
BabyAI bot, plan against the new level).
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

    def begin_episode(self, i: int, env: gym.Env, obs: Any, info: dict[str, Any]) -> None:  # noqa: B027
        """Environment ``i`` was reset to a new episode (its first ``obs`` and ``info``)."""

    @abc.abstractmethod
    def act(self, obs: Sequence[Any], infos: Sequence[dict[str, Any]], active: Sequence[int]) -> np.ndarray:
        """One action index for each environment listed in ``active`` (same order)."""

    def lm_stats(self) -> dict[str, float]:
        """LM call counters for reports; empty for agents without a language model."""
        return {}
