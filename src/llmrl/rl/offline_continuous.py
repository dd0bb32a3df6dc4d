"""Offline RL for continuous actions: behaviour cloning, TD3+BC, IQL and CQL.

Written after CORL's single-file implementations (Tarasov et al. 2023, "CORL: Research-oriented
Deep Offline Reinforcement Learning Library", github.com/corl-team/CORL, Apache-2.0): our own
code, carrying over CORL's D4RL-locomotion defaults (see ``PRESETS``). The four algorithms:

* ``bc``     — behaviour cloning: a tanh MLP regresses the data action by mean squared error
  (CORL ``any_percent_bc.py`` with ``frac=1.0``, i.e. all of the data).
* ``td3_bc`` — TD3+BC (Fujimoto & Gu 2021, "A Minimalist Approach to Offline RL"): TD3's twin
  critics, target-policy smoothing and delayed actor updates; the actor maximises
  λ·Q(s, π(s)) − (π(s) − a)² with λ = α / mean|Q| (CORL ``td3_bc.py``).
* ``iql``    — Implicit Q-Learning (Kostrikov et al. 2022): V by expectile regression on the
  target Q over data actions, Q by TD towards r + γV(s'), and the actor by advantage-weighted
  regression with weights exp(β·A) clipped at 100; Gaussian or deterministic actor, cosine-decayed
  actor learning rate (CORL ``iql.py``).
* ``cql``    — Conservative Q-Learning on SAC (Kumar et al. 2020, CQL(H)): a tanh-Gaussian actor
  with automatic entropy tuning (target −act_dim); each critic also minimises
  α·(logsumexp over sampled actions − Q(s, a_data)), the samples being uniform actions and the
  policy's actions at s and s', importance-weighted (CORL ``cql.py``, after young-geng/CQL).

All four work in a normalised action space [−1, 1]^act_dim (``action_low``/``action_high`` of the
config map onto it) and, by default, on standardised states (s − mean) / (std + 1e-3) with the
data's statistics, as CORL does; :class:`OfflineContinuousAgent` undoes both, so ``act`` takes raw
observations and returns actions within the bounds.

``train_offline_continuous(config, data)`` samples every batch from pre-built tensors with one
index tensor (no per-transition Python). With ``out_dir`` it writes ``config.json``,
``progress.csv``, ``checkpoints/latest.pt`` (atomic) and ``agent.pt``; ``resume=True`` continues a
killed run bit-exactly (all randomness comes from one seeded ``torch.Generator`` that is
checkpointed). :func:`evaluate_returns` rolls any object with ``act(obs)`` in a Gymnasium env.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmrl.data.episodes import Transitions
from llmrl.rl.networks import mlp
from llmrl.runs import RunFolder, atomic_torch_save

ALGOS = ("bc", "td3_bc", "iql", "cql")
STATE_STD_EPS = 1e-3  # CORL compute_mean_std: std + 1e-3
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # CORL's clamp of Gaussian log-std (IQL and CQL actors)


# --------------------------------------------------------------------------- configuration
@dataclass
class OfflineContinuousConfig:
    """Settings of one continuous-action offline-RL run. Start from ``PRESETS[algo]`` (CORL's
    D4RL-locomotion values) and set the action bounds of your environment."""

    algo: str = "td3_bc"
    """Algorithm: "bc", "td3_bc", "iql" or "cql"."""
    action_low: tuple[float, ...] = (-1.0,)
    """Lower action bound per dimension (one value is used for every dimension). Take it from the
    env: ``action_low=env.action_space.low``. D4RL locomotion's bounds are [-1, 1]."""
    action_high: tuple[float, ...] = (1.0,)
    """Upper action bound per dimension (one value is used for every dimension)."""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden layers (ReLU) of the actor and of every critic (CORL: 256-256; CQL: 256-256-256)."""
    batch_size: int = 256
    """Transitions per gradient step (CORL: 256)."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor (CORL: 3e-4; CQL 3e-5)."""
    critic_lr: float = 3e-4
    """Adam learning rate of the Q-functions and of IQL's V (CORL: 3e-4)."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak rate of the target networks: target ← τ·online + (1 − τ)·target (CORL: 0.005)."""
    gradient_steps: int = 100_000
    """Gradient steps. CORL runs 1M; on 2 CPU cores 10k-100k is the practical range."""
    seed: int = 0
    """Seeds the network initialisation, the batch sampler and every noise sample."""
    normalize_states: bool = True
    """Standardise observations with the data's mean and std + 1e-3 (CORL ``normalize``)."""
    reward_scale: float = 1.0
    """Rewards are trained on as ``reward_scale · r + reward_bias`` (CORL's CQL options; returns of
    hundreds make Q-values of thousands — a smaller scale can steady the critics)."""
    reward_bias: float = 0.0
    """See ``reward_scale``."""
    # --- TD3+BC
    td3_alpha: float = 2.5
    """td3_bc: α, the weight of Q against the BC term; λ = α / mean|Q| (paper and CORL: 2.5)."""
    policy_noise: float = 0.2
    """td3_bc: std of the target-policy smoothing noise, as a fraction of the action half-range."""
    noise_clip: float = 0.5
    """td3_bc: the smoothing noise is clipped to ±noise_clip (same units as policy_noise)."""
    policy_delay: int = 2
    """td3_bc: one actor and target update every ``policy_delay`` critic updates (CORL policy_freq)."""
    # --- IQL
    iql_expectile: float = 0.7
    """iql: expectile of the value regression (CORL iql_tau; 0.7 for locomotion)."""
    iql_temperature: float = 3.0
    """iql: inverse temperature β of the advantage weights exp(β·A) (CORL beta)."""
    iql_max_weight: float = 100.0
    """iql: advantage weights are clipped at this value (CORL EXP_ADV_MAX)."""
    iql_deterministic: bool = False
    """iql: a deterministic actor trained by weighted MSE instead of a Gaussian one trained by
    weighted log-likelihood (CORL default False; its hopper configs use True)."""
    # --- CQL (SAC-based)
    cql_alpha: float = 10.0
    """cql: weight of the conservative term (CORL's D4RL configs: 10)."""
    cql_n_actions: int = 10
    """cql: actions sampled per state for each of uniform, π(·|s) and π(·|s') (CORL: 10)."""
    cql_temperature: float = 1.0
    """cql: temperature of the logsumexp over sampled Q-values (CORL cql_temp)."""
    cql_importance_sample: bool = True
    """cql: subtract each sample's log-density before the logsumexp (CQL paper, appendix F)."""
    cql_lagrange: bool = False
    """cql: tune the conservative weight by dual gradient descent towards ``cql_target_action_gap``."""
    cql_target_action_gap: float = -1.0
    """cql, with cql_lagrange: the gap logsumexp − Q(s, a_data) the multiplier aims for."""
    auto_entropy: bool = True
    """cql: tune SAC's temperature towards ``target_entropy`` (CORL use_automatic_entropy_tuning)."""
    target_entropy: float | None = None
    """cql: the entropy the temperature is tuned towards; None: −act_dim (CORL)."""
    sac_alpha: float = 1.0
    """cql: SAC's temperature multiplier (CORL alpha_multiplier); the fixed temperature when
    ``auto_entropy`` is off."""
    backup_entropy: bool = False
    """cql: subtract α·log π(a'|s') in the TD target (CORL: off)."""
    orthogonal_init: bool = True
    """cql: orthogonal initialisation of the critics, gain √2 inside and 1e-2 at the output (CORL)."""
    # --- run
    device: str = "cpu"
    """Torch device of the networks and of the dataset tensors."""
    log_every: int = 1000
    """Steps between rows of progress.csv (losses averaged over the interval)."""
    checkpoint_every: int = 5000
    """Steps between checkpoints in out_dir (the last step is always checkpointed)."""

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        self.action_low = tuple(float(x) for x in np.ravel(self.action_low))
        self.action_high = tuple(float(x) for x in np.ravel(self.action_high))
        if self.algo not in ALGOS:
            raise ValueError(f"unknown offline RL algorithm {self.algo!r}; choose one of {', '.join(ALGOS)} "
                             "(discrete actions: llmrl.rl.offline)")
        low, high = np.array(self.action_low), np.array(self.action_high)
        if len(low) == 0 or len(low) != len(high):
            raise ValueError(f"action_low and action_high need one value each per action dimension (or one value "
                             f"for all); got {len(low)} and {len(high)}: pass env.action_space.low and .high")
        if not (np.isfinite(low).all() and np.isfinite(high).all() and (low < high).all()):
            raise ValueError(f"action bounds must be finite with low < high; got low {self.action_low}, high "
                             f"{self.action_high}: for an unbounded action space pick the range the data covers")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ValueError(f"hidden_sizes needs at least one positive width, got {self.hidden_sizes}")
        for name in ("batch_size", "gradient_steps", "policy_delay", "cql_n_actions", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("actor_lr", "critic_lr", "cql_temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("td3_alpha", "policy_noise", "noise_clip", "iql_temperature", "cql_alpha", "sac_alpha"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must lie in (0, 1] (1 copies the online networks), got {self.tau}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {self.gamma}")
        if not 0.0 < self.iql_expectile < 1.0:
            raise ValueError(f"iql_expectile must lie in (0, 1) (0.5 is mean regression), got {self.iql_expectile}")
        if not self.iql_max_weight > 0:
            raise ValueError(f"iql_max_weight must be positive, got {self.iql_max_weight}")

    def bounds(self, act_dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) as float32 arrays of ``act_dim`` values (a single value is broadcast)."""
        low, high = np.array(self.action_low, np.float32), np.array(self.action_high, np.float32)
        if len(low) not in (1, act_dim):
            raise ValueError(f"the config has {len(low)} action bounds but the actions have {act_dim} dimensions: "
                             "set action_low/action_high to env.action_space.low/.high")
        return np.broadcast_to(low, (act_dim,)).copy(), np.broadcast_to(high, (act_dim,)).copy()


PRESETS: dict[str, OfflineContinuousConfig] = {
    # CORL any_percent_bc.py, D4RL configs with frac=1.0: batch 256, lr 3e-4, 256-256 tanh actor.
    "bc": OfflineContinuousConfig(algo="bc"),
    # CORL td3_bc.py: α 2.5, noise 0.2 clipped at 0.5, delay 2, τ 0.005, lr 3e-4 for all networks.
    "td3_bc": OfflineContinuousConfig(algo="td3_bc"),
    # CORL iql.py: expectile 0.7, β 3, weights ≤ 100, τ 0.005, Gaussian actor, lr 3e-4 (cosine-decayed
    # for the actor). Its hopper configs switch to a deterministic actor, τ 0.001 and reward scaling.
    "iql": OfflineContinuousConfig(algo="iql"),
    # CORL cql.py + D4RL configs: 3×256 actor and critics, actor lr 3e-5, critic lr 3e-4, α 10,
    # 10 sampled actions, importance sampling, temperature 1, no Lagrange, auto entropy (−act_dim).
    "cql": OfflineContinuousConfig(algo="cql", hidden_sizes=(256, 256, 256), actor_lr=3e-5),
}


# --------------------------------------------------------------------------- networks
class DeterministicActor(nn.Module):
    """a = tanh(MLP(s)) in [−1, 1] (BC, TD3+BC, deterministic IQL)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden_sizes, act_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))

    def action(self, obs: torch.Tensor) -> torch.Tensor:
        return self(obs)


