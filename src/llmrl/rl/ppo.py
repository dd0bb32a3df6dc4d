"""PPO's pieces for a policy over action strings: advantages (GAE) and the clipped losses.

Written as plain functions over tensors so the update step of a trainer reads top to bottom:
GAE (Schulman et al. 2016, eq. 11-16), the clipped surrogate (Schulman et al. 2017, eq. 7), a
clipped value loss and an entropy bonus, as GLAM (Carta et al. 2023) uses them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llmrl.config import require_positive


@dataclass
class PPOConfig:
    """PPO's settings (Schulman et al. 2017), one set of names for the LM policy (GLAM) and for
    Symbolic-PPO (Stable-Baselines3); the defaults are GLAM's."""

    n_steps: int = 40
    """Steps each environment takes per rollout; one update per rollout (GLAM: 32 envs x 40)."""
    n_epochs: int = 4
    """Passes over each rollout."""
    minibatch_size: int = 64
    """Transitions per gradient step."""
    learning_rate: float = 1e-6
    """Adam step size (constant). GLAM fine-tunes the whole LM at 1e-6; LoRA needs ~1e-4."""
    adam_eps: float = 1e-5
    """Adam's epsilon (PPO2's and Stable-Baselines3's 1e-5)."""
    gamma: float = 0.99
    """Discount."""
    gae_lambda: float = 0.99
    """GAE's lambda (GLAM: 0.99)."""
    clip_range: float = 0.2
    """PPO's epsilon for the probability ratio (and the value clip)."""
    ent_coef: float = 0.01
    """Weight of the entropy bonus."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    max_grad_norm: float = 0.5
    """Gradients are clipped to this global norm."""

    def __post_init__(self) -> None:
        require_positive(self, "n_steps", "n_epochs", "minibatch_size", "learning_rate", "adam_eps", "clip_range",
                         "max_grad_norm")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.ent_coef < 0 or self.vf_coef < 0:
            raise ValueError(f"ent_coef and vf_coef must be >= 0, got {self.ent_coef}, {self.vf_coef}")


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float = 0.99,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns for a rollout of shape (T, n_envs).

    ``dones[t]`` is 1 where the episode ended at step t (the next state belongs to a new episode),
    so no value is bootstrapped across it. Returns (advantages, returns = advantages + values).
    """
    T = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(last_value)
    for t in reversed(range(T)):
        next_value = last_value if t == T - 1 else values[t + 1]
        alive = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * alive - values[t]  # TD error δ_t
        last = delta + gamma * lam * alive * last  # A_t = δ_t + γλ A_{t+1}
        adv[t] = last
    return adv, adv + values


@dataclass
class PPOLosses:
    total: torch.Tensor
    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor
    approx_kl: torch.Tensor
    clip_fraction: torch.Tensor


def ppo_losses(
    logp_all: torch.Tensor,
    actions: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    clip_range: float = 0.2,
    vf_coef: float = 0.5,
    ent_coef: float = 0.01,
    normalise_advantages: bool = True,
) -> PPOLosses:
    """PPO's loss for one minibatch.

    ``logp_all`` (B, A) are the current policy's log-probabilities over the A action strings;
    ``actions`` (B,) the actions taken; ``old_*`` come from the rollout.
    """
    logp = logp_all.gather(1, actions[:, None]).squeeze(1)
    if normalise_advantages and advantages.numel() > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    log_ratio = logp - old_logp
    ratio = log_ratio.exp()
    # Clipped surrogate: E[min(r A, clip(r, 1-ε, 1+ε) A)], maximised, so negated here.
    policy = -torch.min(ratio * advantages, ratio.clamp(1 - clip_range, 1 + clip_range) * advantages).mean()
    # Value loss, clipped around the rollout's values as in GLAM/PPO2.
    v_clipped = old_values + (values - old_values).clamp(-clip_range, clip_range)
    value = 0.5 * torch.max((values - returns) ** 2, (v_clipped - returns) ** 2).mean()
    entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
    total = policy + vf_coef * value - ent_coef * entropy
    with torch.no_grad():
        approx_kl = ((ratio - 1) - log_ratio).mean()  # Schulman's low-variance KL estimator
        clip_fraction = ((ratio - 1).abs() > clip_range).float().mean()
    return PPOLosses(total, policy, value, entropy, approx_kl, clip_fraction)
