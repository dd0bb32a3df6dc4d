"""Goal-conditioned offline RL for discrete actions: behaviour cloning, CQL and IQL.

The network input is ``observation ⊕ goal_embedding[goal_id]`` (KALM: 10-d CLEVR state ⊕ a
sentence embedding of the goal), fed to an MLP encoder (256, 256, ReLU) with one linear head, as
d3rlpy builds it for KALM. The three algorithms:

* ``bc``  — d3rlpy's DiscreteBC: cross-entropy on the data actions plus ``bc_beta`` · mean(logits²).
* ``cql`` — d3rlpy's DiscreteCQL (Kumar et al. 2020, CQL(H)): a double-DQN TD loss (Huber) against a
  target network, plus ``cql_alpha`` · E[logsumexp_a Q(s, a) − Q(s, a_data)].
* ``iql`` — discrete IQL (Kostrikov et al. 2022): V by expectile regression on the target Q,
  Q by TD to r + γ V(s'), the policy by advantage-weighted cloning.

``train_offline(config, real, goal_embeddings, imaginary=...)`` samples each batch from pre-built
tensors with index tensors (no per-transition Python); with imaginary data, round(mix_ratio · B)
rows of every batch come from it (KALM mixes 1:1). With ``out_dir`` it writes ``config.json``,
``progress.csv``, ``checkpoints/latest.pt`` (atomic) and ``agent.pt``; ``resume=True``
continues a killed run bit-exactly.
"""

from __future__ import annotations

import copy
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmrl.data.episodes import Transitions
from llmrl.rl.networks import mlp
from llmrl.runs import RunFolder, atomic_torch_save

ALGOS = ("bc", "cql", "iql")