class GaussianActor(nn.Module):
    """N(tanh(MLP(s)), exp(log_std)) with one state-independent log-std per dimension (IQL)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden_sizes, act_dim)
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        mean = torch.tanh(self.net(obs))
        std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        return torch.distributions.Normal(mean, std).log_prob(actions).sum(-1)

    def action(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))


class TanhGaussianActor(nn.Module):
    """SAC's squashed Gaussian: a = tanh(u), u ~ N(μ(s), σ(s)) (CQL). As in CORL, the log-std head
    is scaled and shifted by two learnt scalars (initially 1 and −1)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.net = mlp(obs_dim, hidden_sizes, 2 * act_dim)
        self.log_std_multiplier = nn.Parameter(torch.tensor(1.0))
        self.log_std_offset = nn.Parameter(torch.tensor(-1.0))
        nn.init.xavier_uniform_(self.net[-1].weight, gain=1e-2)  # CORL: small initial outputs
        nn.init.zeros_(self.net[-1].bias)

    def _mean_log_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw = self.net(obs).split(self.act_dim, dim=-1)
        log_std = (self.log_std_multiplier * raw + self.log_std_offset).clamp(LOG_STD_MIN, LOG_STD_MAX)
        return mean, log_std

    def sample(self, obs: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action and its log-density (change of variables through tanh)."""
        mean, log_std = self._mean_log_std(obs)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device)
        u = mean + log_std.exp() * eps
        log_prob_u = (-0.5 * eps**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log|d tanh(u)/du| = log(1 − tanh²u) = 2(log 2 − u − softplus(−2u)), the stable form.
        log_det = (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
        return torch.tanh(u), log_prob_u - log_det

    def action(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self._mean_log_std(obs)[0])


class Critic(nn.Module):
    """Q(s, a) = MLP(s ⊕ a); any leading batch shape, e.g. (B, n, ·) for n actions per state."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], orthogonal: bool = False) -> None:
        super().__init__()
        self.net = mlp(obs_dim + act_dim, hidden_sizes, 1)
        if orthogonal:  # CORL's CQL critics
            for layer in self.net[:-1]:
                if isinstance(layer, nn.Linear):
                    nn.init.orthogonal_(layer.weight, gain=math.sqrt(2))
                    nn.init.zeros_(layer.bias)
            nn.init.orthogonal_(self.net[-1].weight, gain=1e-2)
            nn.init.zeros_(self.net[-1].bias)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, actions], dim=-1)).squeeze(-1)


