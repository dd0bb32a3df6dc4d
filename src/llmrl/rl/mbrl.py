"""PETS: probabilistic ensembles with trajectory sampling (Chua et al. 2018, arXiv:1805.12114).

Model-based RL in two parts, written after mbrl-lib's PETS (Pineda et al. 2021,
github.com/facebookresearch/mbrl-lib, MIT: its names, defaults and loop; our own code):

* :class:`ProbabilisticEnsemble` — E Gaussian MLPs (SiLU) predicting the change of state
  s' − s (and, if asked, the reward) from inputs [s, a] standardised by the data's mean and std.
  Each member trains by Gaussian NLL on its own bootstrap of the data (PETS §4.1); its
  log-variance is soft-clamped between max and min log-variances that are learned with a small
  penalty 0.01·(Σ max − Σ min) (PETS appendix A.1). Training stops early when no member's MSE on
  held-out data improves by 1 % for ``patience`` epochs; the members with the lowest held-out MSE
  become the elites that plan (:func:`fit_ensemble`).
* MPC by trajectory sampling: every candidate action sequence is rolled through the model from
  the current state with P particles, all candidates and particles in one batch (no Python loop
  over candidates; :func:`imagine`). TS∞ gives each particle one elite member for the whole
  horizon, TS1 redraws members each step (mbrl-lib's ``random_model``), "expectation" averages
  the elites' Gaussians. :class:`CEMPlanner` optimises the sequence by the cross-entropy method
  (PETS §5; mbrl-lib ``CEMOptimizer``: α-smoothed elite mean and spread, warm start from the
  previous plan shifted by one step); :class:`RandomShootingPlanner` keeps the best of uniform
  sequences (the HF course's MPC). :class:`PETSAgent` replans at every step.

:func:`train_pets` runs mbrl-lib's PETS loop: random trials first, then trials of MPC, the
ensemble refitted on all data so far every 50 env steps (or once per trial); ``progress.csv`` logs
each trial's return against env steps, and a killed run resumes bit-exactly from its last trial
(all randomness comes from one seeded ``torch.Generator`` that is checkpointed; env resets are
seeded per trial).

Known rewards for planning take batched torch tensors (next_obs, action): :data:`REWARD_FNS`.
An :class:`ActionPrior` lets another component (an LM reading the task description) propose the
planner's initial mean — and spread — for each step of an episode.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmrl.envs import CARTPOLE_SWINGUP_ID
from llmrl.envs import cartpole_swingup as swingup
from llmrl.runs import PROGRESS_COLUMNS, RunFolder, env_seeds

RewardFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``reward(next_obs [..., obs_dim], action [..., act_dim]) -> [...]``, batched over every candidate."""
StepFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``step(obs [N, obs_dim], action [N, act_dim]) -> next_obs [N, obs_dim]``: known dynamics."""

PROPAGATIONS = ("ts_inf", "ts1", "expectation")
PLANNERS = ("cem", "random")
SAMPLINGS = ("clipped", "truncated")


# --------------------------------------------------------------------------- configuration
@dataclass
class PETSConfig:
    """Settings of one PETS run. Defaults follow mbrl-lib's ``pets_cartpole`` where it has one
    and the PETS paper otherwise; ``PRESETS`` names the exact mbrl-lib config and a CPU one."""

    # --- dynamics model
    ensemble_size: int = 5
    """Members of the probabilistic ensemble (PETS: 5; mbrl-lib's hydra config: 7)."""
    hidden_sizes: tuple[int, ...] = (200, 200, 200)
    """Hidden SiLU layers of every member (mbrl-lib's PETS notebook: 3×200; its hydra config 4×200)."""
    num_elites: int = 5
    """Members with the lowest held-out MSE that plan (mbrl-lib: 5 of 7; all of 5 here)."""
    learn_logvar_bounds: bool = True
    """Learn the soft clamps of the log-variance (PETS appendix A.1); mbrl-lib's config keeps them
    fixed at [-10, 0.5] ("so far this works better")."""
    learned_reward: bool = False
    """The ensemble also predicts the reward, and plans with it (a ``reward_fn`` given is then
    unused). Off: plan with a known reward function (mbrl-lib ``learned_rewards: false`` for
    cartpole); on is needed where none is known."""
    model_lr: float = 7.5e-4
    """Adam learning rate of the ensemble (mbrl-lib pets_cartpole: 7.5e-4)."""
    model_weight_decay: float = 3e-5
    """Adam weight decay of the ensemble (mbrl-lib pets_cartpole: 3e-5)."""
    model_batch_size: int = 256
    """Transitions per member per gradient step (mbrl-lib: 256)."""
    model_epochs: int = 25
    """Most epochs per fit (mbrl-lib ``num_epochs_train_model``: 25)."""
    train_every: int = 50
    """Refit the ensemble on all data every this many env steps of MPC trials (mbrl-lib
    ``freq_train_model``: 50); 0 refits once per trial, before it. Early fits see little data, so
    one fit per 200-step trial is too few gradient steps for the model to learn much."""
    patience: int = 5
    """Stop a fit after this many epochs without a 1 % gain in any member's held-out MSE
    (mbrl-lib pets_cartpole: 25, i.e. never before ``model_epochs``)."""
    validation_ratio: float = 0.1
    """Share of the data held out for early stopping and elite choice; 0 scores on the training
    data (mbrl-lib pets_cartpole: 0)."""
    # --- planner
    planner: str = "cem"
    """"cem" (cross-entropy method) or "random" (random shooting: best of uniform sequences)."""
    horizon: int = 15
    """Planning horizon in steps (mbrl-lib pets_cartpole: 15)."""
    cem_iterations: int = 5
    """CEM iterations per action (mbrl-lib: 5). Random shooting draws population × this many
    sequences, so both planners spend the same model calls."""
    population: int = 350
    """Candidate sequences per CEM iteration (mbrl-lib pets_cartpole: 350; its notebook 500)."""
    elite_ratio: float = 0.1
    """Share of the population whose mean and spread the next iteration samples around (mbrl-lib: 0.1)."""
    alpha: float = 0.1
    """Smoothing: new mean = α·old + (1 − α)·elite mean, likewise the spread (mbrl-lib: 0.1)."""
    sampling: str = "clipped"
    """"clipped": normal samples clipped to the action bounds, starting at std = half the range
    (mbrl-lib ``clipped_normal``); "truncated": normal truncated at ±2σ with σ shrunk to keep 2σ
    inside the bounds, starting at a quarter of the range (mbrl-lib's default)."""
    particles: int = 20
    """Model rollouts per candidate sequence; its value is their mean return (PETS, mbrl-lib: 20)."""
    propagation: str = "ts_inf"
    """"ts_inf": each particle keeps one elite member for the whole horizon (PETS TS∞); "ts1":
    members redrawn every step (mbrl-lib's ``random_model``, the config it ships); "expectation":
    the elites' means and log-variances averaged."""
    # --- loop
    trial_length: int = 200
    """Steps per trial (episode) (mbrl-lib pets_cartpole: 200)."""
    initial_trials: int = 1
    """Trials of uniform random actions before the first fit (mbrl-lib: one trial's worth)."""
    env_steps: int = 5000
    """Env steps of the whole run, counted in whole trials (mbrl-lib pets_cartpole: 5,000)."""
    seed: int = 0
    """Seeds the model's initialisation, bootstraps, random actions, the planner and env resets."""
    device: str = "cpu"
    """Torch device of the model and the planner."""

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        for name, allowed in (("planner", PLANNERS), ("propagation", PROPAGATIONS), ("sampling", SAMPLINGS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(allowed)}")
        if self.train_every < 0:
            raise ValueError(f"train_every must be >= 0 (0: once per trial), got {self.train_every}")
        for name in ("ensemble_size", "num_elites", "model_batch_size", "model_epochs", "patience", "horizon",
                     "cem_iterations", "population", "particles", "trial_length", "env_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ValueError(f"hidden_sizes needs at least one positive width, got {self.hidden_sizes}")
        if self.num_elites > self.ensemble_size:
            raise ValueError(f"num_elites ({self.num_elites}) exceeds ensemble_size ({self.ensemble_size}): "
                             "elites are chosen among the members; lower num_elites or raise ensemble_size")
        if self.initial_trials < 0:
            raise ValueError(f"initial_trials must be >= 0, got {self.initial_trials}")
        if not 0.0 < self.elite_ratio <= 1.0:
            raise ValueError(f"elite_ratio must lie in (0, 1], got {self.elite_ratio}: it is the share of "
                             "each CEM population kept as elites (mbrl-lib: 0.1)")
        if math.ceil(self.population * self.elite_ratio) < 2 and self.planner == "cem":
            raise ValueError(f"population × elite_ratio = {self.population * self.elite_ratio:g} leaves fewer than "
                             "2 elites, so CEM cannot estimate a spread: raise population or elite_ratio")
        if not 0.0 <= self.alpha < 1.0:
            raise ValueError(f"alpha must lie in [0, 1), got {self.alpha}: it is the weight of the old CEM "
                             "mean (1 would never move)")
        if not 0.0 <= self.validation_ratio < 1.0:
            raise ValueError(f"validation_ratio must lie in [0, 1), got {self.validation_ratio}")
        for name in ("model_lr",):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.model_weight_decay < 0:
            raise ValueError(f"model_weight_decay must be >= 0, got {self.model_weight_decay}")


PRESETS: dict[str, PETSConfig] = {
    # mbrl-lib conf/overrides/pets_cartpole.yaml + algorithm/pets.yaml + dynamics_model/
    # gaussian_mlp_ensemble.yaml: 7 members of 4×200 SiLU, 5 elites, fixed log-var bounds, no
    # held-out split, patience 25, truncated-normal CEM 5×350, H 15, 20 particles, TS1-style
    # propagation, 5k steps. (mbrl-lib refits every 50 steps; we refit once per trial.)
    "pets_cartpole": PETSConfig(ensemble_size=7, hidden_sizes=(200, 200, 200, 200), num_elites=5,
                                learn_logvar_bounds=False, validation_ratio=0.0, patience=25,
                                sampling="truncated", propagation="ts1"),
    # The PETS paper's choices at mbrl-lib's cartpole budget: 5 members of 3×200, TS∞.
    "paper": PETSConfig(),
    # A few minutes on 2 CPU cores (~40 ms per action): 3 members of 2×64, population 100 × 3
    # iterations, 10 particles; swings Pendulum up within 5 trials.
    "cpu": PETSConfig(ensemble_size=3, hidden_sizes=(64, 64), num_elites=3, model_epochs=10, patience=3,
                      population=100, cem_iterations=3, particles=10, env_steps=2000),
}


# --------------------------------------------------------------------------- known dynamics and rewards
def _rotate(cos: torch.Tensor, sin: torch.Tensor, angle: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of θ + angle from those of θ (no atan2, so θ never wraps)."""
    c, s = torch.cos(angle), torch.sin(angle)
    return cos * c - sin * s, sin * c + cos * s


def pendulum_step(obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Gymnasium Pendulum-v1's step (g = 10, m = l = 1, dt 0.05, |θ̇| ≤ 8, |u| ≤ 2) on (cos θ, sin θ, θ̇)."""
    cos, sin, theta_dot = obs.unbind(-1)
    u = action[..., 0].clamp(-2.0, 2.0)
    theta_dot = (theta_dot + (3 * 10.0 / 2 * sin + 3.0 * u) * 0.05).clamp(-8.0, 8.0)
    cos, sin = _rotate(cos, sin, theta_dot * 0.05)
    return torch.stack([cos, sin, theta_dot], -1)


def pendulum_reward(next_obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """−(θ² + 0.1·θ̇² + 0.001·u²), Pendulum-v1's reward, of the state reached. Gymnasium scores the
    state the step starts from: over a horizon the sums differ by the first and last state only."""
    cos, sin, theta_dot = next_obs.unbind(-1)
    theta = torch.atan2(sin, cos)
    return -(theta**2 + 0.1 * theta_dot**2 + 0.001 * action[..., 0].clamp(-2.0, 2.0) ** 2)


def cartpole_swingup_step(obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """One env step of :class:`llmrl.envs.cartpole_swingup.ContinuousCartPoleSwingUp` (its
    ``SUBSTEPS`` Euler steps) on observations (x, ẋ, cos θ, sin θ, θ̇), in torch."""
    x, x_dot, cos, sin, theta_dot = obs.unbind(-1)
    force = swingup.FORCE_MAG * action[..., 0].clamp(-1.0, 1.0)
    m_pole, half, dt = swingup.MASS_POLE, swingup.HALF_LENGTH, swingup.DT
    total = swingup.MASS_CART + m_pole
    for _ in range(swingup.SUBSTEPS):
        temp = (force + m_pole * half * theta_dot**2 * sin) / total
        theta_acc = (swingup.GRAVITY * sin - cos * temp) / (half * (4.0 / 3.0 - m_pole * cos**2 / total))
        x_acc = temp - m_pole * half * theta_acc * cos / total
        cos_next, sin_next = _rotate(cos, sin, dt * theta_dot)  # Euler: θ moves by the old θ̇
        x, x_dot, theta_dot = x + dt * x_dot, x_dot + dt * x_acc, theta_dot + dt * theta_acc
        cos, sin = cos_next, sin_next
    return torch.stack([x, x_dot, cos, sin, theta_dot], -1)


def cartpole_swingup_reward(next_obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """exp(−‖tip − (0, L)‖² / L²) − 0.01‖a‖², the PETS cartpole reward (:mod:`llmrl.envs.cartpole_swingup`)."""
    x, cos, sin = next_obs[..., 0], next_obs[..., 2], next_obs[..., 3]
    length = swingup.POLE_LENGTH
    squared_distance = (x + length * sin) ** 2 + (length * cos - length) ** 2
    return torch.exp(-squared_distance / length**2) - swingup.ACTION_COST * action.clamp(-1.0, 1.0).square().sum(-1)


def reacher_reward(next_obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """−‖fingertip − target‖ − ‖a‖², Gymnasium Reacher-v5's reward (both weights 1): the env scores
    the state after the step, and its observation ends with the fingertip's offset from the target
    in the plane (the two bodies share their height), so the reward is exact."""
    return -next_obs[..., 8:10].norm(dim=-1) - action.clamp(-1.0, 1.0).square().sum(-1)


REWARD_FNS: dict[str, RewardFn] = {"Pendulum-v1": pendulum_reward, CARTPOLE_SWINGUP_ID: cartpole_swingup_reward,
                                   "Reacher-v5": reacher_reward}
"""Known reward functions by env id, used by :func:`train_pets` when it is given none."""
TRUE_DYNAMICS: dict[str, StepFn] = {"Pendulum-v1": pendulum_step, CARTPOLE_SWINGUP_ID: cartpole_swingup_step}
"""Known dynamics by env id: plan with them (:class:`PETSAgent`) to bound what a learned model can reach."""


# --------------------------------------------------------------------------- the ensemble
class EnsembleLinear(nn.Module):
    """E independent linear layers applied as one batched matmul: [E, B, in] → [E, B, out]."""

    def __init__(self, members: int, in_dim: int, out_dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        std = 1 / (2 * math.sqrt(in_dim))  # mbrl-lib truncated_normal_init: N(0, std) cut at ±2 std, zero bias
        self.weight = nn.Parameter(nn.init.trunc_normal_(torch.empty(members, in_dim, out_dim), 0.0, std,
                                                         -2 * std, 2 * std, generator=generator))
        self.bias = nn.Parameter(torch.zeros(members, 1, out_dim))

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        if members is None:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.baddbmm(self.bias[members], x, self.weight[members])


class ProbabilisticEnsemble(nn.Module):
    """E Gaussian MLPs over normalised [s, a] predicting N(mean, exp(logvar)) of [s' − s (, r)].

    ``forward`` takes inputs [E or K, B, obs_dim + act_dim] (one slice per member, or per member
    in ``members``); :meth:`predict` takes a flat batch and a member index per row.
    """

    def __init__(self, obs_dim: int, act_dim: int, *, ensemble_size: int = 5,
                 hidden_sizes: Sequence[int] = (200, 200, 200), num_elites: int | None = None,
                 learned_reward: bool = False, learn_logvar_bounds: bool = True,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.learned_reward = obs_dim, act_dim, learned_reward
        self.ensemble_size = ensemble_size
        self.num_elites = num_elites or ensemble_size
        in_dim, self.out_dim = obs_dim + act_dim, obs_dim + int(learned_reward)
        widths = [in_dim, *hidden_sizes]
        self.hidden = nn.ModuleList(EnsembleLinear(ensemble_size, a, b, generator) for a, b in zip(widths, widths[1:]))
        self.head = EnsembleLinear(ensemble_size, widths[-1], 2 * self.out_dim, generator)
        # mbrl-lib GaussianMLP: bounds start at [-10, 0.5]
        self.max_logvar = nn.Parameter(torch.full((1, self.out_dim), 0.5), requires_grad=learn_logvar_bounds)
        self.min_logvar = nn.Parameter(torch.full((1, self.out_dim), -10.0), requires_grad=learn_logvar_bounds)
        self.register_buffer("input_mean", torch.zeros(1, in_dim))
        self.register_buffer("input_std", torch.ones(1, in_dim))
        self.register_buffer("elites", torch.arange(self.num_elites))

    def fit_normaliser(self, inputs: torch.Tensor) -> None:
        """Standardise inputs with these [s, a] rows' mean and std (a constant column keeps std 1)."""
        std = inputs.std(0, keepdim=True)
        self.input_mean.copy_(inputs.mean(0, keepdim=True))
        self.input_std.copy_(torch.where(std < 1e-5, torch.ones_like(std), std))

    def forward(self, inputs: torch.Tensor, members: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = (inputs - self.input_mean) / self.input_std
        for layer in self.hidden:
            x = F.silu(layer(x, members))
        mean, logvar = self.head(x, members).chunk(2, dim=-1)
        # Soft clamps keep the variance inside [min, max] with gradients everywhere (PETS appendix A.1).
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar

    def nll_loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Gaussian NLL (without constants) averaged over rows and outputs, summed over members,
        plus 0.01·(Σ max_logvar − Σ min_logvar) so the learned bounds stay tight (mbrl-lib)."""
        mean, logvar = self(inputs)
        nll = ((mean - targets) ** 2 * torch.exp(-logvar) + logvar).mean((1, 2)).sum()
        return nll + 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())

    @torch.no_grad()
    def member_mse(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Each member's mean squared error of its mean on the same rows [B, in] → [E]."""
        mean, _ = self(inputs.expand(self.ensemble_size, *inputs.shape))
        return ((mean - targets) ** 2).mean((1, 2))

    def predict(self, obs: torch.Tensor, action: torch.Tensor,
                members: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance [N, out_dim] of row i under elite ``members[i]`` (an index into
        ``elites``), or averaged over the elites when ``members`` is None ("expectation")."""
        x = torch.cat([obs, action], -1)
        k, n = len(self.elites), len(x)
        if members is None:
            mean, logvar = self(x.expand(k, n, -1), self.elites)
            return mean.mean(0), logvar.mean(0)
        counts = torch.bincount(members, minlength=k)
        if bool((counts == n // k).all()) and n % k == 0:
            # Equal groups: sort rows by member, run each member on its own rows only.
            order = torch.argsort(members, stable=True)
            mean, logvar = self(x[order].view(k, n // k, -1), self.elites)
            inverse = torch.empty_like(order)
            inverse[order] = torch.arange(n, device=order.device)
            return mean.reshape(n, -1)[inverse], logvar.reshape(n, -1)[inverse]
        rows = torch.arange(n, device=x.device)  # unequal groups: every elite on every row, then pick
        mean, logvar = self(x.expand(k, n, -1), self.elites)
        return mean[members, rows], logvar[members, rows]


def assign_members(n: int, num_members: int, generator: torch.Generator,
                   device: str | torch.device = "cpu") -> torch.Tensor:
    """A random member index for each of ``n`` particles, every member taking n / num_members of
    them (as mbrl-lib's propagation, which keeps the per-member batches equal)."""
    return (torch.randperm(n, generator=generator, device=device) % num_members).to(device)


def fit_ensemble(model: ProbabilisticEnsemble, optimizer: torch.optim.Optimizer, obs: torch.Tensor,
                 action: torch.Tensor, next_obs: torch.Tensor, reward: torch.Tensor | None = None, *,
                 epochs: int = 25, batch_size: int = 256, patience: int = 5, validation_ratio: float = 0.1,
                 generator: torch.Generator) -> dict[str, Any]:
    """Fit ``model`` on transitions (rows of tensors) by Gaussian NLL on s' − s (and r if the model
    learns it), each member on its own bootstrap of the training split; keep the weights of the
    epoch whose held-out MSE was best and make the ``num_elites`` lowest-MSE members the elites.

    Returns the per-epoch ``train_nll`` and ``val_mse`` (mean over members), ``epochs`` run and the
    elites' held-out MSE ``elite_mse``.
    """
    inputs = torch.cat([obs, action], -1)
    targets = next_obs - obs
    if model.learned_reward:
        if reward is None:
            raise ValueError("this ensemble learns the reward: pass the rewards to fit_ensemble")
        targets = torch.cat([targets, reward.reshape(-1, 1)], -1)
    n = len(inputs)
    n_val = int(n * validation_ratio)
    split = torch.randperm(n, generator=generator, device=inputs.device)
    train_idx = split[n_val:]
    val_idx = split[:n_val] if n_val else train_idx  # mbrl-lib with validation_ratio 0: score on the training data
    model.fit_normaliser(inputs)  # mbrl-lib update_normalizer: all data, before every fit
    n_train, e = len(train_idx), model.ensemble_size
    boot = train_idx[torch.randint(n_train, (e, n_train), generator=generator, device=inputs.device)]

    best = model.member_mse(inputs[val_idx], targets[val_idx])
    best_state, since, history = None, 0, {"train_nll": [], "val_mse": []}
    for _ in range(epochs):
        shuffled = boot.gather(1, torch.argsort(torch.rand(e, n_train, generator=generator, device=inputs.device), 1))
        losses = []
        for start in range(0, n_train, batch_size):
            rows = shuffled[:, start:start + batch_size]  # [E, B]: member i trains on its own rows
            loss = model.nll_loss(inputs[rows], targets[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        score = model.member_mse(inputs[val_idx], targets[val_idx])
        history["train_nll"].append(torch.stack(losses).mean().item() / e)
        history["val_mse"].append(score.mean().item())
        if ((best - score) / best.abs().clamp_min(1e-12) > 0.01).any():  # mbrl-lib: 1 % relative, any member
            best, best_state, since = torch.minimum(best, score), copy.deepcopy(model.state_dict()), 0
        else:
            since += 1
            if since >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.elites.copy_(torch.argsort(best)[: model.num_elites])
    return {**history, "epochs": len(history["train_nll"]), "elite_mse": best[model.elites].mean().item()}


# --------------------------------------------------------------------------- imagined rollouts
@dataclass
class Imagined:
    """Rollouts of P candidate sequences × R particles over H steps."""

    states: torch.Tensor
    """[P, R, H + 1, obs_dim]: the start state, then each predicted state ([P, R, 1, obs_dim], the
    last state only, with ``keep_states=False``)."""
    rewards: torch.Tensor
    """[P, R, H]."""
    members: torch.Tensor | None
    """[P, R, H]: the elite (index into ``model.elites``) behind each step; None for expectation
    or known dynamics."""

    def returns(self) -> torch.Tensor:
        """[P]: each sequence's return, averaged over its particles."""
        return self.rewards.sum(-1).mean(-1)


def imagine(model: ProbabilisticEnsemble | StepFn, reward_fn: RewardFn | None, obs: torch.Tensor,
            actions: torch.Tensor, *, particles: int = 20, propagation: str = "ts_inf",
            generator: torch.Generator, keep_states: bool = True) -> Imagined:
    """Roll every sequence in ``actions`` [P, H, A] from ``obs`` [obs_dim], all P × particles rows
    in one batch per step. ``model`` is an ensemble (sampled next states) or a known step function
    (one deterministic particle is enough: pass ``particles=1``)."""
    p, h, _ = actions.shape
    n = p * particles
    state = obs.reshape(1, -1).expand(n, -1)
    ensemble = isinstance(model, ProbabilisticEnsemble)
    members = None
    if ensemble and propagation == "ts_inf":
        members = assign_members(n, len(model.elites), generator, obs.device)  # fixed for the horizon (TS∞)
    states, rewards, used = [state], [], []
    for t in range(h):
        a = actions[:, t].repeat_interleave(particles, 0)  # rows p·R … p·R + R − 1 belong to sequence p
        if ensemble:
            if propagation == "ts1":
                members = assign_members(n, len(model.elites), generator, obs.device)
            mean, logvar = model.predict(state, a, members)
            noise = torch.randn(mean.shape, generator=generator, device=mean.device)
            sample = mean + torch.exp(0.5 * logvar) * noise
            next_state = state + sample[:, : model.obs_dim]
            r = sample[:, model.obs_dim] if model.learned_reward else reward_fn(next_state, a)  # type: ignore[misc]
            if members is not None:
                used.append(members)
        else:
            next_state = model(state, a)
            r = reward_fn(next_state, a)  # type: ignore[misc]
        rewards.append(r)
        state = next_state
        if keep_states:
            states.append(state)
    stacked = torch.stack(states, 1) if keep_states else state.unsqueeze(1)
    return Imagined(states=stacked.view(p, particles, -1, obs.shape[-1]),
                    rewards=torch.stack(rewards, 1).view(p, particles, h),
                    members=torch.stack(used, 1).view(p, particles, h) if used else None)


# --------------------------------------------------------------------------- planners
Objective = Callable[[torch.Tensor], torch.Tensor]
"""Candidate sequences [P, H, A] → their values [P] (higher is better)."""


@dataclass
class CEMPlanner:
    """Cross-entropy method over action sequences (mbrl-lib ``CEMOptimizer`` with
    ``return_mean_elites``): sample around (mean, std), keep the best ``elite_ratio``, move the
    mean and spread towards theirs with smoothing α; the plan is the final mean."""

    low: torch.Tensor
    high: torch.Tensor
    iterations: int = 5
    population: int = 350
    elite_ratio: float = 0.1
    alpha: float = 0.1
    sampling: str = "clipped"

    def default_std(self) -> torch.Tensor:
        """[A]: half the range for clipped sampling, a quarter for truncated (mbrl-lib var = range² / 16)."""
        return (self.high - self.low) / (2 if self.sampling == "clipped" else 4)

    def sample(self, mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """[population, H, A] candidates inside the bounds."""
        shape = (self.population, *mean.shape)
        if self.sampling == "clipped":
            z = torch.randn(shape, generator=generator, device=mean.device)
            return torch.minimum(torch.maximum(mean + std * z, self.low), self.high)
        # Truncated at ±2σ, σ no wider than half the distance to the nearer bound (mbrl-lib), drawn
        # by the inverse CDF in one pass instead of mbrl-lib's resampling loop.
        std = torch.minimum(std, torch.minimum(mean - self.low, self.high - mean) / 2)
        lo, hi = _PHI_MINUS_2, 1 - _PHI_MINUS_2
        u = lo + (hi - lo) * torch.rand(shape, generator=generator, device=mean.device)
        return mean + std * torch.special.ndtri(u)

    def plan(self, objective: Objective, mean: torch.Tensor, std: torch.Tensor,
             generator: torch.Generator) -> torch.Tensor:
        """The optimised sequence [H, A], from initial ``mean`` and ``std`` [H, A]."""
        n_elite = math.ceil(self.population * self.elite_ratio)
        for _ in range(self.iterations):
            candidates = self.sample(mean, std, generator)
            values = torch.nan_to_num(objective(candidates), nan=-math.inf)
            elite = candidates[values.topk(n_elite).indices]
            mean = self.alpha * mean + (1 - self.alpha) * elite.mean(0)
            if self.sampling == "clipped":  # mbrl-lib smooths the std here, the variance below
                std = self.alpha * std + (1 - self.alpha) * elite.std(0)
            else:
                std = torch.sqrt(self.alpha * std**2 + (1 - self.alpha) * elite.var(0))
        return mean


_PHI_MINUS_2 = 0.5 * math.erfc(2 / math.sqrt(2))  # P(Z < −2)


@dataclass
class RandomShootingPlanner:
    """Random shooting: ``population`` uniform sequences inside the bounds; the plan is the best one
    (the MPC of the HF course's model-based unit). Ignores the initial mean and std."""

    low: torch.Tensor
    high: torch.Tensor
    population: int = 1750

    def plan(self, objective: Objective, mean: torch.Tensor, std: torch.Tensor,
             generator: torch.Generator) -> torch.Tensor:
        u = torch.rand((self.population, *mean.shape), generator=generator, device=mean.device)
        candidates = self.low + (self.high - self.low) * u
        return candidates[torch.nan_to_num(objective(candidates), nan=-math.inf).argmax()]


# --------------------------------------------------------------------------- the agent
@dataclass
class ActionPrior:
    """A proposal for the planner's starting point at each step of an episode (from an LM reading
    the task, a scripted controller, a previous policy): at step t the first plan starts from
    ``mean[t : t + H]`` and every later plan takes ``mean[t + H − 1]`` for the step it appends;
    steps past the end take the default (mid-range mean, default spread)."""

    mean: np.ndarray
    """[T, act_dim] proposed actions (clipped to the bounds)."""
    std: np.ndarray | None = None
    """[T, act_dim] initial CEM spread per step; None keeps the default."""


class PETSAgent:
    """Model-predictive control: at every step, plan a sequence with ``model`` and take its first action.

    Args:
        model: a :class:`ProbabilisticEnsemble`, or a known step function (:data:`TRUE_DYNAMICS`).
        reward_fn: reward of (next_obs, action) batches; None if the ensemble learns the reward.
        config: planner settings (horizon, planner, population, particles, propagation ...).
        action_low, action_high: the action bounds (``env.action_space.low/high``).
        generator: all planning randomness; seeded from ``config.seed`` if None.
    """

    def __init__(self, model: ProbabilisticEnsemble | StepFn, reward_fn: RewardFn | None, config: PETSConfig,
                 action_low: Sequence[float] | np.ndarray, action_high: Sequence[float] | np.ndarray,
                 *, generator: torch.Generator | None = None) -> None:
        if reward_fn is None and not (isinstance(model, ProbabilisticEnsemble) and model.learned_reward):
            raise ValueError("no reward to plan with: pass reward_fn (see REWARD_FNS) or use an ensemble with "
                             "learned_reward=True")
        self.model, self.reward_fn, self.config = model, reward_fn, config
        device = config.device
        self.low = torch.as_tensor(np.asarray(action_low, np.float32), device=device).reshape(-1)
        self.high = torch.as_tensor(np.asarray(action_high, np.float32), device=device).reshape(-1)
        if not (torch.isfinite(self.low).all() and torch.isfinite(self.high).all() and (self.low < self.high).all()):
            raise ValueError(f"PETS plans inside finite action bounds with low < high; got {action_low}, {action_high}")
        self.generator = generator or torch.Generator(device=device).manual_seed(config.seed)
        self.planner: CEMPlanner | RandomShootingPlanner
        if config.planner == "cem":
            self.planner = CEMPlanner(self.low, self.high, config.cem_iterations, config.population,
                                      config.elite_ratio, config.alpha, config.sampling)
        else:
            self.planner = RandomShootingPlanner(self.low, self.high, config.population * config.cem_iterations)
        self.particles = config.particles if isinstance(model, ProbabilisticEnsemble) else 1
        self.reset()

    def reset(self, action_prior: ActionPrior | None = None) -> None:
        """Start an episode: forget the previous plan, take ``action_prior`` (if any) as the starting point."""
        self.t, self.previous_plan = 0, None
        self.prior_mean = self.prior_std = None
        if action_prior is not None:
            mean = np.asarray(action_prior.mean, np.float32).reshape(len(action_prior.mean), -1)
            if mean.shape[1] != len(self.low):
                raise ValueError(f"ActionPrior.mean has {mean.shape[1]} action dimension(s), the env {len(self.low)}: "
                                 "give one row [act_dim] per step of the episode")
            mean_t = torch.as_tensor(mean, device=self.low.device)
            self.prior_mean = torch.minimum(torch.maximum(mean_t, self.low), self.high)
            if action_prior.std is not None:
                std = np.asarray(action_prior.std, np.float32).reshape(mean.shape)
                if (std <= 0).any():
                    raise ValueError("ActionPrior.std must be positive everywhere")
                self.prior_std = torch.as_tensor(std, device=self.low.device)

    def _window(self, prior: torch.Tensor | None, default: torch.Tensor, start: int, length: int) -> torch.Tensor:
        """prior[start : start + length] padded with ``default`` rows."""
        rows = default.expand(length, -1).clone()
        if prior is not None and start < len(prior):
            part = prior[start : start + length]
            rows[: len(part)] = part
        return rows

    def initial(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The planner's starting (mean, std) [H, A] at this step: the previous plan shifted by one
        step (warm start), or the prior, or mid-range with the planner's default spread."""
        h = self.config.horizon
        mid = (self.low + self.high) / 2
        default_std = self.planner.default_std() if isinstance(self.planner, CEMPlanner) else (self.high - self.low) / 2
        std = self._window(self.prior_std, default_std, self.t, h)
        if self.previous_plan is None:
            return self._window(self.prior_mean, mid, self.t, h), std
        tail = self._window(self.prior_mean, mid, self.t + h - 1, 1)
        return torch.cat([self.previous_plan[1:], tail]), std

    @torch.no_grad()
    def plan(self, obs: np.ndarray) -> torch.Tensor:
        """The optimised action sequence [H, A] from ``obs``."""
        state = torch.as_tensor(np.asarray(obs, np.float32), device=self.low.device)

        def objective(candidates: torch.Tensor) -> torch.Tensor:
            return imagine(self.model, self.reward_fn, state, candidates, particles=self.particles,
                           propagation=self.config.propagation, generator=self.generator,
                           keep_states=False).returns()

        mean, std = self.initial()
        return self.planner.plan(objective, mean, std, self.generator)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Plan from ``obs`` and return the plan's first action (float32, inside the bounds)."""
        plan = self.plan(obs)
        self.previous_plan, self.t = plan, self.t + 1
        return plan[0].cpu().numpy().astype(np.float32)


# --------------------------------------------------------------------------- the PETS loop
@dataclass
class PETSResult:
    """What :func:`train_pets` returns: the final agent and one entry per trial."""

    agent: PETSAgent
    trial_returns: list[float] = field(default_factory=list)
    trial_env_steps: list[int] = field(default_factory=list)
    """Cumulative env steps at the end of each trial."""
    out: Path | None = None


PROGRESS = (*PROGRESS_COLUMNS, "trial", "random_trial", "model_nll", "model_val_mse", "fit_epochs", "plan_ms")
"""progress.csv: llmrl's online columns (``mean_return`` is the trial's return) and PETS's own."""
_RESUMABLE = ("env_steps",)  # a resumed run may extend its budget


def train_pets(config: PETSConfig, env_id: str, reward_fn: RewardFn | None = None, *,
               out_dir: str | os.PathLike[str] | None = None, resume: bool = False,
               progress: Callable[[int, dict[str, Any]], None] | None = None,
               action_prior: ActionPrior | None = None) -> PETSResult:
    """PETS on ``env_id`` (mbrl-lib ``algorithms/pets.py``): ``config.initial_trials`` trials of
    uniform random actions, then ``trial_length``-step trials with MPC until ``config.env_steps``,
    refitting the ensemble on all data so far every ``config.train_every`` env steps (or before
    each trial). Trials are episodes reset with seeds ``seed · 10000 + trial``; a trial ends early
    only if the env terminates.

    ``reward_fn`` defaults to the env's entry in :data:`REWARD_FNS`; without one, set
    ``config.learned_reward``. ``action_prior`` starts the planner of every MPC trial.
    With ``out_dir`` the run writes config.json, progress.csv (a row per trial) and
    checkpoints/latest.pt after every trial, and ``resume=True`` continues a killed run exactly.
    ``progress(trial, row)`` is called with every row, after that trial's checkpoint.
    """
    import gymnasium as gym

    reward_fn = reward_fn or (None if config.learned_reward else REWARD_FNS.get(env_id))
    if reward_fn is None and not config.learned_reward:
        raise ValueError(f"no known reward function for {env_id!r} (known: {', '.join(REWARD_FNS)}): pass "
                         "reward_fn(next_obs, action) or set learned_reward=True")
    env = gym.make(env_id, max_episode_steps=config.trial_length)
    space = env.action_space
    if not isinstance(space, gym.spaces.Box) or not isinstance(env.observation_space, gym.spaces.Box):
        raise ValueError(f"PETS needs Box observations and actions; {env_id} has {env.observation_space} and {space}")
    obs_dim, act_dim = env.observation_space.shape[0], space.shape[0]

    device = config.device
    generator = torch.Generator(device=device).manual_seed(config.seed)
    model = ProbabilisticEnsemble(obs_dim, act_dim, ensemble_size=config.ensemble_size,
                                  hidden_sizes=config.hidden_sizes, num_elites=config.num_elites,
                                  learned_reward=config.learned_reward,
                                  learn_logvar_bounds=config.learn_logvar_bounds, generator=generator).to(device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.model_lr,
                                 weight_decay=config.model_weight_decay)
    agent = PETSAgent(model, reward_fn, config, space.low, space.high, generator=generator)
    data = _Transitions(obs_dim, act_dim)
    result = PETSResult(agent)
    trial, env_steps, episodes, wall_offset, fits_done = 0, 0, 0, 0.0, 0

    folder = log = None
    if out_dir is not None:
        folder = RunFolder(out_dir, "pets", config, resume=resume, may_change=_RESUMABLE,
                           identity={"label": f"pets-{config.planner}", "env_id": env_id, "seed": config.seed})
        ckpt = folder.load_checkpoint()
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            generator.set_state(ckpt["generator"])
            data = _Transitions.from_arrays(ckpt["data"])
            trial, env_steps, episodes, wall_offset = ckpt["trial"], ckpt["env_steps"], ckpt["trial"], ckpt["wall_s"]
            fits_done = ckpt["fits"]
            result.trial_returns, result.trial_env_steps = ckpt["trial_returns"], ckpt["trial_env_steps"]
        log = folder.progress(PROGRESS, key="env_steps", resume_at=env_steps, tensorboard=False)
        result.out = folder.path

    t0 = time.perf_counter()
    fits = [fits_done]  # model fits so far (a list: fit_due counts into it)
    last_fit: dict[str, Any] = {}

    def fit_due(step: int, step_in_trial: int) -> None:
        """Refit before this MPC step if it is due (every ``train_every`` env steps, or per trial)."""
        due = step_in_trial == 0 if config.train_every == 0 else step % config.train_every == 0
        if due or fits[0] == 0:  # never plan with an unfitted model when there is data
            if len(data):
                last_fit.clear()
                last_fit.update(fit_ensemble(model, optimizer, *data.tensors(device), epochs=config.model_epochs,
                                             batch_size=config.model_batch_size, patience=config.patience,
                                             validation_ratio=config.validation_ratio, generator=generator))
                fits[0] += 1

    try:
        while env_steps < config.env_steps:
            random_trial = trial < config.initial_trials
            last_fit.clear()
            t_trial = time.perf_counter()
            episode_return, length, plan_s = _run_trial(
                env, agent, data, None if random_trial else fit_due, generator, start_step=env_steps,
                seed=env_seeds(config.seed, 1, stride=10_000, offset=trial)[0], action_prior=action_prior)
            trial, env_steps, episodes = trial + 1, env_steps + length, episodes + 1
            result.trial_returns.append(episode_return)
            result.trial_env_steps.append(env_steps)
            wall = wall_offset + time.perf_counter() - t0
            row = {"env_steps": env_steps, "updates": fits[0], "wall_s": wall, "episodes": episodes,
                   "mean_return": episode_return, "mean_length": length,
                   "steps_per_s": length / max(time.perf_counter() - t_trial, 1e-9), "trial": trial,
                   "random_trial": int(random_trial), "model_nll": last_fit["train_nll"][-1] if last_fit else None,
                   "model_val_mse": last_fit.get("elite_mse"), "fit_epochs": last_fit.get("epochs"),
                   "plan_ms": None if random_trial else 1000 * plan_s / max(length, 1)}
            if folder is not None:
                folder.save_checkpoint(dict(
                    trial=trial, env_steps=env_steps, fits=fits[0], wall_s=wall, model=model.state_dict(),
                    optimizer=optimizer.state_dict(), generator=generator.get_state(), data=data.arrays(),
                    trial_returns=result.trial_returns, trial_env_steps=result.trial_env_steps))
                log.write(row)  # type: ignore[union-attr]
            if progress is not None:
                progress(trial, row)
    finally:
        env.close()
        if log is not None:
            log.close()
    if folder is not None:
        folder.finish({"trials": trial, "env_steps": env_steps, "final_return": result.trial_returns[-1],
                       "best_return": max(result.trial_returns)})
    return result


def _run_trial(env: Any, agent: PETSAgent, data: _Transitions, fit_due: Callable[[int, int], None] | None,
               generator: torch.Generator, *, start_step: int, seed: int,
               action_prior: ActionPrior | None) -> tuple[float, int, float]:
    """One episode with MPC (``fit_due`` called before each step) or, with ``fit_due=None``,
    uniform random actions; its transitions are appended to ``data``. Returns (return, length,
    seconds spent planning)."""
    obs, _ = env.reset(seed=seed)
    agent.reset(action_prior)
    total, length, plan_s, done = 0.0, 0, 0.0, False
    low, high = agent.low.cpu(), agent.high.cpu()
    while not done:
        if fit_due is None:  # drawn from the run's generator, so a resumed run draws the same actions
            u = torch.rand(low.shape, generator=generator, device=generator.device).cpu()
            action = (low + (high - low) * u).numpy()
        else:
            fit_due(start_step + length, length)
            t = time.perf_counter()
            action = agent.act(obs)
            plan_s += time.perf_counter() - t
        next_obs, reward, terminated, truncated, _ = env.step(action)
        data.add(obs, action, float(reward), next_obs)
        total, length, obs, done = total + float(reward), length + 1, next_obs, terminated or truncated
    return total, length, plan_s


class _Transitions:
    """The run's growing dataset of (s, a, r, s') rows, as numpy arrays for checkpoints."""

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        self.rows: dict[str, list[np.ndarray]] = {"obs": [], "action": [], "next_obs": [], "reward": []}
        self.dims = {"obs": obs_dim, "action": act_dim, "next_obs": obs_dim, "reward": None}

    def __len__(self) -> int:
        return len(self.rows["obs"])

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray) -> None:
        for key, value in (("obs", obs), ("action", action), ("next_obs", next_obs), ("reward", reward)):
            self.rows[key].append(np.asarray(value, np.float32))

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.stack(v) if v else np.zeros((0,) + ((d,) if d else ()), np.float32)
                for (k, v), d in zip(self.rows.items(), self.dims.values())}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> _Transitions:
        data = cls(arrays["obs"].shape[1], arrays["action"].shape[1])
        data.rows = {k: list(v) for k, v in arrays.items()}
        return data

    def tensors(self, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(obs, action, next_obs, reward) — the argument order of :func:`fit_ensemble`."""
        a = self.arrays()
        obs, action, next_obs, reward = (torch.as_tensor(a[k], device=device)
                                         for k in ("obs", "action", "next_obs", "reward"))
        return obs, action, next_obs, reward