# --------------------------------------------------------------------------- configuration
@dataclass
class OfflineConfig:
    """Settings of one offline-RL run. ``PRESETS`` holds KALM's values for each algorithm."""

    algo: str = "bc"
    """Algorithm: "bc" (behaviour cloning), "cql" (conservative Q-learning) or "iql" (implicit Q-learning)."""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden layers of every MLP (ReLU), as KALM's d3rlpy encoder."""
    batch_size: int = 100
    """Transitions per gradient step (real and imaginary together)."""
    learning_rate: float = 1e-3
    """Adam learning rate (one optimiser over all networks of the algorithm)."""
    gamma: float = 0.99
    """Discount factor (cql, iql)."""
    gradient_steps: int = 20_000
    """Gradient steps. KALM ran 500k; on 2 CPU cores 20k-50k is the practical range."""
    seed: int = 0
    """Seeds the network initialisation and the batch sampler."""
    mix_ratio: float = 0.5
    """Fraction of each batch drawn from the imaginary dataset when one is given (KALM: 1:1)."""
    n_actions: int | None = None
    """Size of the discrete action space; None takes 1 + the largest action in the data."""
    bc_beta: float = 0.5
    """bc: weight of the mean squared logit penalty (d3rlpy DiscreteBC's ``beta``)."""
    cql_alpha: float = 10.0
    """cql: weight of the conservative term (KALM's CLEVR value; d3rlpy's default is 1)."""
    target_update_interval: int = 1000
    """cql, iql: steps between target-network updates."""
    target_tau: float = 1.0
    """cql, iql: at each update target ← τ·online + (1−τ)·target; 1.0 is a hard copy."""
    iql_expectile: float = 0.7
    """iql: expectile τ of the value regression (IQL paper, locomotion)."""
    iql_temperature: float = 3.0
    """iql: inverse temperature β of the advantage weights exp(β·A)."""
    iql_max_weight: float = 100.0
    """iql: advantage weights are clipped at this value."""
    device: str = "cpu"
    """Torch device of the networks and of the dataset tensors."""
    log_every: int = 1000
    """Steps between rows of progress.csv (losses averaged over the interval)."""
    checkpoint_every: int = 5000
    """Steps between checkpoints in out_dir (the last step is always checkpointed)."""
    snapshots: int = 0
    """Agents kept from the end of training in out_dir/snapshots/ (KALM reports the mean success
    of the last 5 of its 50 epoch checkpoints); the last one is the final agent."""
    snapshot_every: int = 0
    """Steps between those snapshots; 0: gradient_steps / 50 (KALM: 500k steps in epochs of 10k)."""

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        if self.algo not in ALGOS:
            raise ValueError(f"unknown offline RL algorithm {self.algo!r}; choose one of {', '.join(ALGOS)}")
        if not 0.0 <= self.mix_ratio <= 1.0:
            raise ValueError(f"mix_ratio must lie in [0, 1], got {self.mix_ratio}")
        if not 0.0 < self.target_tau <= 1.0:
            raise ValueError(f"target_tau must lie in (0, 1], got {self.target_tau}")
        for name in ("batch_size", "gradient_steps", "target_update_interval", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.snapshots < 0 or self.snapshot_every < 0:
            raise ValueError("snapshots and snapshot_every must be >= 0")
        if self.snapshots and self.snapshot_steps[0] < 1:
            raise ValueError(f"{self.snapshots} snapshots every {self.snapshot_every or self.gradient_steps // 50} "
                             f"steps do not fit in {self.gradient_steps} gradient steps")

    @property
    def snapshot_steps(self) -> list[int]:
        """The gradient steps after which a snapshot is saved, oldest first."""
        every = self.snapshot_every or max(self.gradient_steps // 50, 1)
        return [self.gradient_steps - k * every for k in reversed(range(self.snapshots))]


PRESETS: dict[str, OfflineConfig] = {
    # KALM (d3rlpy DiscreteBC): batch 100, lr 1e-3.
    "bc": OfflineConfig(algo="bc", batch_size=100, learning_rate=1e-3),
    # KALM (d3rlpy DiscreteCQL): batch 32, lr 6.25e-5, α = 10. d3rlpy copies the target every
    # 8000 steps of KALM's 500k (62 copies); 1000 keeps 20-50 copies at our 20k-50k steps.
    "cql": OfflineConfig(algo="cql", batch_size=32, learning_rate=6.25e-5, cql_alpha=10.0, target_update_interval=1000),
    # IQL paper defaults: batch 256, lr 3e-4, Polyak τ = 0.005 every step, expectile 0.7, β = 3.
    "iql": OfflineConfig(algo="iql", batch_size=256, learning_rate=3e-4, target_update_interval=1, target_tau=0.005),
}


# --------------------------------------------------------------------------- networks
def build_networks(algo: str, in_dim: int, n_actions: int, hidden_sizes: tuple[int, ...]) -> nn.ModuleDict:
    """bc: policy logits; cql: Q(s, ·); iql: Q(s, ·), V(s) and policy logits."""
    if algo == "bc":
        return nn.ModuleDict({"policy": mlp(in_dim, hidden_sizes, n_actions)})
    if algo == "cql":
        return nn.ModuleDict({"q": mlp(in_dim, hidden_sizes, n_actions)})
    return nn.ModuleDict(
        {
            "q": mlp(in_dim, hidden_sizes, n_actions),
            "v": mlp(in_dim, hidden_sizes, 1),
            "policy": mlp(in_dim, hidden_sizes, n_actions),
        }
    )


ACTING_NET = {"bc": "policy", "cql": "q", "iql": "policy"}  # the head whose argmax is the action


# --------------------------------------------------------------------------- batches
@dataclass
class Batch:
    x: torch.Tensor  # (B, d + e) observation ⊕ goal embedding
    actions: torch.Tensor  # (B,) int64
    rewards: torch.Tensor  # (B,) float32
    x_next: torch.Tensor  # (B, d + e) next observation ⊕ the same goal embedding
    terminals: torch.Tensor  # (B,) float32, 1 where no value is bootstrapped from s'


class BatchSampler:
    """Uniform batches (with replacement) from real transitions, optionally mixed with imaginary ones.

    Both datasets live in one set of tensors, imaginary rows after the real ones; their goal
    embedding matrices are stacked the same way, so imaginary goal ids are offset by the number
    of real goals. A batch is one randint per source and one gather per array.
    """

    def __init__(
        self,
        real: Transitions,
        goal_embeddings: np.ndarray,
        imaginary: Transitions | None = None,
        imaginary_goal_embeddings: np.ndarray | None = None,
        batch_size: int = 100,
        mix_ratio: float = 0.5,
        device: str | torch.device = "cpu",
    ) -> None:
        _check_transitions(real, goal_embeddings, "real")
        parts = [(real, np.asarray(goal_embeddings, dtype=np.float32))]
        if imaginary is not None:
            if imaginary_goal_embeddings is None:
                if list(imaginary.goals) != list(real.goals):
                    raise ValueError(
                        "the imaginary transitions name other goals than the real ones: pass "
                        "imaginary_goal_embeddings (rows in the order of imaginary.goals), or build both "
                        "with one goal_index so they share goal_embeddings"
                    )
                imaginary_goal_embeddings = goal_embeddings
            _check_transitions(imaginary, imaginary_goal_embeddings, "imaginary")
            if imaginary.obs_dim != real.obs_dim:
                raise ValueError(f"observation sizes differ: real {real.obs_dim}, imaginary {imaginary.obs_dim}")
            if np.shape(imaginary_goal_embeddings)[1] != np.shape(goal_embeddings)[1]:
                raise ValueError(
                    f"goal embedding sizes differ: real {np.shape(goal_embeddings)[1]}, "
                    f"imaginary {np.shape(imaginary_goal_embeddings)[1]}; embed both with the same model"
                )
            parts.append((imaginary, np.asarray(imaginary_goal_embeddings, dtype=np.float32)))

        def stack(get: Callable[[Transitions], np.ndarray]) -> torch.Tensor:
            return torch.from_numpy(np.concatenate([get(t) for t, _ in parts])).to(device)

        offsets = np.cumsum([0] + [len(e) for _, e in parts])[:-1]
        self.observations = stack(lambda t: t.observations.astype(np.float32, copy=False))
        self.next_observations = stack(lambda t: t.next_observations.astype(np.float32, copy=False))
        self.actions = stack(lambda t: t.actions.astype(np.int64, copy=False))
        self.rewards = stack(lambda t: t.rewards.astype(np.float32, copy=False))
        self.terminals = stack(lambda t: t.terminals.astype(np.float32))
        self.goal_ids = torch.from_numpy(
            np.concatenate([t.goal_ids.astype(np.int64) + off for (t, _), off in zip(parts, offsets)])
        ).to(device)
        self.goal_embeddings = torch.from_numpy(np.concatenate([e for _, e in parts])).to(device)
        self.n_real = len(real)
        self.n_imaginary = len(imaginary) if imaginary is not None else 0
        self.n_from_imaginary = round(mix_ratio * batch_size) if self.n_imaginary else 0
        self.batch_size = batch_size
        self.device = torch.device(device)

    @property
    def input_dim(self) -> int:
        return self.observations.shape[1] + self.goal_embeddings.shape[1]

    def sample(self, generator: torch.Generator) -> Batch:
        n_real = self.batch_size - self.n_from_imaginary
        idx = torch.randint(self.n_real, (n_real,), generator=generator, device=self.device)
        if self.n_from_imaginary:
            imag = torch.randint(self.n_imaginary, (self.n_from_imaginary,), generator=generator, device=self.device)
            idx = torch.cat([idx, imag + self.n_real])
        g = self.goal_embeddings[self.goal_ids[idx]]
        return Batch(
            x=torch.cat([self.observations[idx], g], dim=1),
            actions=self.actions[idx],
            rewards=self.rewards[idx],
            x_next=torch.cat([self.next_observations[idx], g], dim=1),
            terminals=self.terminals[idx],
        )


def _check_transitions(t: Transitions, goal_embeddings: np.ndarray, name: str) -> None:
    if len(t) == 0:
        raise ValueError(f"the {name} dataset has no transitions; collect or generate some episodes first")
    shape = np.shape(goal_embeddings)
    if len(shape) != 2 or shape[0] != len(t.goals):
        raise ValueError(
            f"{name} goal embeddings must be (n_goals, e) = ({len(t.goals)}, e), one row per entry of "
            f"transitions.goals in order; got shape {shape}"
        )


# --------------------------------------------------------------------------- losses
def bc_loss(nets: nn.ModuleDict, target: nn.ModuleDict | None, b: Batch, c: OfflineConfig) -> dict[str, torch.Tensor]:
    logits = nets["policy"](b.x)
    cross_entropy = F.cross_entropy(logits, b.actions)
    penalty = (logits**2).mean()  # d3rlpy DiscreteBC keeps logits small
    return {"loss": cross_entropy + c.bc_beta * penalty, "cross_entropy": cross_entropy}


def cql_loss(nets: nn.ModuleDict, target: nn.ModuleDict | None, b: Batch, c: OfflineConfig) -> dict[str, torch.Tensor]:
    assert target is not None
    q_all = nets["q"](b.x)
    q_data = q_all.gather(1, b.actions[:, None]).squeeze(1)
    with torch.no_grad():
        # Double DQN (van Hasselt et al. 2016): the online net picks a', the target net values it.
        a_next = nets["q"](b.x_next).argmax(1, keepdim=True)
        q_next = target["q"](b.x_next).gather(1, a_next).squeeze(1)
        y = b.rewards + c.gamma * (1.0 - b.terminals) * q_next
    td = F.smooth_l1_loss(q_data, y)  # Huber, as d3rlpy's DQN
    # CQL(H), Kumar et al. 2020 eq. 4: push down a soft maximum of Q, push up Q on data actions.
    conservative = (torch.logsumexp(q_all, dim=1) - q_data).mean()
    return {
        "loss": td + c.cql_alpha * conservative,
        "td_loss": td,
        "conservative_loss": conservative,
        "q_data": q_data.mean(),
    }


def iql_loss(nets: nn.ModuleDict, target: nn.ModuleDict | None, b: Batch, c: OfflineConfig) -> dict[str, torch.Tensor]:
    assert target is not None
    with torch.no_grad():
        q_target = target["q"](b.x).gather(1, b.actions[:, None]).squeeze(1)
        v_next = nets["v"](b.x_next).squeeze(1)
        y = b.rewards + c.gamma * (1.0 - b.terminals) * v_next
    # IQL eq. 5: expectile regression of V(s) towards Q_target(s, a) over data actions.
    v = nets["v"](b.x).squeeze(1)
    u = q_target - v
    v_loss = (torch.abs(c.iql_expectile - (u < 0).float()) * u**2).mean()
    # IQL eq. 6: Q(s, a) towards r + γ V(s'); V never bootstraps from an unseen action.
    q = nets["q"](b.x).gather(1, b.actions[:, None]).squeeze(1)
    q_loss = ((q - y) ** 2).mean()
    # IQL eq. 7: advantage-weighted behaviour cloning with clipped weights exp(β A).
    weights = torch.exp(c.iql_temperature * (q_target - v.detach())).clamp(max=c.iql_max_weight)
    log_pi = F.log_softmax(nets["policy"](b.x), dim=1).gather(1, b.actions[:, None]).squeeze(1)
    policy_loss = -(weights * log_pi).mean()
    return {
        "loss": q_loss + v_loss + policy_loss,
        "q_loss": q_loss,
        "v_loss": v_loss,
        "policy_loss": policy_loss,
        "advantage": (q_target - v).mean(),
    }


LOSSES = {"bc": bc_loss, "cql": cql_loss, "iql": iql_loss}
LOG_KEYS = {
    "bc": ("loss", "cross_entropy"),
    "cql": ("loss", "td_loss", "conservative_loss", "q_data"),
    "iql": ("loss", "q_loss", "v_loss", "policy_loss", "advantage"),
}


@torch.no_grad()
def update_target(nets: nn.ModuleDict, target: nn.ModuleDict, tau: float) -> None:
    for p, tp in zip(nets.parameters(), target.parameters()):
        tp.lerp_(p, tau)  # tp ← tp + τ (p − tp); τ = 1 copies


# --------------------------------------------------------------------------- the agent
class OfflineAgent:
    """A trained goal-conditioned policy: ``act(observations, goal_embeddings)``."""

    def __init__(self, config: OfflineConfig, nets: nn.ModuleDict, obs_dim: int, goal_dim: int, n_actions: int) -> None:
        self.config = config
        self.nets = nets.eval()
        self.obs_dim, self.goal_dim, self.n_actions = obs_dim, goal_dim, n_actions

    @torch.no_grad()
    def scores(self, observations: np.ndarray, goal_embeddings: np.ndarray) -> np.ndarray:
        """(B, n_actions): policy logits (bc, iql) or Q-values (cql)."""
        return self._forward(ACTING_NET[self.config.algo], observations, goal_embeddings).cpu().numpy()

    @torch.no_grad()
    def q_values(self, observations: np.ndarray, goal_embeddings: np.ndarray) -> np.ndarray:
        """(B, n_actions) Q-values (cql, iql)."""
        if "q" not in self.nets:
            raise ValueError(f"a {self.config.algo} agent has no Q-function; train with algo 'cql' or 'iql'")
        return self._forward("q", observations, goal_embeddings).cpu().numpy()

    def act(
        self,
        observations: np.ndarray,
        goal_embeddings: np.ndarray,
        greedy: bool = True,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """(B,) actions: the argmax of :meth:`scores`, or with ``greedy=False`` a sample from their softmax."""
        s = self.scores(observations, goal_embeddings)
        if greedy:
            return s.argmax(axis=1)
        rng = rng if rng is not None else np.random.default_rng()
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        u = rng.random((len(p), 1))
        return np.minimum((p.cumsum(axis=1) < u).sum(axis=1), self.n_actions - 1)

    def _forward(self, head: str, observations: np.ndarray, goal_embeddings: np.ndarray) -> torch.Tensor:
        obs = np.atleast_2d(np.asarray(observations, dtype=np.float32))
        emb = np.atleast_2d(np.asarray(goal_embeddings, dtype=np.float32))
        if obs.shape[1] != self.obs_dim or emb.shape[1] != self.goal_dim or len(obs) != len(emb):
            raise ValueError(
                f"act expects observations (B, {self.obs_dim}) and goal_embeddings (B, {self.goal_dim}); "
                f"got {obs.shape} and {emb.shape}"
            )
        device = next(self.nets.parameters()).device
        x = torch.from_numpy(np.concatenate([obs, emb], axis=1)).to(device)
        return self.nets[head](x)

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(path, dict(
            config=asdict(self.config),
            obs_dim=self.obs_dim,
            goal_dim=self.goal_dim,
            n_actions=self.n_actions,
            nets=self.nets.state_dict()))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "cpu") -> OfflineAgent:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no saved agent there; train_offline(out_dir=...) writes agent.pt")
        state = torch.load(path, map_location=device, weights_only=True)
        config = OfflineConfig(**state["config"])
        in_dim = state["obs_dim"] + state["goal_dim"]
        nets = build_networks(config.algo, in_dim, state["n_actions"], config.hidden_sizes)
        nets.load_state_dict(state["nets"])
        return cls(config, nets.to(device), state["obs_dim"], state["goal_dim"], state["n_actions"])


# --------------------------------------------------------------------------- training
PROGRESS_KEY = "step"
_RESUMABLE = ("gradient_steps", "log_every", "checkpoint_every", "snapshots", "snapshot_every")  # may change between resumes


def snapshot_paths(run_dir: str | os.PathLike[str]) -> list[Path]:
    """A run's saved snapshots (``snapshots/step_*.pt``), oldest first."""
    return sorted((Path(run_dir) / "snapshots").glob("step_*.pt"))


def train_offline(
    config: OfflineConfig,
    real: Transitions,
    goal_embeddings: np.ndarray,
    imaginary: Transitions | None = None,
    imaginary_goal_embeddings: np.ndarray | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> OfflineAgent:
    """Train ``config.algo`` on ``real`` (and ``imaginary``) transitions; returns the agent.

    ``goal_embeddings[i]`` embeds ``real.goals[i]``; ``imaginary_goal_embeddings`` the same for
    ``imaginary`` (leave it None when both share one goal list). With ``out_dir`` the run writes a
    run folder (:mod:`llmrl.runs`: config.json, progress.csv, checkpoints/latest.pt, agent.pt) and
    ``resume=True`` continues it bit-exactly. ``progress(step, row)`` is called with every
    progress row, after that step's checkpoint.
    """
    sampler = BatchSampler(
        real, goal_embeddings, imaginary, imaginary_goal_embeddings, config.batch_size, config.mix_ratio, config.device
    )
    lo, hi = int(sampler.actions.min()), int(sampler.actions.max())
    n_actions = config.n_actions or hi + 1
    if lo < 0 or hi >= n_actions:
        raise ValueError(f"actions must lie in [0, {n_actions}); the data holds [{lo}, {hi}]: set config.n_actions")
    learner = _Learner(config, sampler, n_actions)
    folder = log = None
    if out_dir is not None:
        folder = RunFolder(out_dir, "offline", config, resume=resume, may_change=_RESUMABLE,
                           identity={"label": f"offline-{config.algo}", "seed": config.seed})
        ckpt = folder.load_checkpoint(fingerprint=learner.fingerprint)
        if ckpt is not None:
            learner.load_state_dict(ckpt)
        log = folder.progress((PROGRESS_KEY, "wall_s", "steps_per_s", *LOG_KEYS[config.algo]), key=PROGRESS_KEY,
                              resume_at=learner.step, tensorboard=False)
    snapshot_at = set(config.snapshot_steps)
    while learner.step < config.gradient_steps:
        learner.train_step()
        last = learner.step == config.gradient_steps
        if folder is not None and learner.step in snapshot_at:
            OfflineAgent(replace(config, n_actions=n_actions), learner.nets, real.obs_dim,
                         sampler.goal_embeddings.shape[1], n_actions).save(
                folder.path / "snapshots" / f"step_{learner.step:08d}.pt")
        row = learner.row() if learner.step % config.log_every == 0 or last else None
        if row is not None and log is not None:
            log.write(row)
        if folder is not None and (learner.step % config.checkpoint_every == 0 or last):
            folder.save_checkpoint(learner.state_dict())
        if row is not None and progress is not None:
            progress(learner.step, row)
    if log is not None:
        log.close()
    agent = OfflineAgent(replace(config, n_actions=n_actions), learner.nets, real.obs_dim,
                         sampler.goal_embeddings.shape[1], n_actions)
    if folder is not None:
        agent.save(folder.path / "agent.pt")
        folder.finish({"gradient_steps": learner.step})
    return agent


class _Learner:
    """The networks, optimiser and sampler of one offline run, stepped one batch at a time."""

    def __init__(self, config: OfflineConfig, sampler: BatchSampler, n_actions: int) -> None:
        self.config, self.sampler = config, sampler
        self.fingerprint = _fingerprint(sampler)
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
            torch.manual_seed(config.seed)
            self.nets = build_networks(config.algo, sampler.input_dim, n_actions, config.hidden_sizes).to(config.device)
        self.target = copy.deepcopy(self.nets).requires_grad_(False) if config.algo in ("cql", "iql") else None
        self.optim = torch.optim.Adam(self.nets.parameters(), lr=config.learning_rate)
        self.generator = torch.Generator(device=config.device).manual_seed(config.seed)
        self.loss_fn, self.log_keys = LOSSES[config.algo], LOG_KEYS[config.algo]
        self.sums = torch.zeros(len(self.log_keys), device=config.device)
        self.n_summed, self.step, self.wall_offset = 0, 0, 0.0
        self.t0 = self.t_last = time.perf_counter()
        self.step_last = 0
        self.nets.train()

    def train_step(self) -> None:
        c = self.config
        losses = self.loss_fn(self.nets, self.target, self.sampler.sample(self.generator), c)
        self.optim.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.optim.step()
        self.step += 1
        if self.target is not None and self.step % c.target_update_interval == 0:
            update_target(self.nets, self.target, c.target_tau)
        self.sums += torch.stack([losses[k].detach() for k in self.log_keys])  # no host sync per step
        self.n_summed += 1

    def row(self) -> dict[str, float]:
        """The mean losses since the last row, and the speed."""
        now = time.perf_counter()
        row = {PROGRESS_KEY: self.step, "wall_s": self.wall_offset + now - self.t0,
               "steps_per_s": (self.step - self.step_last) / max(now - self.t_last, 1e-9),
               **dict(zip(self.log_keys, (self.sums / self.n_summed).tolist()))}
        self.t_last, self.step_last = now, self.step
        self.sums.zero_()
        self.n_summed = 0
        return row

    def state_dict(self) -> dict[str, Any]:
        return dict(step=self.step, fingerprint=self.fingerprint,
                    nets=self.nets.state_dict(), target=self.target.state_dict() if self.target is not None else None,
                    optim=self.optim.state_dict(), generator=self.generator.get_state(), sums=self.sums,
                    n_summed=self.n_summed, wall_s=self.wall_offset + time.perf_counter() - self.t0)

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        self.nets.load_state_dict(ckpt["nets"])
        if self.target is not None:
            self.target.load_state_dict(ckpt["target"])
        self.optim.load_state_dict(ckpt["optim"])
        self.generator.set_state(ckpt["generator"].cpu())
        self.sums, self.n_summed = ckpt["sums"].to(self.config.device), ckpt["n_summed"]
        self.step = self.step_last = ckpt["step"]
        self.wall_offset = ckpt["wall_s"]


def _fingerprint(sampler: BatchSampler) -> str:
    """SHA-1 of every training array, so a resume on other data fails loudly."""
    h = hashlib.sha1()
    for t in (sampler.observations, sampler.next_observations, sampler.actions, sampler.rewards,
              sampler.terminals, sampler.goal_ids, sampler.goal_embeddings):  # fmt: skip
        h.update(t.detach().cpu().numpy().tobytes())
    h.update(f"{sampler.n_real},{sampler.n_imaginary}".encode())
    return h.hexdigest()
