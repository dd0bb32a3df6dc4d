"""Decision Transformer and Online Decision Transformer for continuous control.

* **DT** (Chen et al. 2021, "Decision Transformer: Reinforcement Learning via Sequence Modeling"):
  a causal transformer over the interleaved tokens (R̂_1, s_1, a_1, R̂_2, s_2, a_2, ...), where
  R̂_t = Σ_{t'≥t} r_t' is the undiscounted return-to-go; the hidden state at s_t predicts a_t; the
  loss is the mean squared action error over the real (unpadded) steps. At evaluation the agent is
  given a target return, which falls by each reward received. Batches follow the HF blog
  "train-decision-transformers": K-step windows, trajectories drawn in proportion to their length,
  a uniform start, left padding with a mask, states normalised by the dataset's mean/std, returns
  divided by ``return_scale`` (1000 for locomotion).
* **ODT** (Zheng, Zhang & Grover 2022, "Online Decision Transformer"; facts checked in
  facebookresearch/online-dt, which is CC-BY-NC, so nothing is copied): the action head is a
  tanh-squashed Gaussian, mean and log-std from the state token (log-std squashed into [−5, 2]).
  The loss is −(log-likelihood + λ·entropy), entropy estimated with one reparameterised sample;
  λ = exp(log_temperature) is learned by its own Adam to drive the entropy to ``target_entropy``
  (−act_dim). Offline pretraining is followed by online iterations: roll out the sampling policy
  conditioned on ``online_rtg``, add the trajectories to a FIFO buffer of whole trajectories
  (``replay_size``; it starts with the highest-return offline ones, lowest-return first out),
  relabel their returns-to-go in hindsight from the rewards obtained, and take
  ``updates_per_iteration`` gradient steps on windows from the buffer.

Both build on ``transformers.DecisionTransformerModel`` (:class:`DecisionTransformer` subclasses it)
and share one batch sampler (:class:`WindowSampler`) and one loss (:func:`sequence_loss`).
Deviations from the references: AdamW for ODT (online-dt uses LAMB); ODT's entropy is averaged
over real steps only (online-dt averages over padding too); the HF timestep embedding is kept for
ODT (online-dt drops it); data actions are divided by ``action_scale`` so the model works in [−1, 1].

The model's forward reads its hidden size from the embeddings, not from the config, so a caller
may swap ``encoder`` (any module taking ``inputs_embeds``, ``attention_mask``, ``position_ids``
whose output's ``[0]`` is the hidden states) and the embedding / head modules for ones of
another width (LaMo; see :func:`make_dt`).

``train_dt`` / ``train_odt`` write a run folder (:mod:`llmrl.runs`: ``config.json``,
``progress.csv``, ``checkpoints/latest.pt``, ``agent.pt``) and resume a killed run bit-exactly.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import DecisionTransformerConfig, DecisionTransformerModel

from llmrl.data.episodes import Episode, EpisodeDataset
from llmrl.runs import RunFolder, atomic_torch_save, env_seeds

LOG_STD_BOUNDS = (-5.0, 2.0)  # online-dt's Gaussian head (from pytorch_sac)
ACTION_EPS = 1e-6  # data actions are clamped inside (−1, 1) so atanh stays finite (online-dt)
SEED_STRIDE = 1_000_000  # env seeds a run may use (llmrl.runs.env_seeds)
ONLINE_SEED_OFFSET = 100_000  # online rollouts reset from here on; evaluation uses seeds below it


# --------------------------------------------------------------------------- configuration
@dataclass
class DTConfig:
    """Settings of a DT or ODT run. Defaults are the DT paper's gym settings; ``PRESETS`` holds
    ODT's and a CPU-sized one."""

    context_len: int = 20
    """K, the number of timesteps in a training window (DT gym and online-dt: 20)."""
    hidden_size: int = 128
    """Embedding width of the tokens and the transformer (DT gym: 128; online-dt: 512)."""
    n_layer: int = 3
    """Transformer blocks (DT gym: 3; online-dt: 4)."""
    n_head: int = 1
    """Attention heads (DT gym: 1; online-dt: 4); must divide hidden_size."""
    dropout: float = 0.1
    """Dropout on embeddings, attention and residuals (DT gym and online-dt: 0.1)."""
    activation: str = "relu"
    """Activation of the transformer MLPs (DT gym and online-dt: relu)."""
    learning_rate: float = 1e-4
    """AdamW learning rate (DT gym and online-dt: 1e-4)."""
    weight_decay: float = 1e-4
    """AdamW weight decay (DT gym: 1e-4; online-dt: 5e-4)."""
    warmup_steps: int = 10_000
    """Linear learning-rate warmup from 1/warmup_steps to 1, then constant (DT gym and online-dt: 10k)."""
    grad_clip: float = 0.25
    """Gradient-norm clip (DT gym and online-dt: 0.25)."""
    batch_size: int = 64
    """Windows per gradient step (DT gym and the HF blog: 64; online-dt: 256)."""
    train_steps: int = 100_000
    """Offline gradient steps; for ODT the pretraining steps (DT gym: 10 × 10k; online-dt: 5000)."""
    return_scale: float = 1000.0
    """Returns-to-go are divided by this (DT gym and the HF blog: 1000 for locomotion)."""
    max_episode_length: int = 1000
    """Size of the timestep embedding table; later timesteps share its last row (DT gym: 1000)."""
    action_scale: float | None = None
    """Actions are divided by this so the model works in [−1, 1]; set the env's action bound
    (Pendulum: 2). None: the largest |action| in the data. A model passed in keeps its own."""
    seed: int = 0
    """Seeds the initialisation, the window sampler, dropout and the environment resets."""
    device: str = "cpu"
    """Torch device of the model and of the batches."""
    log_every: int = 1000
    """Offline steps between rows of progress.csv (losses averaged over the interval)."""
    checkpoint_every: int = 5000
    """Offline steps between checkpoints (the last step and every online iteration are checkpointed)."""
    stochastic: bool = False
    """ODT's tanh-squashed Gaussian action head with an entropy bonus; False: DT's tanh head, MSE loss."""
    init_temperature: float = 0.1
    """ODT: initial entropy weight λ (online-dt: 0.1)."""
    target_entropy: float | None = None
    """ODT: the entropy λ drives the policy to; None: −act_dim (online-dt)."""
    temperature_lr: float = 1e-4
    """ODT: Adam learning rate of log λ (online-dt: 1e-4)."""
    eval_context_len: int | None = None
    """Timesteps of history the policy sees when acting; None: context_len (online-dt: 5)."""
    online_iterations: int = 0
    """ODT: online iterations after pretraining, each rollouts then updates (online-dt: 1500)."""
    updates_per_iteration: int = 300
    """ODT: gradient steps per online iteration (online-dt: 300)."""
    rollouts_per_iteration: int = 1
    """ODT: exploration episodes added to the buffer per online iteration (online-dt: 1)."""
    replay_size: int = 1000
    """ODT: trajectories in the FIFO buffer (online-dt: 1000)."""
    online_rtg: float | None = None
    """ODT: the return the exploration rollouts are conditioned on, in env units (online-dt hopper:
    7200, twice eval_rtg). Required for train_odt."""
    eval_rtg: float | None = None
    """ODT: the return evaluation episodes are conditioned on (online-dt hopper: 3600). Required for train_odt."""
    eval_every: int = 10
    """ODT: online iterations between evaluations; the last is always evaluated (online-dt: 10)."""
    eval_episodes: int = 10
    """ODT: episodes per evaluation, played with the mean action (online-dt: 10)."""
    max_episode_steps: int | None = None
    """Step limit of online and evaluation episodes; None: the env's own time limit."""

    def __post_init__(self) -> None:
        for name in ("context_len", "hidden_size", "n_layer", "n_head", "batch_size", "max_episode_length",
                     "log_every", "checkpoint_every", "warmup_steps", "updates_per_iteration",
                     "rollouts_per_iteration", "replay_size", "eval_every", "eval_episodes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DTConfig.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("train_steps", "online_iterations"):
            if getattr(self, name) < 0:
                raise ValueError(f"DTConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.hidden_size % self.n_head:
            raise ValueError(f"DTConfig.hidden_size ({self.hidden_size}) must be a multiple of n_head "
                             f"({self.n_head}): change one of them")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"DTConfig.dropout must lie in [0, 1), got {self.dropout}")
        for name in ("learning_rate", "grad_clip", "return_scale", "init_temperature", "temperature_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"DTConfig.{name} must be positive, got {getattr(self, name)}")
        if self.weight_decay < 0:
            raise ValueError(f"DTConfig.weight_decay must be >= 0, got {self.weight_decay}")
        if self.action_scale is not None and not self.action_scale > 0:
            raise ValueError(f"DTConfig.action_scale must be positive (the env's action bound) or None, "
                             f"got {self.action_scale}")
        if self.eval_context_len is not None and not 1 <= self.eval_context_len <= self.context_len:
            raise ValueError(f"DTConfig.eval_context_len must lie in [1, context_len={self.context_len}] or be "
                             f"None, got {self.eval_context_len}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ValueError(f"DTConfig.max_episode_steps must be at least 1 or None, got {self.max_episode_steps}")


PRESETS: dict[str, DTConfig] = {
    # DT paper, gym code (kzl/decision-transformer) and the HF blog.
    "paper": DTConfig(),
    # online-dt main.py defaults (hopper): set online_rtg / eval_rtg for other envs.
    "odt": DTConfig(stochastic=True, hidden_size=512, n_layer=4, n_head=4, batch_size=256, weight_decay=5e-4,
                    train_steps=5000, eval_context_len=5, online_iterations=1500, online_rtg=7200.0,
                    eval_rtg=3600.0),
    # A size that trains in minutes on 2 CPU cores.
    "cpu": DTConfig(train_steps=2000, warmup_steps=200, log_every=200, checkpoint_every=1000),
}


# --------------------------------------------------------------------------- the model
class DecisionTransformer(DecisionTransformerModel):
    """``transformers.DecisionTransformerModel`` with a width-agnostic forward and ODT's Gaussian head.

    Buffers travel with the weights: ``state_mean``/``state_std`` (the data's normalisation),
    ``return_scale`` and ``action_scale`` (the model's actions are in [−1, 1]; the env's are
    ``action_scale`` times them). ``train_dt`` writes the first three from its data.
    """

    def __init__(self, config: DecisionTransformerConfig) -> None:
        super().__init__(config)
        self.stochastic = bool(config.stochastic)
        # The Gaussian's mean is HF's predict_action (built without tanh); the log-std is a twin.
        self.predict_log_std = nn.Linear(config.hidden_size, config.act_dim) if self.stochastic else None
        if self.predict_log_std is not None:
            nn.init.normal_(self.predict_log_std.weight, std=config.initializer_range)
            nn.init.zeros_(self.predict_log_std.bias)
        self.register_buffer("state_mean", torch.zeros(config.state_dim))
        self.register_buffer("state_std", torch.ones(config.state_dim))
        self.register_buffer("return_scale", torch.tensor(float(config.return_scale)))
        self.register_buffer("action_scale", torch.as_tensor(config.action_scale, dtype=torch.float32).expand(
            config.act_dim).clone())

    def state_hidden(self, states: torch.Tensor, actions: torch.Tensor, returns_to_go: torch.Tensor,
                     timesteps: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K, H): the encoder's output at each state token, which the action heads read.

        Inputs are normalised: states (B, K, d), actions in [−1, 1] (B, K, a), returns-to-go over
        ``return_scale`` (B, K, 1), timesteps (B, K) int64, mask (B, K) with 1 on real steps.
        """
        B, K = states.shape[:2]
        if attention_mask is None:
            attention_mask = torch.ones((B, K), dtype=torch.long, device=states.device)
        t = self.embed_timestep(timesteps)  # DT: a learned timestep embedding, added to each token
        s, a, r = self.embed_state(states) + t, self.embed_action(actions) + t, self.embed_return(returns_to_go) + t
        # (R_1, s_1, a_1, R_2, ...): returns first, so s_t sees R̂_t and a_<t but not a_t.
        tokens = self.embed_ln(torch.stack((r, s, a), dim=2).reshape(B, 3 * K, s.shape[-1]))
        out = self.encoder(inputs_embeds=tokens, attention_mask=attention_mask.long().repeat_interleave(3, dim=1),
                           position_ids=torch.zeros((B, 3 * K), dtype=torch.long, device=tokens.device))
        x = out if isinstance(out, torch.Tensor) else out[0]
        return x.reshape(B, K, 3, x.shape[-1])[:, :, 1]

    def action_distribution(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ODT: the pre-tanh Gaussian's mean and log-std, the log-std squashed into LOG_STD_BOUNDS."""
        if self.predict_log_std is None:
            raise ValueError("this model has a deterministic action head; build it with DTConfig(stochastic=True)")
        lo, hi = LOG_STD_BOUNDS
        log_std = lo + 0.5 * (hi - lo) * (torch.tanh(self.predict_log_std(hidden)) + 1.0)
        return self.predict_action(hidden), log_std

    def mean_action(self, hidden: torch.Tensor) -> torch.Tensor:
        """The action in [−1, 1]: DT's tanh head, or the squashed Gaussian's tanh(mean)."""
        a = self.predict_action(hidden)
        return torch.tanh(a) if self.stochastic else a

    def forward(self, states: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor | None = None,
                returns_to_go: torch.Tensor | None = None, timesteps: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, **kwargs: Any) -> Any:
        """HF's signature (``rewards`` unused, as there) and output type: ``action_preds`` (mean
        actions in [−1, 1]) and ``last_hidden_state`` (the state tokens' hidden states)."""
        from transformers.models.decision_transformer.modeling_decision_transformer import DecisionTransformerOutput

        if returns_to_go is None or timesteps is None:
            raise ValueError("DecisionTransformer.forward needs returns_to_go and timesteps")
        h = self.state_hidden(states, actions, returns_to_go, timesteps, attention_mask)
        return DecisionTransformerOutput(action_preds=self.mean_action(h), last_hidden_state=h)


def make_dt(config: DTConfig, state_dim: int, act_dim: int, action_scale: float | Sequence[float] = 1.0
            ) -> DecisionTransformer:
    """A :class:`DecisionTransformer` sized by ``config``, initialised from ``config.seed``.

    To swap the transformer (LaMo), replace ``model.encoder`` with a module taking
    ``inputs_embeds`` (B, 3K, H'), ``attention_mask`` (B, 3K) and ``position_ids`` (all zero:
    DT's positions come from the timestep embedding) whose output's ``[0]`` (or
    ``.last_hidden_state``) is (B, 3K, H'), causal over the token order. If H' differs from
    ``config.hidden_size``, also replace every module of width H: ``embed_state``,
    ``embed_action``, ``embed_return``, ``embed_timestep`` (an ``nn.Embedding(max_episode_length, H')``),
    ``embed_ln`` and the heads ``predict_action`` (and ``predict_log_std`` when stochastic).
    """
    hf = DecisionTransformerConfig(
        state_dim=state_dim, act_dim=act_dim, hidden_size=config.hidden_size, max_ep_len=config.max_episode_length,
        action_tanh=not config.stochastic, n_layer=config.n_layer, n_head=config.n_head,
        n_inner=4 * config.hidden_size, activation_function=config.activation, resid_pdrop=config.dropout,
        embd_pdrop=config.dropout, attn_pdrop=config.dropout, use_cache=False, bos_token_id=None,
        eos_token_id=None, stochastic=config.stochastic, return_scale=config.return_scale,
        action_scale=[float(x) for x in np.broadcast_to(np.asarray(action_scale, dtype=np.float64), (act_dim,))],
        context_len=config.context_len)
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(config.seed)
        model = DecisionTransformer(hf)
    return model.to(config.device)


# --------------------------------------------------------------------------- batches
@dataclass
class Batch:
    """K-step windows, left-padded; every array normalised as the model reads it."""

    states: torch.Tensor  # (B, K, d) (s − mean) / std; zeros on padding
    actions: torch.Tensor  # (B, K, a) action / action_scale, in [−1, 1]
    returns_to_go: torch.Tensor  # (B, K, 1) undiscounted return-to-go / return_scale
    timesteps: torch.Tensor  # (B, K) int64, capped at max_episode_length − 1
    mask: torch.Tensor  # (B, K) float32, 1 on real steps, 0 on padding


def returns_to_go(rewards: np.ndarray) -> np.ndarray:
    """R̂_t = Σ_{t'≥t} r_t' (undiscounted, as in the DT paper). Computed from the rewards an episode
    actually got, this is also ODT's hindsight relabelling of an online trajectory."""
    return np.cumsum(np.asarray(rewards, dtype=np.float64)[::-1])[::-1].astype(np.float32)


def state_statistics(episodes: Sequence[Episode]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (+1e-6) of the states that have an action (HF blog, online-dt)."""
    states = np.concatenate([ep.observations[:-1] for ep in episodes])
    return states.mean(0).astype(np.float32), (states.std(0) + 1e-6).astype(np.float32)


class WindowSampler:
    """Draws DT training windows from whole trajectories, as the HF blog's collator does.

    A window picks a trajectory with probability ∝ its length and a start uniformly among its
    steps; it holds up to K steps from there, left-padded (mask 0) when the trajectory ends
    first. All trajectories are stored once as flat, normalised tensors; a batch is a handful
    of index operations, no per-window Python.
    """

    def __init__(self, episodes: Sequence[Episode], context_len: int, state_mean: np.ndarray, state_std: np.ndarray,
                 return_scale: float, action_scale: np.ndarray, max_episode_length: int,
                 device: str | torch.device = "cpu") -> None:
        episodes = check_episodes(episodes)
        self.context_len = context_len
        self.lengths = torch.tensor([len(ep) for ep in episodes], dtype=torch.long, device=device)
        self.starts = torch.cumsum(self.lengths, 0) - self.lengths
        self.probs = self.lengths.double() / self.lengths.sum()
        states = np.concatenate([ep.observations[:-1] for ep in episodes])
        actions = np.concatenate([ep.actions for ep in episodes]) / np.asarray(action_scale, dtype=np.float32)
        rtg = np.concatenate([returns_to_go(ep.rewards) for ep in episodes]) / return_scale
        steps = np.concatenate([np.arange(len(ep)) for ep in episodes])

        def tensor(x: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype, device=device)

        self.states = tensor((states - state_mean) / state_std)
        self.actions = tensor(actions)
        self.rtg = tensor(rtg)[:, None]
        self.timesteps = tensor(np.minimum(steps, max_episode_length - 1), torch.long)

    def __len__(self) -> int:
        return len(self.lengths)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        episode = torch.multinomial(self.probs, batch_size, replacement=True, generator=generator)
        length = self.lengths[episode]
        u = torch.rand(batch_size, generator=generator, dtype=torch.float64, device=length.device)
        start = torch.minimum((u * length).long(), length - 1)
        return self.windows(episode, start)

    def windows(self, episode: torch.Tensor, start: torch.Tensor) -> Batch:
        """The windows of ``episode[i]`` (indices into the trajectories) starting at step ``start[i]``."""
        K = self.context_len
        n_real = torch.clamp(self.lengths[episode] - start, max=K)  # steps before the trajectory ends
        offset = torch.arange(K, device=start.device)[None] - (K - n_real)[:, None]  # < 0 on padding
        real = offset >= 0
        idx = self.starts[episode][:, None] + start[:, None] + offset.clamp(min=0)
        keep = real[..., None].float()
        return Batch(states=self.states[idx] * keep, actions=self.actions[idx] * keep,
                     returns_to_go=self.rtg[idx] * keep, timesteps=self.timesteps[idx] * real, mask=real.float())


def check_episodes(episodes: Sequence[Episode] | EpisodeDataset) -> list[Episode]:
    """The episodes as a list, refused with the reason when DT cannot train on them."""
    episodes = list(episodes)
    if not episodes:
        raise ValueError("no episodes to train on: collect or load a dataset of continuous-action episodes first")
    empty = [i for i, ep in enumerate(episodes) if len(ep) == 0]
    if empty:
        raise ValueError(f"{len(empty)} episodes have no steps (first: index {empty[0]}); drop them before training")
    if not all(ep.continuous for ep in episodes):
        raise ValueError("the Decision Transformer here takes continuous actions (T, act_dim); "
                         "these episodes hold discrete ones")
    if len({(ep.obs_dim, ep.actions.shape[1]) for ep in episodes}) > 1:
        raise ValueError("the episodes differ in observation or action size; a dataset must have one of each")
    return episodes


# --------------------------------------------------------------------------- the loss
def squashed_gaussian_log_prob(pre_tanh: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log π(tanh(x)) for x ~ N(mean, exp(log_std)²), summed over action dimensions."""
    normal = -0.5 * ((pre_tanh - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    log_det = 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))  # log(1 − tanh²x), stably
    return (normal - log_det).sum(-1)


def sequence_loss(model: DecisionTransformer, batch: Batch, temperature: torch.Tensor | None = None
                  ) -> dict[str, torch.Tensor]:
    """DT: MSE between predicted and data actions on real steps. ODT (stochastic model):
    −(log-likelihood + λ·entropy), λ = ``temperature`` taken as a constant."""
    h = model.state_hidden(batch.states, batch.actions, batch.returns_to_go, batch.timesteps, batch.mask)
    real = batch.mask > 0
    if not model.stochastic:
        mse = ((model.mean_action(h) - batch.actions) ** 2)[real].mean()
        return {"loss": mse, "action_loss": mse}
    if temperature is None:
        raise ValueError("a stochastic model's loss needs the entropy weight: pass temperature=λ")
    mean, log_std = model.action_distribution(h)
    data = batch.actions.clamp(-1 + ACTION_EPS, 1 - ACTION_EPS)
    log_likelihood = squashed_gaussian_log_prob(torch.atanh(data), mean, log_std)[real].mean()
    sample = mean + log_std.exp() * torch.randn_like(mean)  # one reparameterised sample (online-dt)
    entropy = -squashed_gaussian_log_prob(sample, mean, log_std)[real].mean()
    loss = -(log_likelihood + temperature.detach() * entropy)
    return {"loss": loss, "action_loss": -log_likelihood, "entropy": entropy}


# --------------------------------------------------------------------------- rollouts
@torch.no_grad()
def rollout(model: DecisionTransformer, env_id: str, target_return: float, n_episodes: int, seed: int, *,
            sample: bool = False, context_len: int | None = None, max_episode_steps: int | None = None,
            env_kwargs: dict[str, Any] | None = None) -> list[Episode]:
    """Play ``n_episodes`` (env i reset with seed ``seed + i``) side by side with one batched forward
    per step: the context is the last ``context_len`` steps, the return-to-go starts at
    ``target_return`` and falls by each reward (DT). ``sample``: draw from ODT's Gaussian (its
    noise seeded by ``seed``); otherwise the mean action."""
    import gymnasium as gym

    if sample and not model.stochastic:
        raise ValueError("sample=True needs a stochastic model (DTConfig(stochastic=True))")
    kwargs = dict(env_kwargs or {})
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    envs = [gym.make(env_id, **kwargs) for _ in range(n_episodes)]
    space = envs[0].action_space
    cfg = model.config
    limit = max_episode_steps or (envs[0].spec.max_episode_steps if envs[0].spec else None)
    if limit is None:
        raise ValueError(f"{env_id} has no time limit: pass max_episode_steps so that every episode ends")
    if getattr(space, "shape", None) != (cfg.act_dim,):
        raise ValueError(f"{env_id} has actions of shape {getattr(space, 'shape', space)}, the model ({cfg.act_dim},)")
    K = context_len or cfg.context_len
    device = model.state_mean.device
    low, high = (torch.as_tensor(b, dtype=torch.float32, device=device) for b in (space.low, space.high))
    noise = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()

    n, d, a = n_episodes, cfg.state_dim, cfg.act_dim
    states = torch.zeros((n, limit + 1, d), device=device)  # normalised, as the model reads them
    actions = torch.zeros((n, limit + 1, a), device=device)  # in [−1, 1]; step t's is zero while predicted
    rtg = torch.zeros((n, limit + 1, 1), device=device)
    timesteps = torch.clamp(torch.arange(limit + 1, device=device), max=cfg.max_ep_len - 1)[None].expand(n, -1)
    raw_obs = [[env.reset(seed=seed + i)[0]] for i, env in enumerate(envs)]
    obs = torch.as_tensor(np.stack([o[0] for o in raw_obs]), dtype=torch.float32, device=device)
    states[:, 0] = (obs - model.state_mean) / model.state_std
    rtg[:, 0] = target_return / model.return_scale
    env_actions: list[list[np.ndarray]] = [[] for _ in range(n)]
    rewards: list[list[float]] = [[] for _ in range(n)]
    ends: list[tuple[bool, bool]] = [(False, False)] * n
    active = list(range(n))
    for t in range(limit):
        lo = max(0, t + 1 - K)
        rows = torch.tensor(active, device=device)
        h = model.state_hidden(states[rows, lo : t + 1], actions[rows, lo : t + 1], rtg[rows, lo : t + 1],
                               timesteps[rows, lo : t + 1])[:, -1]
        if sample:
            mean, log_std = model.action_distribution(h)
            eps = torch.randn(mean.shape, generator=noise, device=device)
            u = torch.tanh(mean + log_std.exp() * eps)
        else:
            u = model.mean_action(h)
        act = torch.clamp(u * model.action_scale, low, high)
        actions[rows, t] = act / model.action_scale
        act_np = act.cpu().numpy()
        still = []
        for j, i in enumerate(active):
            o, r, term, trunc, _ = envs[i].step(act_np[j])
            raw_obs[i].append(o)
            env_actions[i].append(act_np[j])
            rewards[i].append(float(r))
            if term or trunc or t + 1 == limit:
                ends[i] = (bool(term), not term)
            else:
                still.append(i)
        new_obs = torch.as_tensor(np.stack([raw_obs[i][-1] for i in active]), dtype=torch.float32, device=device)
        new_rewards = torch.tensor([rewards[i][-1] for i in active], dtype=torch.float32, device=device)
        states[rows, t + 1] = (new_obs - model.state_mean) / model.state_std
        rtg[rows, t + 1] = rtg[rows, t] - new_rewards[:, None] / model.return_scale  # DT: R̂ falls by each reward
        active = still
        if not active:
            break
    for env in envs:
        env.close()
    model.train(was_training)
    episodes = []
    for i in range(n):
        T = len(rewards[i])
        term, trunc = ends[i]
        episodes.append(Episode(observations=np.stack(raw_obs[i]), actions=np.stack(env_actions[i]).reshape(T, a),
                                rewards=np.asarray(rewards[i]), terminations=[False] * (T - 1) + [term],
                                truncations=[False] * (T - 1) + [trunc], goal=""))
    return episodes


def evaluate_dt(model: DecisionTransformer, env_id: str, target_return: float, n_episodes: int, seed: int, *,
                context_len: int | None = None, max_episode_steps: int | None = None,
                env_kwargs: dict[str, Any] | None = None) -> list[float]:
    """Undiscounted returns of ``n_episodes`` played with the mean action, conditioned on
    ``target_return`` (env units; e.g. the dataset's best return). Env i resets with ``seed + i``."""
    episodes = rollout(model, env_id, target_return, n_episodes, seed, context_len=context_len,
                       max_episode_steps=max_episode_steps, env_kwargs=env_kwargs)
    return [ep.episode_return for ep in episodes]


# --------------------------------------------------------------------------- ODT's replay
class TrajectoryBuffer:
    """ODT's replay: whole trajectories, first in first out, at most ``capacity``.

    It starts from the ``capacity`` highest-return offline trajectories, ordered lowest return
    first, so those leave first (online-dt's ReplayBuffer). New trajectories' returns-to-go are
    relabelled in hindsight: the sampler computes them from the rewards obtained, never from the
    return the rollout was conditioned on.
    """

    def __init__(self, capacity: int, offline: Sequence[Episode] = ()) -> None:
        self.capacity = capacity
        order = sorted(range(len(offline)), key=lambda i: offline[i].episode_return)  # stable: ties keep data order
        self.episodes: list[Episode] = [offline[i] for i in order[max(0, len(order) - capacity):]]

    def __len__(self) -> int:
        return len(self.episodes)

    def add(self, new: Sequence[Episode]) -> None:
        self.episodes = (self.episodes + list(new))[-self.capacity:]


# --------------------------------------------------------------------------- training
class _Learner:
    """The model, optimisers, sampler RNG and step counter of a run, stepped one batch at a time."""

    def __init__(self, config: DTConfig, model: DecisionTransformer,
                 aux_loss: Callable[[], torch.Tensor] | None) -> None:
        self.config, self.model, self.aux_loss = config, model, aux_loss
        self.device = torch.device(config.device)
        trainable = [p for p in model.parameters() if p.requires_grad]  # frozen LM weights stay out (LaMo/LoRA)
        self.optim = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(  # DT gym and online-dt: linear warmup, then constant
            self.optim, lambda step: min((step + 1) / config.warmup_steps, 1.0))
        self.log_temperature = None
        self.target_entropy = None
        if model.stochastic:
            self.log_temperature = torch.tensor(math.log(config.init_temperature), device=config.device,
                                                requires_grad=True)
            self.temperature_optim = torch.optim.Adam([self.log_temperature], lr=config.temperature_lr)
            act_dim = model.config.act_dim
            self.target_entropy = config.target_entropy if config.target_entropy is not None else -float(act_dim)
        self.generator = torch.Generator(device=config.device).manual_seed(config.seed)
        self.log_keys = ("loss", "action_loss") + (("entropy", "temperature") if model.stochastic else ()) + (
            ("aux_loss",) if aux_loss is not None else ())
        self.sums = torch.zeros(len(self.log_keys), device=config.device)
        self.n_summed, self.step, self.step_last, self.wall_offset = 0, 0, 0, 0.0
        self.fingerprint = ""  # of the training data, set by the run folder's owner
        self.t0 = self.t_last = time.perf_counter()

    def train_step(self, sampler: WindowSampler) -> None:
        c = self.config
        self.model.train()
        temperature = self.log_temperature.exp() if self.log_temperature is not None else None
        out = sequence_loss(self.model, sampler.sample(c.batch_size, self.generator), temperature)
        if self.aux_loss is not None:
            out["aux_loss"] = self.aux_loss()
            out["loss"] = out["loss"] + out["aux_loss"]
        self.optim.zero_grad(set_to_none=True)
        out["loss"].backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.optim.step()
        self.schedule.step()
        if self.log_temperature is not None:
            # ODT: λ grows while the entropy is below target and shrinks above it.
            temperature_loss = self.log_temperature.exp() * (out["entropy"] - self.target_entropy).detach()
            self.temperature_optim.zero_grad(set_to_none=True)
            temperature_loss.backward()
            self.temperature_optim.step()
            out["temperature"] = self.log_temperature.detach().exp()
        self.sums += torch.stack([out[k].detach().float() for k in self.log_keys])  # no host sync per step
        self.n_summed += 1
        self.step += 1

    def row(self) -> dict[str, float]:
        """The mean losses since the last row, and the speed."""
        now = time.perf_counter()
        row = {"step": self.step, "wall_s": self.wall_offset + now - self.t0,
               "steps_per_s": (self.step - self.step_last) / max(now - self.t_last, 1e-9)}
        if self.n_summed:
            row.update(zip(self.log_keys, (self.sums / self.n_summed).tolist()))
        self.t_last, self.step_last = now, self.step
        self.sums.zero_()
        self.n_summed = 0
        return row

    def state_dict(self) -> dict[str, Any]:
        return dict(step=self.step, fingerprint=self.fingerprint, model=self.model.state_dict(),
                    optim=self.optim.state_dict(), schedule=self.schedule.state_dict(),
                    generator=self.generator.get_state(), torch_rng=torch.random.get_rng_state(),
                    cuda_rng=torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                    sums=self.sums,
                    n_summed=self.n_summed,
                    wall_s=self.wall_offset + time.perf_counter() - self.t0,
                    log_temperature=None if self.log_temperature is None else self.log_temperature.detach().clone(),
                    temperature_optim=None if self.log_temperature is None else self.temperature_optim.state_dict())

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optim.load_state_dict(ckpt["optim"])
        self.schedule.load_state_dict(ckpt["schedule"])
        self.generator.set_state(ckpt["generator"].cpu())
        torch.random.set_rng_state(ckpt["torch_rng"])  # dropout and ODT's entropy sample
        if ckpt.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["cuda_rng"], self.device)
        self.sums, self.n_summed = ckpt["sums"].to(self.config.device), ckpt["n_summed"]
        self.step = self.step_last = ckpt["step"]
        self.wall_offset = ckpt["wall_s"]
        if self.log_temperature is not None:
            with torch.no_grad():
                self.log_temperature.copy_(ckpt["log_temperature"])
            self.temperature_optim.load_state_dict(ckpt["temperature_optim"])


def _prepare(config: DTConfig, episodes: Sequence[Episode] | EpisodeDataset, model: DecisionTransformer | None
             ) -> tuple[list[Episode], DecisionTransformer, WindowSampler]:
    """Check the data, build (or check) the model, write the data's statistics into it."""
    episodes = check_episodes(episodes)
    state_dim, act_dim = episodes[0].obs_dim, episodes[0].actions.shape[1]
    if model is None:
        scale = config.action_scale or float(max(np.abs(ep.actions).max() for ep in episodes)) or 1.0
        model = make_dt(config, state_dim, act_dim, scale)
    else:
        if not isinstance(model, DecisionTransformer):
            raise TypeError(f"model must be built by make_dt (a DecisionTransformer), got {type(model).__name__}")
        if (model.config.state_dim, model.config.act_dim) != (state_dim, act_dim):
            raise ValueError(f"the model takes states of size {model.config.state_dim} and actions of size "
                             f"{model.config.act_dim}, the data has {state_dim} and {act_dim}: build it with "
                             "make_dt(config, state_dim, act_dim)")
        if model.stochastic != config.stochastic:
            raise ValueError(f"config.stochastic is {config.stochastic} but the model was built with "
                             f"stochastic={model.stochastic}: build it from the same config")
        model.to(config.device)
    mean, std = state_statistics(episodes)
    with torch.no_grad():
        model.state_mean.copy_(torch.as_tensor(mean))
        model.state_std.copy_(torch.as_tensor(std))
        model.return_scale.fill_(config.return_scale)
    return episodes, model, _sampler(config, episodes, model)


def _sampler(config: DTConfig, episodes: Sequence[Episode], model: DecisionTransformer) -> WindowSampler:
    return WindowSampler(episodes, config.context_len, model.state_mean.cpu().numpy(), model.state_std.cpu().numpy(),
                         config.return_scale, model.action_scale.cpu().numpy(), config.max_episode_length,
                         config.device)


def _fingerprint(episodes: Sequence[Episode]) -> str:
    """SHA-1 of the training data, so a resume on other data fails loudly."""
    h = hashlib.sha1()
    for ep in episodes:
        for x in (ep.observations, ep.actions, ep.rewards, ep.terminations, ep.truncations):
            h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def _rng_devices(config: DTConfig) -> list[int]:
    device = torch.device(config.device)
    return [device.index or 0] if device.type == "cuda" else []


# Settings a resumed run may change: budgets and logging. ODT's pretraining budget is fixed once online starts.
_RESUMABLE = {"dt": ("train_steps", "log_every", "checkpoint_every"),
              "odt": ("log_every", "checkpoint_every", "online_iterations", "eval_every")}


def train_dt(config: DTConfig, episodes: Sequence[Episode] | EpisodeDataset, *,
             model: DecisionTransformer | None = None, aux_loss: Callable[[], torch.Tensor] | None = None,
             out_dir: str | os.PathLike[str] | None = None, resume: bool = False,
             progress: Callable[[int, dict[str, float]], None] | None = None
             ) -> DecisionTransformer:
    """Train a Decision Transformer on ``episodes`` for ``config.train_steps`` steps; returns the model.

    ``model``: one from :func:`make_dt`, perhaps with its encoder and embeddings swapped (it is
    trained in place); default a new one. The data's state statistics and the return scale are
    written into it. ``aux_loss()`` is added to every step's loss (LaMo's language-model loss,
    weighted by the caller). With ``out_dir`` the run writes a run folder and ``resume=True``
    continues a killed run bit-exactly; ``progress(step, row)`` sees every progress row.
    """
    episodes, model, sampler = _prepare(config, episodes, model)
    with torch.random.fork_rng(devices=_rng_devices(config)):  # dropout draws without touching the caller's RNG
        torch.manual_seed(config.seed)
        learner = _Learner(config, model, aux_loss)
        folder, log = _open_run("dt", config, episodes, learner, out_dir, resume)
        _pretrain(config, learner, sampler, folder, log, progress, {})
        if log is not None:
            log.close()
    model.eval()
    if folder is not None:
        save_dt(model, folder.path / "agent.pt", config)
        folder.finish({"train_steps": learner.step})
    return model


def train_odt(config: DTConfig, episodes: Sequence[Episode] | EpisodeDataset, env_id: str, *,
              model: DecisionTransformer | None = None, aux_loss: Callable[[], torch.Tensor] | None = None,
              out_dir: str | os.PathLike[str] | None = None, resume: bool = False,
              progress: Callable[[int, dict[str, float]], None] | None = None,
              env_kwargs: dict[str, Any] | None = None) -> DecisionTransformer:
    """Online Decision Transformer: ``train_steps`` offline steps, then ``online_iterations`` of
    (roll out ``rollouts_per_iteration`` episodes sampled at ``online_rtg``, add them to the FIFO
    buffer, ``updates_per_iteration`` steps on it, every ``eval_every`` an evaluation at
    ``eval_rtg``). Rows of progress.csv carry ``online_return`` and ``eval_return``."""
    if not config.stochastic:
        raise ValueError("ODT trains a stochastic policy: set DTConfig(stochastic=True)")
    if config.online_rtg is None or config.eval_rtg is None:
        raise ValueError("train_odt needs config.online_rtg and config.eval_rtg (returns in env units; online-dt "
                         "uses eval_rtg ≈ the return to reach and online_rtg = 2 × eval_rtg on hopper)")
    episodes, model, sampler = _prepare(config, episodes, model)
    with torch.random.fork_rng(devices=_rng_devices(config)):
        torch.manual_seed(config.seed)
        learner = _Learner(config, model, aux_loss)
        online: dict[str, Any] = {"iteration": 0, "env_steps": 0, "buffer": None}
        folder, log = _open_run("odt", config, episodes, learner, out_dir, resume, online)
        _pretrain(config, learner, sampler, folder, log, progress, online)
        buffer = TrajectoryBuffer(config.replay_size, episodes)
        if online["buffer"] is not None:  # a resumed run: offline trajectories were saved as their index
            buffer.episodes = [episodes[e] if isinstance(e, int) else e for e in online["buffer"]]
        offline_index = {id(ep): i for i, ep in enumerate(episodes)}
        eval_len = config.eval_context_len or config.context_len
        while online["iteration"] < config.online_iterations:
            it = online["iteration"]
            offset = ONLINE_SEED_OFFSET + it * config.rollouts_per_iteration  # new starts every iteration
            seed = env_seeds(config.seed, 1, stride=SEED_STRIDE, offset=offset)[0]
            new = rollout(model, env_id, config.online_rtg, config.rollouts_per_iteration, seed, sample=True,
                          context_len=eval_len, max_episode_steps=config.max_episode_steps, env_kwargs=env_kwargs)
            buffer.add(new)
            batch_source = _sampler(config, buffer.episodes, model)
            for _ in range(config.updates_per_iteration):
                learner.train_step(batch_source)
            online["iteration"] = it + 1
            online["env_steps"] += sum(len(ep) for ep in new)
            row = {**learner.row(), "iteration": it + 1, "env_steps": online["env_steps"],
                   "online_return": float(np.mean([ep.episode_return for ep in new]))}
            if (it + 1) % config.eval_every == 0 or it + 1 == config.online_iterations:
                returns = evaluate_dt(model, env_id, config.eval_rtg, config.eval_episodes,
                                      env_seeds(config.seed, 1, stride=SEED_STRIDE)[0], context_len=eval_len,
                                      max_episode_steps=config.max_episode_steps, env_kwargs=env_kwargs)
                row.update(eval_return=float(np.mean(returns)), eval_return_std=float(np.std(returns)))
            if log is not None:
                log.write(row)
            if folder is not None:
                saved = [offline_index.get(id(ep), ep) for ep in buffer.episodes]
                folder.save_checkpoint({**learner.state_dict(), **online, "buffer": saved})
            if progress is not None:
                progress(learner.step, row)
        if log is not None:
            log.close()
    model.eval()
    if folder is not None:
        save_dt(model, folder.path / "agent.pt", config)
        folder.finish({"train_steps": config.train_steps, "online_iterations": online["iteration"],
                       "env_steps": online["env_steps"]})
    return model


_ODT_COLUMNS = ("iteration", "env_steps", "online_return", "eval_return", "eval_return_std")


def _open_run(recipe: str, config: DTConfig, episodes: list[Episode], learner: _Learner,
              out_dir: str | os.PathLike[str] | None, resume: bool, online: dict[str, Any] | None = None
              ) -> tuple[RunFolder | None, Any]:
    """The run folder and its progress log, with the learner (and ODT's online state) restored on resume."""
    if out_dir is None:
        return None, None
    folder = RunFolder(out_dir, recipe, config, resume=resume, may_change=_RESUMABLE[recipe],
                       identity={"label": recipe, "seed": config.seed})
    learner.fingerprint = _fingerprint(episodes)
    ckpt = folder.load_checkpoint(fingerprint=learner.fingerprint)
    if ckpt is not None:
        learner.load_state_dict(ckpt)
        if online is not None:
            online.update({k: ckpt[k] for k in ("iteration", "env_steps", "buffer")})
    columns = ("step", "wall_s", "steps_per_s", *learner.log_keys, *(_ODT_COLUMNS if online is not None else ()))
    return folder, folder.progress(columns, key="step", resume_at=learner.step, tensorboard=False)


def _pretrain(config: DTConfig, learner: _Learner, sampler: WindowSampler, folder: RunFolder | None, log: Any,
              progress: Callable[[int, dict[str, float]], None] | None, online: dict[str, Any]) -> None:
    """Offline steps up to ``config.train_steps``, logging and checkpointing on the way."""
    while learner.step < config.train_steps:
        learner.train_step(sampler)
        last = learner.step == config.train_steps
        row = learner.row() if learner.step % config.log_every == 0 or last else None
        if row is not None and log is not None:
            log.write(row)
        if folder is not None and (learner.step % config.checkpoint_every == 0 or last):
            folder.save_checkpoint({**learner.state_dict(), **online})
        if row is not None and progress is not None:
            progress(learner.step, row)


# --------------------------------------------------------------------------- saving
def save_dt(model: DecisionTransformer, path: str | os.PathLike[str], config: DTConfig) -> Path:
    """Write the weights (with the normalisation buffers) and what :func:`load_dt` needs to rebuild them."""
    path = Path(path)
    atomic_torch_save(path, dict(config=asdict(config), state_dim=model.config.state_dim,
                                 act_dim=model.config.act_dim, model=model.state_dict()))
    return path


def load_dt(path: str | os.PathLike[str], model: DecisionTransformer | None = None, device: str = "cpu"
            ) -> DecisionTransformer:
    """A model saved by :func:`save_dt` (or a run's ``agent.pt``). A model whose parts were swapped
    cannot be rebuilt from the config: build it the same way and pass it as ``model``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no saved model there; train_dt(out_dir=...) writes agent.pt")
    state = torch.load(path, map_location=device, weights_only=True)
    if model is None:
        config = DTConfig(**{**state["config"], "device": device})
        model = make_dt(config, state["state_dim"], state["act_dim"], state["model"]["action_scale"].tolist())
    model.load_state_dict(state["model"])
    return model.to(device).eval()