def build_networks(c: OfflineContinuousConfig, obs_dim: int, act_dim: int) -> nn.ModuleDict:
    """bc: actor; td3_bc: actor, q1, q2; iql: actor, q1, q2, v; cql: actor, q1, q2 and the log-temperatures."""
    h = c.hidden_sizes
    if c.algo in ("bc", "td3_bc") or (c.algo == "iql" and c.iql_deterministic):
        actor: nn.Module = DeterministicActor(obs_dim, act_dim, h)
    elif c.algo == "iql":
        actor = GaussianActor(obs_dim, act_dim, h)
    else:
        actor = TanhGaussianActor(obs_dim, act_dim, h)
    nets = nn.ModuleDict({"actor": actor})
    if c.algo == "bc":
        return nets
    orthogonal = c.algo == "cql" and c.orthogonal_init
    nets["q1"] = Critic(obs_dim, act_dim, h, orthogonal)
    nets["q2"] = Critic(obs_dim, act_dim, h, orthogonal)
    if c.algo == "iql":
        nets["v"] = mlp(obs_dim, h, 1)
    if c.algo == "cql":
        nets["log_alpha"] = nn.ParameterDict({"sac": nn.Parameter(torch.tensor(0.0)),  # CORL: log α starts at 0
                                              "cql": nn.Parameter(torch.tensor(1.0))})  # and log α' at 1
    return nets


