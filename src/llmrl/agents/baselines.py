"""Agents without a language model: uniform random, and minigrid's BabyAI bot as the oracle."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from llmrl.agents.base import Agent


class RandomAgent(Agent):
    """Uniformly random actions: the floor every learned agent must beat."""

    name = "random"

    def __init__(self, n_actions: int = 6, seed: int = 0) -> None:
        self.n_actions = n_actions
        self.seed = seed
        self.rngs: dict[int, np.random.Generator] = {}

    def begin_episode(self, i: int, env: gym.Env, obs: Any, info: dict[str, Any], seed: int) -> None:
        self.rngs[i] = self.episode_rng(self.seed, seed)

    def act(self, obs: Sequence[Any], infos: Sequence[dict[str, Any]], active: Sequence[int]) -> np.ndarray:
        return np.array([self.rngs[i].integers(self.n_actions) for i in active], dtype=np.int64)


class BotAgent(Agent):
    """minigrid's BabyAI bot: a hand-written planner with access to the full level (an upper bound).

    It plans on the true grid, not on the text, so its success is what a perfect agent could reach.
    """

    name = "bot"

    def __init__(self) -> None:
        self.bots: dict[int, Any] = {}
        self.last_action: dict[int, int | None] = {}

    def begin_episode(self, i: int, env: gym.Env, obs: Any, info: dict[str, Any], seed: int) -> None:
        from minigrid.utils.baby_ai_bot import BabyAIBot

        # BabyAI-Text keeps the MiniGrid level it wraps as ``.level``; plain MiniGrid envs are the level.
        self.bots[i] = BabyAIBot(getattr(env.unwrapped, "level", env.unwrapped))
        self.last_action[i] = None

    def act(self, obs: Sequence[Any], infos: Sequence[dict[str, Any]], active: Sequence[int]) -> np.ndarray:
        actions = np.zeros(len(active), dtype=np.int64)
        for k, i in enumerate(active):
            try:
                a = int(self.bots[i].replan(self.last_action[i]))
            except Exception:  # the bot gives up on rare unsolvable layouts (e.g. a box opened)
                a = 0
            # The bot may answer minigrid's 'done' (6), which BabyAI-Text does not expose; the
            # mission is then already satisfied or lost, so any no-op will do.
            a = a if a < 6 else 0
            actions[k] = a
            self.last_action[i] = a
        return actions
