"""A trained Stable-Baselines3 policy behind llmrl's batched :class:`~llmrl.agents.base.Agent`, so it is
evaluated in the same harness, on the same levels, as every other agent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from llmrl.agents.base import Agent
from llmrl.envs.babyai_symbolic import symbolic_observation


class SB3PolicyAgent(Agent):
    """An SB3 policy on raw BabyAI-Text observations (BabyAI's symbolic view), for :func:`llmrl.evaluation.evaluate`.

    Sampling uses the agent's per-episode generators rather than ``model.predict``'s torch RNG, so
    an episode plays the same whatever the number of environments evaluated alongside it.
    """

    def __init__(self, model: Any, deterministic: bool = False, name: str = "symbolic-ppo", seed: int = 0) -> None:
        self.model = model
        self.deterministic = deterministic
        self.name = name
        self.seed = seed
        self.mission_len = int(model.observation_space["mission"].shape[0])
        self.rngs: dict[int, np.random.Generator] = {}

    def begin_episode(self, i: int, env: gym.Env, obs: Any, info: dict[str, Any], seed: int) -> None:
        self.rngs[i] = self.episode_rng(self.seed, seed)

    def act(self, obs: Sequence[Any], infos: Sequence[dict[str, Any]], active: Sequence[int]) -> np.ndarray:
        sym = [symbolic_observation(o, self.mission_len) for o in obs]
        batch = {k: np.stack([np.asarray(s[k]) for s in sym]) for k in sym[0]}
        if self.deterministic:
            actions, _ = self.model.predict(batch, deterministic=True)
            return np.asarray(actions, dtype=np.int64)
        policy = self.model.policy
        with torch.no_grad():
            obs_t, _ = policy.obs_to_tensor(batch)
            probs = policy.get_distribution(obs_t).distribution.probs.cpu().numpy().astype(np.float64)
        out = np.empty(len(active), dtype=np.int64)
        for k, i in enumerate(active):
            p = probs[k] / probs[k].sum()
            out[k] = self.rngs[i].choice(len(p), p=p)
        return out