def optimisers(c: OfflineContinuousConfig, nets: nn.ModuleDict) -> dict[str, torch.optim.Adam]:
    """One Adam per role; Adam is per-parameter, so one optimiser over q1, q2 (and v) equals CORL's several."""
    optims = {"actor": torch.optim.Adam(nets["actor"].parameters(), lr=c.actor_lr, foreach=True)}
    critics = [p for k in ("q1", "q2", "v") if k in nets for p in nets[k].parameters()]
    if critics:
        optims["critic"] = torch.optim.Adam(critics, lr=c.critic_lr, foreach=True)
    if c.algo == "cql":  # CORL: SAC's α at the policy's lr, the Lagrange α' at the critics'
        optims["log_alpha"] = torch.optim.Adam([
            {"params": [nets["log_alpha"]["sac"]], "lr": c.actor_lr},
            {"params": [nets["log_alpha"]["cql"]], "lr": c.critic_lr}], foreach=True)  # fmt: skip
    return optims


# --------------------------------------------------------------------------- batches
@dataclass
class Batch:
    obs: torch.Tensor  # (B, d) normalised observations
    actions: torch.Tensor  # (B, act_dim) in [−1, 1]
    rewards: torch.Tensor  # (B,) scaled rewards
    next_obs: torch.Tensor  # (B, d)
    dones: torch.Tensor  # (B,) float32, 1 on a real termination (no bootstrap); timeouts bootstrap


class BatchSampler:
    """The whole dataset as tensors, already normalised; a batch is one randint and one gather per array."""

    def __init__(self, data: Transitions, c: OfflineContinuousConfig) -> None:
        check_transitions(data)
        low, high = c.bounds(data.act_dim)
        actions = data.actions.astype(np.float32, copy=False)
        tol = 1e-5 * (high - low)
        if (actions < low - tol).any() or (actions > high + tol).any():
            raise ValueError(
                f"data actions span [{actions.min(0).round(3).tolist()}, {actions.max(0).round(3).tolist()}], outside "
                f"the config's bounds [{low.tolist()}, {high.tolist()}]: set action_low/action_high to the env's "
                "action space, or clip the actions the data was collected with")
        obs = data.observations.astype(np.float32, copy=False)
        if c.normalize_states:
            self.obs_mean, self.obs_std = obs.mean(0), obs.std(0) + STATE_STD_EPS
        else:
            self.obs_mean, self.obs_std = np.zeros(data.obs_dim, np.float32), np.ones(data.obs_dim, np.float32)
        self.fingerprint = fingerprint(data)
        self.low, self.high = low, high

        def tensor(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(c.device)

        self.obs = tensor((obs - self.obs_mean) / self.obs_std)
        self.next_obs = tensor((data.next_observations - self.obs_mean) / self.obs_std)
        self.actions = tensor(np.clip(2.0 * (actions - low) / (high - low) - 1.0, -1.0, 1.0))
        self.rewards = tensor(c.reward_scale * data.rewards + c.reward_bias)
        self.dones = tensor(data.terminals)
        self.batch_size, self.device = c.batch_size, torch.device(c.device)

    def sample(self, generator: torch.Generator) -> Batch:
        idx = torch.randint(len(self.obs), (self.batch_size,), generator=generator, device=self.device)
        return Batch(self.obs[idx], self.actions[idx], self.rewards[idx], self.next_obs[idx], self.dones[idx])


def check_transitions(t: Transitions) -> None:
    if len(t) == 0:
        raise ValueError("the dataset has no transitions; collect some episodes first")
    if t.act_dim is None or not np.issubdtype(t.actions.dtype, np.floating):
        raise ValueError(f"continuous offline RL needs float actions of shape (N, act_dim), got {t.actions.dtype} "
                         f"{t.actions.shape}: for discrete actions use llmrl.rl.offline")
    for name in ("observations", "actions", "rewards", "next_observations"):
        if not np.isfinite(getattr(t, name)).all():
            raise ValueError(f"Transitions.{name} holds NaN or infinite values; drop or repair those transitions")


def fingerprint(t: Transitions) -> str:
    """SHA-1 of the training arrays, so a resume on other data fails loudly."""
    h = hashlib.sha1()
    for x in (t.observations, t.actions, t.rewards, t.next_observations, t.terminals):
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- updates
# Each update takes one batch, steps the optimisers, and returns detached scalars to log.
@torch.no_grad()
def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)  # t ← t + τ (p − t)


