"""Random Network Distillation (Burda et al. 2019): novelty as an intrinsic reward.

A target network f is initialised at random and never trained; a predictor f̂ is trained to
match it on the observations the agent visits. The prediction error ‖f̂(s) − f(s)‖² is small on
observations like those seen often and large on novel ones, so it serves as an exploration
bonus. Both networks start with an encoder from the same factory the agent's Q-network uses
(e.g. ``lambda: GridEncoder(...)`` from :mod:`llmrl.rl.dqn`), so RND reads the same observations;
the target adds one linear layer to ``out_dim``, the predictor a deeper head (``hidden_sizes``),
as in Burda et al., where the predictor has extra layers so it can fit the target.

Normalisation. The raw error's scale drifts as the predictor learns and differs between
environments, so the reward is divided by a running standard deviation. Burda et al. divide by
the std of the discounted *intrinsic return* kept per env by their PPO rollouts. Here we divide
by the running std of the *per-step rewards* themselves: an off-policy learner (ELLM's DQN) calls
``intrinsic_reward`` on batches that need not line up with a fixed env order (replay samples,
varying batch sizes), where a per-env return filter has no meaning, and the n-step returns of
DQN already sum a few steps of a per-step-normalised reward. The mean is not subtracted, so the
bonus stays positive. Observations are not normalised (Burda et al. whiten pixels): the encoders
here one-hot their ids or scale images to [0, 1] themselves.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from llmrl.rl.networks import mlp


@dataclass
class RNDConfig:
    """Settings of the RND bonus."""

    learning_rate: float = 1e-4
    """Adam learning rate of the predictor (Burda et al.: 1e-4)."""
    out_dim: int = 128
    """Size of the target's random embedding that the predictor regresses."""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden layers (ReLU) of the predictor's head on top of its encoder; the target's head is one linear layer."""
    reward_scale: float = 1.0
    """The normalised error is multiplied by this (the weight of the bonus relative to extrinsic reward)."""
    update_proportion: float = 1.0
    """Fraction of each update batch, chosen at random, that trains the predictor (Burda et al. use
    0.25 with many envs, so the predictor does not learn faster than the policy explores)."""
    epsilon: float = 1e-8
    """Added to the running variance before the square root."""

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.out_dim < 1:
            raise ValueError(f"out_dim must be at least 1, got {self.out_dim}")
        if any(h < 1 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive layer widths, got {self.hidden_sizes}")
        if not 0.0 < self.update_proportion <= 1.0:
            raise ValueError(f"update_proportion must lie in (0, 1], got {self.update_proportion}")
        if self.reward_scale < 0:
            raise ValueError(f"reward_scale must be at least 0, got {self.reward_scale}")


class RunningMeanStd:
    """Running mean and variance of a stream of batches, merged with the parallel form of
    Welford's algorithm (Chan et al. 1979), so batch order and size do not change the result."""

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 0.0

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64)
        n = x.shape[0]
        if n == 0:
            return
        b_mean, b_var = x.mean(axis=0), x.var(axis=0)
        if self.count == 0:
            self.mean, self.var, self.count = b_mean, b_var, float(n)
            return
        total = self.count + n
        delta = b_mean - self.mean
        m2 = self.var * self.count + b_var * n + delta**2 * self.count * n / total
        self.mean = self.mean + delta * n / total
        self.var, self.count = m2 / total, total

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": np.array(self.mean), "var": np.array(self.var), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean, self.var, self.count = np.array(state["mean"]), np.array(state["var"]), float(state["count"])


class RND:
    """The RND bonus: ``intrinsic_reward(obs)`` for a batch, ``update(obs)`` trains the predictor.

    ``encoder_factory()`` must return a fresh encoder module (with ``out_dim``) on each call; it is
    called twice, once for the target and once for the predictor, so they start from different weights.
    """

    def __init__(
        self,
        encoder_factory: Callable[[], nn.Module],
        config: RNDConfig | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.config = config if config is not None else RNDConfig()
        self.device = torch.device(device)
        c = self.config
        target_encoder, predictor_encoder = encoder_factory(), encoder_factory()
        if target_encoder is predictor_encoder:
            raise ValueError("encoder_factory returned the same module twice: it must build a new encoder on each call")
        self.target = nn.Sequential(target_encoder, nn.Linear(target_encoder.out_dim, c.out_dim)).to(self.device)
        self.target.requires_grad_(False)
        self.predictor = nn.Sequential(
            predictor_encoder, mlp(predictor_encoder.out_dim, c.hidden_sizes, c.out_dim)
        ).to(self.device)
        self.optim = torch.optim.Adam(self.predictor.parameters(), lr=c.learning_rate)
        self.reward_rms = RunningMeanStd()

    def _errors(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(B,) mean squared prediction error per observation (with the predictor's graph)."""
        x = torch.as_tensor(obs if torch.is_tensor(obs) else np.asarray(obs), device=self.device)
        with torch.no_grad():
            target = self.target(x)
        return ((self.predictor(x) - target) ** 2).mean(dim=1)

    @torch.no_grad()
    def raw_error(self, obs: np.ndarray | torch.Tensor) -> np.ndarray:
        """(B,) unnormalised prediction errors."""
        return self._errors(obs).cpu().numpy()

    def intrinsic_reward(self, obs: np.ndarray | torch.Tensor, update_stats: bool = True) -> np.ndarray:
        """(B,) float32 bonus: reward_scale · error / running std of errors.

        With ``update_stats`` the batch first joins the running statistics (call it so on the
        observations the agent reaches, once each); pass False to score without changing them.
        """
        err = self.raw_error(obs)
        if update_stats:
            self.reward_rms.update(err)
        return (self.config.reward_scale * err / np.sqrt(self.reward_rms.var + self.config.epsilon)).astype(np.float32)

    def update(self, obs: np.ndarray | torch.Tensor) -> float:
        """One Adam step of the predictor on a batch of observations; returns the distillation loss."""
        err = self._errors(obs)
        # Burda et al.: each sample trains the predictor with probability update_proportion.
        mask = (torch.rand(len(err), device=self.device) < self.config.update_proportion).float()
        loss = (err * mask).sum() / mask.sum().clamp(min=1.0)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        return loss.item()

    def state_dict(self) -> dict[str, Any]:
        """Copies of both nets, Adam's state and the reward statistics."""
        return copy.deepcopy({
            "target": self.target.state_dict(),
            "predictor": self.predictor.state_dict(),
            "optim": self.optim.state_dict(),
            "reward_rms": self.reward_rms.state_dict(),
        })

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.target.load_state_dict(state["target"])
        self.predictor.load_state_dict(state["predictor"])
        self.optim.load_state_dict(state["optim"])
        self.reward_rms.load_state_dict(state["reward_rms"])


class RNDBonus:
    """RND as the intrinsic reward of :class:`llmrl.rl.offpolicy.OffPolicyLoop`: each step's next
    observations are scored when the step is taken, and the predictor trains on every replay batch."""

    def __init__(self, rnd: RND) -> None:
        self.rnd = rnd

    def begin(self, infos: Any) -> None:
        pass

    def observe(self, step: Any, next_infos: Any) -> None:
        step.extra["rnd"] = self.rnd.intrinsic_reward(step.next_obs)

    def ready(self) -> bool:
        return True

    def prepare(self) -> None:
        pass

    def reward(self, step: Any) -> np.ndarray:
        return step.extra["rnd"]

    def end_episode(self, i: int) -> None:
        pass

    def learn(self, batch: dict[str, torch.Tensor]) -> None:
        self.rnd.update(batch["obs"])
