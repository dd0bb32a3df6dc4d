"""APT (Liu & Abbeel 2021): a particle-based entropy bonus on a learned representation, as ELLM's
baseline uses it with its DQN.

A state's novelty is how far its representation lies from its neighbours in the replay batch:
r = log(1 + mean over its k nearest neighbours of ‖z − z_j‖ / d̄), where d̄ is a running mean of
those distances (ELLM's code: k = 12 within a batch of 64, distances below 1e-4 of d̄ count as
0). The representation z is learned ICM-style (Pathak et al. 2017) on top of the agent's own
encoder features: an inverse model predicts the action from (z_t, z_t'), a forward model
predicts z_t' from (z_t, a); the agent's encoder itself is not trained by it (in ELLM's code the
representation loss's gradients reach the encoder but are cleared before they are applied).

Unlike RND, which scores states as they are visited, APT's reward exists only for a batch: it is
computed when the learner samples one, and replaces the batch's stored n-step returns (ELLM:
the intrinsic reward alone drives its APT agent). :class:`APTBonus` plugs this into
:class:`llmrl.rl.offpolicy.OffPolicyLoop` through its ``relabel`` hook.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmrl.rl.networks import mlp


@dataclass
class APTConfig:
    """Settings of the APT bonus; the defaults are ELLM's."""

    rep_dim: int = 512
    """Size of the learned representation z."""
    hidden: int = 1024
    """Hidden width of the representation, forward and inverse networks."""
    k: int = 12
    """Neighbours in the batch whose distances make a state's entropy estimate (itself included)."""
    clip: float = 1e-4
    """Normalised distances are reduced by this and clipped at 0."""
    learning_rate: float = 1e-4
    """Adam learning rate of the representation (forward and inverse models)."""

    def __post_init__(self) -> None:
        if min(self.rep_dim, self.hidden, self.k) < 1 or not self.learning_rate > 0 or self.clip < 0:
            raise ValueError("APT needs rep_dim, hidden, k >= 1, a positive learning_rate and clip >= 0")


class APT:
    """The representation, its ICM-style training, and the particle-based reward of a batch.

    ``features(obs)`` must map observations to the agent's encoder features (no gradient is
    taken through it); ``feature_dim`` is their size.
    """

    def __init__(self, features: Any, feature_dim: int, n_actions: int, config: APTConfig | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.config = c = config or APTConfig()
        self.features, self.n_actions, self.device = features, n_actions, torch.device(device)
        self.encoder = mlp(feature_dim, (c.hidden,), c.rep_dim).to(self.device)
        self.forward_model = mlp(c.rep_dim + n_actions, (c.hidden,), c.rep_dim).to(self.device)
        self.inverse_model = mlp(2 * c.rep_dim, (c.hidden,), n_actions).to(self.device)
        params = [*self.encoder.parameters(), *self.forward_model.parameters(), *self.inverse_model.parameters()]
        self.optim = torch.optim.Adam(params, lr=c.learning_rate)
        self.mean_distance = 0.0  # running mean of neighbour distances (ELLM's RMS keeps M from 0)
        self.count = 1e-4

    def _z(self, obs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            feats = self.features(obs.to(self.device))
        return self.encoder(feats)

    def update(self, batch: dict[str, torch.Tensor]) -> float:
        """One step of the forward + inverse losses on a replay batch; returns the loss."""
        z, z_next = self._z(batch["obs"]), self._z(batch["next_obs"])
        actions = batch["actions"].to(self.device)
        one_hot = F.one_hot(actions, self.n_actions).float()
        forward = (self.forward_model(torch.cat([z, one_hot], 1)) - z_next.detach()).pow(2).sum(1).mean()
        inverse = F.cross_entropy(self.inverse_model(torch.cat([z, z_next], 1)), actions)
        loss = forward + inverse
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        return float(loss.detach())

    @torch.no_grad()
    def reward(self, next_obs: torch.Tensor) -> torch.Tensor:
        """(B,) particle-based entropy reward of each state of the batch."""
        z = self._z(next_obs)
        k = min(self.config.k, len(z))
        dist = torch.cdist(z, z).topk(k, dim=1, largest=False).values  # self (0) included, as in ELLM
        batch_mean = float(dist.mean())
        n = dist.numel()
        total = self.count + n
        self.mean_distance += (batch_mean - self.mean_distance) * n / total
        self.count = total
        normalised = (dist / max(self.mean_distance, 1e-12) - self.config.clip).clamp(min=0.0)
        return torch.log1p(normalised.mean(dim=1))

    def state_dict(self) -> dict[str, Any]:
        return copy.deepcopy({"encoder": self.encoder.state_dict(), "forward": self.forward_model.state_dict(),
                              "inverse": self.inverse_model.state_dict(), "optim": self.optim.state_dict(),
                              "mean_distance": self.mean_distance, "count": self.count})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.encoder.load_state_dict(state["encoder"])
        self.forward_model.load_state_dict(state["forward"])
        self.inverse_model.load_state_dict(state["inverse"])
        self.optim.load_state_dict(state["optim"])
        self.mean_distance, self.count = float(state["mean_distance"]), float(state["count"])


class APTBonus:
    """APT as the intrinsic reward of :class:`llmrl.rl.offpolicy.OffPolicyLoop`: nothing is paid
    at collection; each sampled batch's returns are replaced by its APT rewards (``relabel``) and
    the representation trains on it (``learn``)."""

    def __init__(self, apt: APT) -> None:
        self.apt = apt

    def begin(self, infos: Any) -> None:
        pass

    def observe(self, step: Any, next_infos: Any) -> None:
        pass

    def ready(self) -> bool:
        return True

    def prepare(self) -> None:
        pass

    def reward(self, step: Any) -> np.ndarray:
        return np.zeros(len(step.actions), np.float32)

    def end_episode(self, i: int) -> None:
        pass

    def relabel(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**batch, "returns": self.apt.reward(batch["next_obs"]).to(batch["returns"].dtype).cpu()}

    def learn(self, batch: dict[str, torch.Tensor]) -> None:
        self.apt.update(batch)


def agent_features(q_network: nn.Module) -> Any:
    """The agent's encoder as APT's feature map (evaluated without gradients)."""
    return lambda obs: q_network.encoder(obs)
