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
    an episode plays the same whatever the number of environments evaluated alongside it. A
    recurrent policy (sb3-contrib's ``RecurrentPPO``) keeps one LSTM state per environment,
    cleared when its episode begins.
    """

    def __init__(self, model: Any, deterministic: bool = False, name: str = "symbolic-ppo", seed: int = 0) -> None:
        self.model = model
        self.deterministic = deterministic
        self.name = name
        self.seed = seed
        self.mission_len = int(model.observation_space["mission"].shape[0])
        self.rngs: dict[int, np.random.Generator] = {}
        lstm = getattr(model.policy, "lstm_actor", None)
        self.recurrent = lstm is not None
        self.state_shape = (lstm.num_layers, lstm.hidden_size) if lstm is not None else None
        self.states: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.starts: dict[int, bool] = {}

    def begin_episode(self, i: int, env: gym.Env, obs: Any, info: dict[str, Any], seed: int) -> None:
        self.rngs[i] = self.episode_rng(self.seed, seed)
        if self.recurrent:
            zeros = np.zeros(self.state_shape, np.float32)
            self.states[i], self.starts[i] = (zeros, zeros.copy()), True

    def act(self, obs: Sequence[Any], infos: Sequence[dict[str, Any]], active: Sequence[int]) -> np.ndarray:
        sym = [symbolic_observation(o, self.mission_len) for o in obs]
        batch = {k: np.stack([np.asarray(s[k]) for s in sym]) for k in sym[0]}
        policy = self.model.policy
        with torch.no_grad():
            obs_t, _ = policy.obs_to_tensor(batch)
            if self.recurrent:
                h = torch.as_tensor(np.stack([self.states[i][0] for i in active], axis=1), device=policy.device)
                c = torch.as_tensor(np.stack([self.states[i][1] for i in active], axis=1), device=policy.device)
                starts = torch.as_tensor([float(self.starts[i]) for i in active], device=policy.device)
                dist, (h, c) = policy.get_distribution(obs_t, (h, c), starts)
                for k, i in enumerate(active):
                    self.states[i] = (h[:, k].cpu().numpy(), c[:, k].cpu().numpy())
                    self.starts[i] = False
            else:
                dist = policy.get_distribution(obs_t)
            probs = dist.distribution.probs.cpu().numpy().astype(np.float64)
        if self.deterministic:
            return probs.argmax(axis=1).astype(np.int64)
        out = np.empty(len(active), dtype=np.int64)
        for k, i in enumerate(active):
            p = probs[k] / probs[k].sum()
            out[k] = self.rngs[i].choice(len(p), p=p)
        return out
