"""Deep Q-learning over vectorised environments: Double DQN with n-step returns, optionally goal-conditioned.

ELLM (Du et al. 2023) trains its Crafter agents with this learner: Double DQN (van Hasselt et
al. 2016) with a Huber loss, 3-step returns, γ = 0.99, Adam at 6.25e-5, batches of 64, a hard
target copy every 8k env steps and ε decaying linearly from 1 to 0.01. When goal-conditioned,
a goal vector (a frozen sentence embedding) goes through a linear layer and is concatenated with
the observation features before the Q head. The pieces, in the order a training loop uses them:

* :func:`epsilon` — the linear ε schedule over env transitions;
* encoders that turn a batch of observations into features (each has ``out_dim``):
  :class:`MLPEncoder` (float vectors), :class:`GridEncoder` (a map of class ids plus small
  counts, e.g. Crafter's 9x7 local semantic view and inventory), :class:`ConvEncoder` (64x64 images);
* :class:`QNetwork` — Q(s, ·) = head(encoder(s) ⊕ W g);
* :class:`NStepReplay` — per-env windows fold rewards into n-step returns
  R = Σ_{k<n} γ^k r_{t+k}, stored with s_{t+n}, γ^n and a done flag in circular numpy arrays;
* :class:`DQN` — ε-greedy acting, the TD update
  y = R + γ^n (1 − done) Q_target(s_{t+n}, argmax_a Q(s_{t+n}, a)), and the target copy.

Schedules count env transitions: a vector step of ``n_envs`` envs adds ``n_envs`` of them.
:func:`gradient_steps` says how many updates a vector step owes (``train_frequency`` transitions
per update, remainders carried over) and :func:`target_sync_due` whether it crossed a multiple of
``target_update``. :class:`llmrl.rl.offpolicy.OffPolicyLoop` puts the pieces together over any
Gymnasium vector environment (tests/rl/test_offpolicy.py trains it on CartPole).
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmrl.rl.networks import mlp


# --------------------------------------------------------------------------- configuration
@dataclass
class DQNConfig:
    """Settings of the DQN learner; the defaults are ELLM's (Du et al. 2023, Crafter)."""

    learning_rate: float = 6.25e-5
    """Adam learning rate."""
    gamma: float = 0.99
    """Discount factor per env step."""
    n_step: int = 3
    """Rewards folded into each return before bootstrapping (1 = one-step DQN)."""
    batch_size: int = 64
    """Transitions per gradient step."""
    buffer_size: int = 100_000
    """Capacity of the replay buffer in (n-step) transitions; the oldest are overwritten."""
    learning_starts: int = 2_000
    """Env transitions stored before the first gradient step."""
    train_frequency: int = 4
    """Env transitions per gradient step. With n_envs envs a vector step owes n_envs / train_frequency
    steps; :func:`gradient_steps` carries the remainder to the next vector step."""
    target_update: int = 8_000
    """Env transitions between hard copies of the online network into the target network."""
    eps_start: float = 1.0
    """ε of the ε-greedy behaviour policy at transition 0."""
    eps_end: float = 0.01
    """ε after the decay, kept for the rest of training."""
    eps_decay: int = 1_000_000
    """Env transitions over which ε falls linearly from eps_start to eps_end."""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden layers (ReLU) of the MLP encoders (MLPEncoder, GridEncoder) a recipe builds from this config."""
    max_grad_norm: float = 10.0
    """Gradients are clipped to this global L2 norm (math.inf: no clipping)."""
    double: bool = True
    """True: Double DQN (the online net picks a', the target net values it); False: max_a Q_target."""
    goal_hidden: int = 64
    """Width of the linear projection of the goal before it joins the observation features."""
    head_hidden: int = 256
    """Width of the Q head's hidden layers (ELLM: 512)."""
    head_layers: int = 1
    """Hidden layers of the Q head (ELLM: 2, in each of its dueling streams)."""
    dueling: bool = False
    """Dueling heads, Q = V + A - mean(A) (Wang et al. 2016; ELLM's agent is a dueling double DQN)."""

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {self.gamma}")
        for name in ("n_step", "batch_size", "buffer_size", "train_frequency", "target_update", "eps_decay",
                     "goal_hidden", "head_hidden", "head_layers"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.buffer_size < self.batch_size:
            raise ValueError(
                f"buffer_size ({self.buffer_size}) is smaller than batch_size ({self.batch_size}); raise buffer_size"
            )
        if self.learning_starts < 0:
            raise ValueError(f"learning_starts must be at least 0, got {self.learning_starts}")
        if not 0.0 <= self.eps_end <= self.eps_start <= 1.0:
            raise ValueError(
                f"need 0 <= eps_end <= eps_start <= 1, got eps_start={self.eps_start}, eps_end={self.eps_end}"
            )
        if any(h < 1 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive layer widths, got {self.hidden_sizes}")
        if not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be positive (math.inf disables clipping), got {self.max_grad_norm}")


def epsilon(config: DQNConfig, t: int) -> float:
    """ε after ``t`` env transitions: linear from eps_start to eps_end over eps_decay, then flat."""
    frac = min(t / config.eps_decay, 1.0)
    return config.eps_start + frac * (config.eps_end - config.eps_start)


def gradient_steps(config: DQNConfig, new_transitions: int, carry: int = 0) -> tuple[int, int]:
    """Gradient steps owed for ``new_transitions`` more env transitions, and the remainder to carry.

    One step per ``train_frequency`` transitions. With 6 envs and train_frequency 4, successive
    vector steps owe 1, 2, 1, 2, ... steps: ``n, carry = gradient_steps(config, n_envs, carry)``.
    """
    total = carry + new_transitions
    return total // config.train_frequency, total % config.train_frequency


def target_sync_due(config: DQNConfig, t_before: int, t_after: int) -> bool:
    """True when the transition count crossed a multiple of ``target_update`` in (t_before, t_after]."""
    return t_after // config.target_update > t_before // config.target_update


# --------------------------------------------------------------------------- networks
class MLPEncoder(nn.Module):
    """Float observation vectors (B, obs_dim) through ReLU layers; ``out_dim`` is the last width."""

    def __init__(self, obs_dim: int, hidden_sizes: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.net = mlp(obs_dim, hidden_sizes)
        self.out_dim = hidden_sizes[-1] if len(hidden_sizes) else obs_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.float().reshape(len(obs), self.obs_dim))


class GridEncoder(nn.Module):
    """A map of class ids plus a few small counts, e.g. Crafter's local semantic view and inventory.

    Input: (B, H*W + n_extra) integers. The first H*W entries are class ids in [0, n_classes),
    one-hot encoded (ids are categories, not magnitudes); the last n_extra are counts divided by
    ``extra_scale`` (Crafter's inventory: 0..9, so 9). Both are concatenated and fed to an MLP.
    """

    def __init__(
        self,
        grid_shape: tuple[int, int],
        n_classes: int,
        n_extra: int = 0,
        extra_scale: float = 1.0,
        hidden_sizes: Sequence[int] = (256, 256),
    ) -> None:
        super().__init__()
        self.grid_shape, self.n_classes = tuple(grid_shape), n_classes
        self.n_extra, self.extra_scale = n_extra, extra_scale
        self.n_cells = int(np.prod(grid_shape))
        in_dim = self.n_cells * n_classes + n_extra
        self.net = mlp(in_dim, hidden_sizes)
        self.out_dim = hidden_sizes[-1] if len(hidden_sizes) else in_dim

    def one_hot(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, H*W*n_classes + n_extra): the MLP's input."""
        if obs.ndim != 2 or obs.shape[1] != self.n_cells + self.n_extra:
            raise ValueError(
                f"GridEncoder expects (B, {self.n_cells} cells + {self.n_extra} extras) = (B, "
                f"{self.n_cells + self.n_extra}); got {tuple(obs.shape)}: flatten the grid and append the extras"
            )
        ids = F.one_hot(obs[:, : self.n_cells].long(), self.n_classes).flatten(1).float()
        extras = obs[:, self.n_cells :].float() / self.extra_scale
        return torch.cat([ids, extras], dim=1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.one_hot(obs))


class ConvEncoder(nn.Module):
    """uint8 HWC images (B, H, W, C) scaled to [0, 1], the Nature-DQN conv stack (Mnih et al.
    2015) and a linear layer to ``out_dim`` (ReLU). Flat (B, H*W*C) input is reshaped first."""

    def __init__(self, shape: tuple[int, int, int] = (64, 64, 3), out_dim: int = 256) -> None:
        super().__init__()
        self.shape = tuple(shape)
        h, w, c = self.shape
        self.conv = nn.Sequential(
            nn.Conv2d(c, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )  # fmt: skip
        with torch.no_grad():
            n_flat = self.conv(torch.zeros(1, c, h, w)).shape[1]
        self.fc = nn.Sequential(nn.Linear(n_flat, out_dim), nn.ReLU())
        self.out_dim = out_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.reshape(len(obs), *self.shape).permute(0, 3, 1, 2).float() / 255.0
        return self.fc(self.conv(x))


class QNetwork(nn.Module):
    """Q(s, ·) from encoder(s) ⊕ W g (W g a linear goal projection, if goal_dim > 0), through a head
    of ``head_layers`` ReLU layers; with ``dueling``, two such heads give V(s) and A(s, ·) and
    Q = V + A − mean(A) (Wang et al. 2016)."""

    def __init__(
        self, encoder: nn.Module, n_actions: int, goal_dim: int = 0, goal_hidden: int = 64, head_hidden: int = 256,
        dueling: bool = False, head_layers: int = 1,
    ) -> None:
        super().__init__()
        self.encoder, self.n_actions, self.goal_dim, self.dueling = encoder, n_actions, goal_dim, dueling
        in_dim = encoder.out_dim
        if goal_dim:
            self.goal_proj = nn.Linear(goal_dim, goal_hidden)  # ELLM: one linear layer on the embedding
            in_dim += goal_hidden
        hidden = (head_hidden,) * head_layers
        self.head = mlp(in_dim, hidden, n_actions)
        if dueling:
            self.value = mlp(in_dim, hidden, 1)

    @classmethod
    def from_config(cls, encoder: nn.Module, n_actions: int, config: DQNConfig, goal_dim: int = 0) -> QNetwork:
        return cls(encoder, n_actions, goal_dim, config.goal_hidden, config.head_hidden, config.dueling,
                   config.head_layers)

    def forward(self, obs: torch.Tensor, goals: torch.Tensor | None = None) -> torch.Tensor:
        x = self.encoder(obs)
        if self.goal_dim:
            if goals is None:
                raise ValueError(
                    f"this Q-network is goal-conditioned (goal_dim={self.goal_dim}): pass goals (B, {self.goal_dim})"
                )
            x = torch.cat([x, self.goal_proj(goals.float())], dim=1)
        q = self.head(x)
        if self.dueling:
            q = self.value(x) + q - q.mean(dim=1, keepdim=True)
        return q


# --------------------------------------------------------------------------- replay
class NStepReplay:
    """Circular replay of n-step transitions from ``n_envs`` parallel envs.

    Each env keeps a window of its last (s, a, r, g) steps. Once the window holds n steps, its
    oldest step leaves as (s_t, a_t, R = Σ_{k<n} γ^k r_{t+k}, s_{t+n}, done=0, discount=γ^n).
    When an episode ends after k < n pending steps, every pending step leaves with its shorter
    return and discount γ^k: done=1 if the episode terminated (nothing to bootstrap), done=0 if it
    was truncated, in which case the caller's ``next_obs`` for that env must be the true final
    observation (with SAME_STEP autoreset, ``infos["final_obs"]``), not the reset one.

    s_{t+n} is stored next to s_t rather than found by index: simpler and exact at episode ends,
    at twice the observation memory. Goals are stored as float16 (embeddings lose nothing that matters).
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype | type,
        n_envs: int,
        n_step: int,
        gamma: float,
        goal_dim: int = 0,
    ) -> None:
        if capacity < 1 or n_envs < 1 or n_step < 1:
            raise ValueError(f"capacity, n_envs and n_step must be at least 1, got {capacity}, {n_envs}, {n_step}")
        self.capacity, self.n_envs, self.n_step, self.gamma, self.goal_dim = capacity, n_envs, n_step, gamma, goal_dim
        self.obs_shape, self.obs_dtype = tuple(obs_shape), np.dtype(obs_dtype)
        self.obs = np.zeros((capacity, *self.obs_shape), self.obs_dtype)
        self.next_obs = np.zeros((capacity, *self.obs_shape), self.obs_dtype)
        self.actions = np.zeros(capacity, np.int64)
        self.returns = np.zeros(capacity, np.float32)
        self.dones = np.zeros(capacity, np.float32)
        self.discounts = np.zeros(capacity, np.float32)
        self.goals = np.zeros((capacity, goal_dim), np.float16)
        self.next_goals = np.zeros((capacity, goal_dim), np.float16)
        self.ptr, self.size = 0, 0
        self.windows: list[deque[tuple[np.ndarray, int, float, np.ndarray]]] = [deque() for _ in range(n_envs)]

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        goals: np.ndarray | None = None,
        next_goals: np.ndarray | None = None,
    ) -> None:
        """One vector step: every argument is a batch over the n_envs envs, in env order."""
        if len(obs) != self.n_envs:
            raise ValueError(f"add expects a batch over the {self.n_envs} envs; got {len(obs)} observations")
        if self.goal_dim and (goals is None or next_goals is None):
            raise ValueError(f"this replay stores goals (goal_dim={self.goal_dim}): pass goals and next_goals")
        no_goal = np.zeros(self.goal_dim, np.float16)
        for i in range(self.n_envs):
            g = np.array(goals[i], np.float16) if self.goal_dim else no_goal
            window = self.windows[i]
            window.append((np.array(obs[i], self.obs_dtype), int(actions[i]), float(rewards[i]), g))
            ng = np.array(next_goals[i], np.float16) if self.goal_dim else no_goal
            if terminated[i] or truncated[i]:
                while window:  # flush: each pending step gets the rewards up to the episode's end
                    self._emit(window, next_obs[i], float(bool(terminated[i])), ng)
                    window.popleft()
            elif len(window) == self.n_step:
                self._emit(window, next_obs[i], 0.0, ng)
                window.popleft()

    def _emit(self, window: deque, next_obs: np.ndarray, done: float, next_goal: np.ndarray) -> None:
        """Store the window's oldest step with the return over the whole window."""
        ret = 0.0
        for k, (_, _, r, _) in enumerate(window):
            ret += self.gamma**k * r
        obs, action, _, goal = window[0]
        j = self.ptr
        self.obs[j], self.actions[j], self.returns[j], self.next_obs[j] = obs, action, ret, next_obs
        self.dones[j], self.discounts[j] = done, self.gamma ** len(window)
        self.goals[j], self.next_goals[j] = goal, next_goal
        self.ptr = (self.ptr + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """A uniform batch (with replacement): obs, actions, returns, next_obs, dones, discounts
        (and goals, next_goals as float32 when goal-conditioned)."""
        if self.size == 0:
            raise ValueError("the replay buffer is empty: add transitions before sampling")
        idx = rng.integers(0, self.size, batch_size)
        batch = {
            "obs": self.obs[idx],
            "actions": self.actions[idx],
            "returns": self.returns[idx],
            "next_obs": self.next_obs[idx],
            "dones": self.dones[idx],
            "discounts": self.discounts[idx],
        }
        if self.goal_dim:
            batch["goals"] = self.goals[idx].astype(np.float32)
            batch["next_goals"] = self.next_goals[idx].astype(np.float32)
        return {k: torch.from_numpy(v) for k, v in batch.items()}

    _ARRAYS = ("obs", "next_obs", "actions", "returns", "dones", "discounts", "goals", "next_goals")

    def state_dict(self) -> dict[str, Any]:
        """Arrays, pointers and the pending per-env windows (copies), for a resumable run."""
        return {
            **{k: getattr(self, k).copy() for k in self._ARRAYS},
            "ptr": self.ptr,
            "size": self.size,
            "windows": [copy.deepcopy(list(w)) for w in self.windows],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in self._ARRAYS:
            if state[k].shape != getattr(self, k).shape or state[k].dtype != getattr(self, k).dtype:
                raise ValueError(
                    f"saved replay array {k!r} is {state[k].shape} {state[k].dtype}, this buffer's is "
                    f"{getattr(self, k).shape} {getattr(self, k).dtype}: build it with the saved capacity, shapes "
                    "and dtype"
                )
        if len(state["windows"]) != self.n_envs:
            raise ValueError(f"the saved replay ran {len(state['windows'])} envs, this one {self.n_envs}")
        for k in self._ARRAYS:
            getattr(self, k)[...] = state[k]
        self.ptr, self.size = int(state["ptr"]), int(state["size"])
        self.windows = [deque(copy.deepcopy(w)) for w in state["windows"]]


# --------------------------------------------------------------------------- the learner
class DQN:
    """Online and target Q-networks and their Adam optimiser; ``update`` is one TD step on a replay batch."""

    def __init__(self, q_network: QNetwork, config: DQNConfig, device: str | torch.device = "cpu") -> None:
        self.config, self.n_actions, self.device = config, q_network.n_actions, torch.device(device)
        self.q = q_network.to(self.device)
        self.target = copy.deepcopy(self.q).requires_grad_(False)
        self.optim = torch.optim.Adam(self.q.parameters(), lr=config.learning_rate)

    def _tensor(self, x: np.ndarray | torch.Tensor | None) -> torch.Tensor | None:
        if x is None:
            return None
        return torch.as_tensor(x if torch.is_tensor(x) else np.asarray(x), device=self.device)

    @torch.no_grad()
    def q_values(self, obs: np.ndarray, goals: np.ndarray | None = None) -> np.ndarray:
        """(B, n_actions) Q-values of the online network."""
        return self.q(self._tensor(obs), self._tensor(goals)).cpu().numpy()

    def act(
        self, obs: np.ndarray, rng: np.random.Generator, epsilon: float, goals: np.ndarray | None = None
    ) -> np.ndarray:
        """(B,) ε-greedy actions, one per env; epsilon=0 is greedy."""
        n = len(obs)
        explore = rng.random(n) < epsilon
        random_actions = rng.integers(0, self.n_actions, n)  # drawn always, so rng use does not depend on ε
        if explore.all():
            return random_actions
        greedy = self.q_values(obs, goals).argmax(axis=1)
        return np.where(explore, random_actions, greedy)

    @torch.no_grad()
    def td_targets(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """y = R + γ^k (1 − done) Q_target(s', a'), a' = argmax_a Q_online(s', a) (double) or argmax_a Q_target."""
        b = {k: v.to(self.device) for k, v in batch.items()}
        next_goals = b.get("next_goals")
        q_next_all = self.target(b["next_obs"], next_goals)
        if self.config.double:
            # van Hasselt et al. 2016, eq. 4: the online net picks a', the target net values it.
            a_next = self.q(b["next_obs"], next_goals).argmax(1, keepdim=True)
        else:
            a_next = q_next_all.argmax(1, keepdim=True)
        q_next = q_next_all.gather(1, a_next).squeeze(1)
        return b["returns"] + b["discounts"] * (1.0 - b["dones"]) * q_next

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One gradient step of the Huber TD loss on a batch from :meth:`NStepReplay.sample`."""
        y = self.td_targets(batch)
        obs, actions = batch["obs"].to(self.device), batch["actions"].to(self.device)
        goals = batch["goals"].to(self.device) if "goals" in batch else None
        q = self.q(obs, goals).gather(1, actions[:, None]).squeeze(1)
        loss = F.smooth_l1_loss(q, y)  # Huber (δ = 1), as Mnih et al. 2015's clipped TD error
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        if math.isfinite(self.config.max_grad_norm):
            nn.utils.clip_grad_norm_(self.q.parameters(), self.config.max_grad_norm)
        self.optim.step()
        return {"loss": loss.item(), "q_mean": q.mean().item(), "td_abs": (q - y).abs().mean().item()}

    def sync_target(self) -> None:
        """Hard copy: target ← online."""
        self.target.load_state_dict(self.q.state_dict())

    def state_dict(self) -> dict[str, Any]:
        """Copies of both nets and of Adam's state (a loaded optimiser would otherwise share its moments)."""
        state = {"q": self.q.state_dict(), "target": self.target.state_dict(), "optim": self.optim.state_dict()}
        return copy.deepcopy(state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.q.load_state_dict(state["q"])
        self.target.load_state_dict(state["target"])
        self.optim.load_state_dict(state["optim"])