def minimise(optim: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optim.zero_grad(set_to_none=True)
    loss.backward()
    optim.step()


def bc_update(l: _Learner, b: Batch) -> dict[str, torch.Tensor]:
    mse = F.mse_loss(l.nets["actor"](b.obs), b.actions)
    minimise(l.optims["actor"], mse)
    return {"actor_loss": mse}


def td3_bc_update(l: _Learner, b: Batch) -> dict[str, torch.Tensor]:
    c, nets, target = l.config, l.nets, l.target
    with torch.no_grad():
        # TD3's target-policy smoothing: clipped noise on the target actor's action.
        noise = torch.randn(b.actions.shape, generator=l.generator, device=b.actions.device) * c.policy_noise
        a_next = (target["actor"](b.next_obs) + noise.clamp(-c.noise_clip, c.noise_clip)).clamp(-1.0, 1.0)
        q_next = torch.min(target["q1"](b.next_obs, a_next), target["q2"](b.next_obs, a_next))
        y = b.rewards + c.gamma * (1.0 - b.dones) * q_next
    q1 = nets["q1"](b.obs, b.actions)
    critic_loss = F.mse_loss(q1, y) + F.mse_loss(nets["q2"](b.obs, b.actions), y)
    minimise(l.optims["critic"], critic_loss)
    out = {"critic_loss": critic_loss.detach(), "q_data": q1.detach().mean()}
    if l.step % c.policy_delay == 0:
        pi = nets["actor"](b.obs)
        q = nets["q1"](b.obs, pi)
        lam = c.td3_alpha / q.abs().mean().detach()  # TD3+BC eq. 3: λ = α / mean|Q(s, π(s))|
        actor_loss = -lam * q.mean() + F.mse_loss(pi, b.actions)
        minimise(l.optims["actor"], actor_loss)  # (also leaves grads on q1; its next step clears them)
        for k in ("actor", "q1", "q2"):
            soft_update(target[k], nets[k], c.tau)
        out["actor_loss"] = actor_loss.detach()
    return out


def iql_update(l: _Learner, b: Batch) -> dict[str, torch.Tensor]:
    c, nets, target = l.config, l.nets, l.target
    with torch.no_grad():
        q_target = torch.min(target["q1"](b.obs, b.actions), target["q2"](b.obs, b.actions))
        v_next = nets["v"](b.next_obs).squeeze(-1)
        y = b.rewards + c.gamma * (1.0 - b.dones) * v_next
    # IQL eq. 5: expectile regression of V(s) towards the target Q of data actions.
    v = nets["v"](b.obs).squeeze(-1)
    adv = q_target - v
    v_loss = (torch.abs(c.iql_expectile - (adv < 0).float()) * adv**2).mean()
    # IQL eq. 6: Q towards r + γ V(s'), so no unseen action is ever evaluated.
    q1, q2 = nets["q1"](b.obs, b.actions), nets["q2"](b.obs, b.actions)
    q_loss = (F.mse_loss(q1, y) + F.mse_loss(q2, y)) / 2
    # V and the Qs share no parameters and each loss sees the other's output detached, so one step
    # on the sum equals CORL's separate V and Q steps.
    minimise(l.optims["critic"], v_loss + q_loss)
    # IQL eq. 7: advantage-weighted regression, weights exp(β A) clipped.
    weights = torch.exp(c.iql_temperature * adv.detach()).clamp(max=c.iql_max_weight)
    actor = nets["actor"]
    if isinstance(actor, GaussianActor):
        bc_losses = -actor.log_prob(b.obs, b.actions)
    else:
        bc_losses = ((actor(b.obs) - b.actions) ** 2).sum(-1)
    actor_loss = (weights * bc_losses).mean()
    # CORL: the actor's lr follows a cosine from actor_lr to 0 over the run.
    progress = (l.step - 1) / c.gradient_steps
    l.optims["actor"].param_groups[0]["lr"] = c.actor_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    minimise(l.optims["actor"], actor_loss)
    soft_update(target["q1"], nets["q1"], c.tau)
    soft_update(target["q2"], nets["q2"], c.tau)
    return {"q_loss": q_loss.detach(), "v_loss": v_loss.detach(), "actor_loss": actor_loss.detach(),
            "advantage": adv.detach().mean(), "q_data": q1.detach().mean()}


def cql_update(l: _Learner, b: Batch) -> dict[str, torch.Tensor]:
    c, nets, target, g = l.config, l.nets, l.target, l.generator
    actor, q1, q2, log_alpha = nets["actor"], nets["q1"], nets["q2"], nets["log_alpha"]
    B, A, n = b.actions.shape[0], b.actions.shape[1], c.cql_n_actions

    # SAC actor and temperature (Haarnoja et al. 2018): max E[min Q(s, a~π) − α log π(a|s)].
    a_pi, log_pi = actor.sample(b.obs, g)
    target_entropy = -float(A) if c.target_entropy is None else c.target_entropy
    if c.auto_entropy:
        alpha_loss = -(log_alpha["sac"] * (log_pi.detach() + target_entropy)).mean()
        alpha = log_alpha["sac"].exp().detach() * c.sac_alpha
    else:
        alpha_loss, alpha = torch.zeros((), device=b.obs.device), torch.tensor(c.sac_alpha, device=b.obs.device)
    actor_loss = (alpha * log_pi - torch.min(q1(b.obs, a_pi), q2(b.obs, a_pi))).mean()

    with torch.no_grad():
        a_next, log_pi_next = actor.sample(b.next_obs, g)
        q_next = torch.min(target["q1"](b.next_obs, a_next), target["q2"](b.next_obs, a_next))
        if c.backup_entropy:
            q_next = q_next - alpha * log_pi_next
        y = b.rewards + c.gamma * (1.0 - b.dones) * q_next
        # CQL(H)'s samples: n uniform actions, n from π(·|s') and n from π(·|s), all valued at s,
        # with their log-densities for importance sampling (CQL appendix F; uniform: 2^-A).
        obs_n = b.obs[:, None].expand(B, n, b.obs.shape[1])
        a_rand = torch.rand((B, n, A), generator=g, device=b.obs.device) * 2.0 - 1.0
        a_nxt, log_pi_nxt = actor.sample(b.next_obs[:, None].expand(B, n, b.obs.shape[1]), g)
        a_cur, log_pi_cur = actor.sample(obs_n, g)
        a_samples = torch.cat([a_rand, a_nxt, a_cur], dim=1)  # (B, 3n, A)
        log_density = torch.cat([torch.full_like(log_pi_cur, -A * math.log(2.0)), log_pi_nxt, log_pi_cur], dim=1)
        obs_3n = b.obs[:, None].expand(B, 3 * n, b.obs.shape[1])
    td_losses, gaps, q_data, q_rand = [], [], [], []
    for q in (q1, q2):
        qd, q_samples = q(b.obs, b.actions), q(obs_3n, a_samples)
        td_losses.append(F.mse_loss(qd, y))
        if c.cql_importance_sample:
            samples = q_samples - log_density
        else:
            samples = torch.cat([q_samples, qd[:, None]], dim=1)
        soft_max = torch.logsumexp(samples / c.cql_temperature, dim=1) * c.cql_temperature
        gaps.append((soft_max - qd).mean())  # CQL eq. 4: push the soft maximum down, the data's Q up
        q_data.append(qd.detach().mean())
        q_rand.append(q_samples[:, :n].detach().mean())
    td_loss = td_losses[0] + td_losses[1]
    if c.cql_lagrange:  # CQL-Lagrange: α' grows while the gap exceeds the target
        alpha_prime = log_alpha["cql"].exp().clamp(0.0, 1e6)
        excess = [gap - c.cql_target_action_gap for gap in gaps]
        conservative = alpha_prime.detach() * c.cql_alpha * (excess[0] + excess[1])
        alpha_prime_loss = -0.5 * alpha_prime * c.cql_alpha * (excess[0] + excess[1]).detach()
    else:
        conservative = c.cql_alpha * (gaps[0] + gaps[1])
        alpha_prime_loss = torch.zeros((), device=b.obs.device)
    critic_loss = td_loss + conservative

    # Actor and temperatures first (their loss also leaves grads on the critics, cleared below),
    # then the critics: all losses above were computed with the networks before this step, as CORL.
    l.optims["actor"].zero_grad(set_to_none=True)
    l.optims["log_alpha"].zero_grad(set_to_none=True)
    (actor_loss + alpha_loss + alpha_prime_loss).backward()
    l.optims["actor"].step()
    l.optims["log_alpha"].step()
    minimise(l.optims["critic"], critic_loss)
    soft_update(target["q1"], q1, c.tau)
    soft_update(target["q2"], q2, c.tau)
    return {"critic_loss": critic_loss.detach(), "td_loss": td_loss.detach(),
            "conservative_loss": conservative.detach(), "actor_loss": actor_loss.detach(), "alpha": alpha.detach(),
            "q_data": (q_data[0] + q_data[1]) / 2, "q_random": (q_rand[0] + q_rand[1]) / 2}


UPDATES: dict[str, Callable[[_Learner, Batch], dict[str, torch.Tensor]]] = {
    "bc": bc_update, "td3_bc": td3_bc_update, "iql": iql_update, "cql": cql_update}  # fmt: skip
LOG_KEYS = {
    "bc": ("actor_loss",),
    "td3_bc": ("critic_loss", "actor_loss", "q_data"),
    "iql": ("q_loss", "v_loss", "actor_loss", "advantage", "q_data"),
    "cql": ("critic_loss", "td_loss", "conservative_loss", "actor_loss", "alpha", "q_data", "q_random"),
}
TARGETS = {"bc": (), "td3_bc": ("actor", "q1", "q2"), "iql": ("q1", "q2"), "cql": ("q1", "q2")}


# --------------------------------------------------------------------------- the agent
class OfflineContinuousAgent:
    """A trained policy: ``act(obs)`` takes raw observations and returns actions within the bounds."""

    def __init__(self, config: OfflineContinuousConfig, nets: nn.ModuleDict, obs_mean: np.ndarray,
                 obs_std: np.ndarray, act_dim: int) -> None:
        self.config, self.nets = config, nets
        self.obs_dim, self.act_dim = len(obs_mean), act_dim
        self.obs_mean = np.asarray(obs_mean, np.float32)
        self.obs_std = np.asarray(obs_std, np.float32)
        self.low, self.high = config.bounds(act_dim)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions: (act_dim,) for one observation (obs_dim,), (B, act_dim) for (B, obs_dim)."""
        x = self._obs(obs)
        a = self.nets["actor"].action(x).cpu().numpy()
        a = np.clip(self.low + (a + 1.0) * 0.5 * (self.high - self.low), self.low, self.high)
        return a[0] if np.ndim(obs) == 1 else a

    @torch.no_grad()
    def q_values(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """(B,) min of the twin critics at raw observations and actions (td3_bc, iql, cql), in
        units of the trained rewards (``reward_scale · r + reward_bias``)."""
        if "q1" not in self.nets:
            raise ValueError(f"a {self.config.algo} agent has no Q-function; train td3_bc, iql or cql")
        x = self._obs(obs)
        a = np.atleast_2d(np.asarray(actions, np.float32))
        if a.shape != (len(x), self.act_dim):
            raise ValueError(f"q_values expects actions ({len(x)}, {self.act_dim}), got {a.shape}")
        a = torch.from_numpy(2.0 * (a - self.low) / (self.high - self.low) - 1.0).to(x.device)
        return torch.min(self.nets["q1"](x, a), self.nets["q2"](x, a)).cpu().numpy()

    def _obs(self, obs: np.ndarray) -> torch.Tensor:
        o = np.atleast_2d(np.asarray(obs, np.float32))
        if o.ndim != 2 or o.shape[1] != self.obs_dim:
            raise ValueError(f"expected observations ({self.obs_dim},) or (B, {self.obs_dim}), got {np.shape(obs)}")
        device = next(self.nets.parameters()).device
        return torch.from_numpy((o - self.obs_mean) / self.obs_std).to(device)

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        atomic_torch_save(path, dict(config=asdict(self.config), obs_mean=torch.from_numpy(self.obs_mean),
                                     obs_std=torch.from_numpy(self.obs_std), act_dim=self.act_dim,
                                     nets=self.nets.state_dict()))  # fmt: skip
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "cpu") -> OfflineContinuousAgent:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no saved agent there; train_offline_continuous(out_dir=...) "
                                    "writes agent.pt")
        state = torch.load(path, map_location=device, weights_only=True)
        config = OfflineContinuousConfig(**{**state["config"], "device": device})
        obs_mean, obs_std = state["obs_mean"].numpy(), state["obs_std"].numpy()
        nets = build_networks(config, len(obs_mean), state["act_dim"])
        nets.load_state_dict(state["nets"])
        return cls(config, nets.to(device), obs_mean, obs_std, state["act_dim"])


# --------------------------------------------------------------------------- training
PROGRESS_KEY = "step"
_RESUMABLE = ("gradient_steps", "log_every", "checkpoint_every")  # may change between resumes


def train_offline_continuous(
    config: OfflineContinuousConfig,
    data: Transitions,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    eval_fn: Callable[[OfflineContinuousAgent], float] | None = None,
    eval_every: int = 5000,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> OfflineContinuousAgent:
    """Train ``config.algo`` on ``data`` (continuous actions within the config's bounds); returns the agent.

    With ``out_dir`` the run writes a run folder (:mod:`llmrl.runs`: config.json, progress.csv,
    checkpoints/latest.pt, agent.pt) and ``resume=True`` continues it bit-exactly (IQL's cosine
    learning rate follows ``gradient_steps``, so keep that fixed for an exact IQL resume).
    ``eval_fn(agent)`` (say, the mean of :func:`evaluate_returns`) runs every ``eval_every`` steps
    and at the end; it fills the ``eval_return`` column. ``progress(step, row)`` is called with
    every progress row, after that step's checkpoint.
    """
    if eval_every < 1:
        raise ValueError(f"eval_every must be at least 1, got {eval_every}")
    sampler = BatchSampler(data, config)
    learner = _Learner(config, sampler, data.obs_dim, data.act_dim)
    folder = log = None
    if out_dir is not None:
        folder = RunFolder(out_dir, "offline_continuous", config, resume=resume, may_change=_RESUMABLE,
                           identity={"label": f"offline-{config.algo}", "seed": config.seed})
        ckpt = folder.load_checkpoint(fingerprint=sampler.fingerprint)
        if ckpt is not None:
            learner.load_state_dict(ckpt)
        log = folder.progress((PROGRESS_KEY, "wall_s", "steps_per_s", *LOG_KEYS[config.algo], "eval_return"),
                              key=PROGRESS_KEY, resume_at=learner.step, tensorboard=False)
    agent = OfflineContinuousAgent(config, learner.nets, sampler.obs_mean, sampler.obs_std, data.act_dim)
    while learner.step < config.gradient_steps:
        learner.train_step()
        step, last = learner.step, learner.step == config.gradient_steps
        evaluate = eval_fn is not None and (step % eval_every == 0 or last)
        if not (step % config.log_every == 0 or evaluate or last):
            continue
        row = learner.row()
        if evaluate:
            row["eval_return"] = float(eval_fn(agent))  # type: ignore[misc]
            learner.t_last = time.perf_counter()  # the next row's steps/s counts training only
        if log is not None:
            log.write(row)
        if folder is not None and (step % config.checkpoint_every == 0 or last):
            folder.save_checkpoint(learner.state_dict())
        if progress is not None:
            progress(step, row)
    if log is not None:
        log.close()
    if folder is not None:
        agent.save(folder.path / "agent.pt")
        folder.finish({"gradient_steps": learner.step})
    return agent


class _Learner:
    """The networks, targets, optimisers and sampler of one run, stepped one batch at a time."""

    def __init__(self, config: OfflineContinuousConfig, sampler: BatchSampler, obs_dim: int, act_dim: int) -> None:
        self.config, self.sampler = config, sampler
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
            torch.manual_seed(config.seed)
            self.nets = build_networks(config, obs_dim, act_dim).to(config.device)
        self.target = nn.ModuleDict({k: copy.deepcopy(self.nets[k]) for k in TARGETS[config.algo]})
        self.target.requires_grad_(False)
        self.optims = optimisers(config, self.nets)
        self.generator = torch.Generator(device=config.device).manual_seed(config.seed)
        self.update, self.log_keys = UPDATES[config.algo], LOG_KEYS[config.algo]
        self.sums = torch.zeros(len(self.log_keys), device=config.device)
        self.counts = torch.zeros(len(self.log_keys), device=config.device)
        self.step = self.step_last = 0
        self.wall_offset = 0.0
        self.t0 = self.t_last = time.perf_counter()

    def train_step(self) -> None:
        self.step += 1  # the update sees the 1-based number of this step (TD3's delay, IQL's schedule)
        out = self.update(self, self.sampler.sample(self.generator))
        present = [i for i, k in enumerate(self.log_keys) if k in out]
        self.sums[present] += torch.stack([out[self.log_keys[i]] for i in present])  # no host sync per step
        self.counts[present] += 1

    def row(self) -> dict[str, float]:
        """The mean losses since the last row (NaN where none was computed), and the speed."""
        now = time.perf_counter()
        means = (self.sums / self.counts).tolist()
        row = {PROGRESS_KEY: self.step, "wall_s": self.wall_offset + now - self.t0,
               "steps_per_s": (self.step - self.step_last) / max(now - self.t_last, 1e-9),
               **dict(zip(self.log_keys, means))}
        self.t_last, self.step_last = now, self.step
        self.sums.zero_()
        self.counts.zero_()
        return row

    def state_dict(self) -> dict[str, Any]:
        return dict(step=self.step, fingerprint=self.sampler.fingerprint, nets=self.nets.state_dict(),
                    target=self.target.state_dict(), optims={k: o.state_dict() for k, o in self.optims.items()},
                    generator=self.generator.get_state(), sums=self.sums, counts=self.counts,
                    wall_s=self.wall_offset + time.perf_counter() - self.t0)  # fmt: skip

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        self.nets.load_state_dict(ckpt["nets"])
        self.target.load_state_dict(ckpt["target"])
        for k, o in self.optims.items():
            o.load_state_dict(ckpt["optims"][k])
        self.generator.set_state(ckpt["generator"].cpu())
        self.sums, self.counts = ckpt["sums"].to(self.config.device), ckpt["counts"].to(self.config.device)
        self.step = self.step_last = ckpt["step"]
        self.wall_offset = ckpt["wall_s"]


# --------------------------------------------------------------------------- evaluation
class Policy(Protocol):
    def act(self, obs: np.ndarray) -> np.ndarray: ...


def evaluate_returns(policy: Policy, env_id: str, n_episodes: int, seed: int) -> list[float]:
    """Undiscounted returns of ``n_episodes`` episodes of ``env_id``, reset with seeds seed, seed + 1, ...

    ``policy.act(obs)`` gets one raw observation and returns one action (an agent of this module,
    a scripted controller, ...). D4RL-style scores: 100 · (R − R_random) / (R_expert − R_random).
    """
    import gymnasium as gym

    if n_episodes < 1:
        raise ValueError(f"n_episodes must be at least 1, got {n_episodes}")
    env = gym.make(env_id)
    returns = []
    try:
        for i in range(n_episodes):
            obs, _ = env.reset(seed=seed + i)
            total, done = 0.0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(np.asarray(policy.act(obs), dtype=np.float32))
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
    return returns

