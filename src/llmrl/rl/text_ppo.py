"""PPO with a KL penalty to a reference policy, for an LM that generates text (RLHF's RL step).

Each token the LM samples is an action; the state is the prompt and the tokens so far. The
reward of a response (from a learned reward model or any plain function) is paid at its last
token, and every token pays −β·(log π(a) − log π_ref(a)), the sampled KL penalty to the frozen
reference (Ziegler et al. 2019; Ouyang et al. 2022). The reference is the same LM with its LoRA
adapters switched off, so it costs no second copy. Advantages are GAE per response, whitened
over the batch; the clipped losses are :func:`llmrl.rl.ppo.ppo_losses` over the vocabulary, the
same function GLAM's action-string policy uses.

What is logged as ``kl`` is the exact KL(π ‖ π_ref) of each position's next-token distribution,
summed over the response: never negative, unlike the sampled log-ratio (logged as
``kl_sampled``) that implementations often report and users then find below zero. With
``target_kl`` set, β adapts to hold that KL (Ziegler et al.'s proportional controller).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from llmrl.config import require_positive
from llmrl.rl.ppo import PPOConfig, gae, ppo_losses
from llmrl.rl.preference import RewardFn


def _text_ppo() -> PPOConfig:
    return PPOConfig(n_epochs=2, minibatch_size=8, learning_rate=1e-4, gamma=1.0, gae_lambda=0.95, ent_coef=0.0,
                     vf_coef=0.1)  # fmt: skip


@dataclass
class KLPPOConfig:
    """PPO-KL's settings; ``ppo.minibatch_size`` counts responses."""

    kl_coef: float = 0.05
    """β: the weight of the per-token KL penalty (the starting value when ``target_kl`` is set)"""
    target_kl: float = 0.0
    """> 0: adapt β to hold this KL per response (Ziegler et al.); 0: β stays fixed"""
    kl_horizon: int = 10_000
    """the adaptive controller's horizon in responses"""
    batch_size: int = 16
    """responses sampled per iteration"""
    max_new_tokens: int = 12
    temperature: float = 1.0
    """sampling temperature (the policy PPO scores is the sampler's: no top-k or top-p)"""
    ppo: PPOConfig = field(default_factory=_text_ppo)

    def __post_init__(self) -> None:
        require_positive(self, "batch_size", "max_new_tokens", "temperature", "kl_horizon")
        if self.kl_coef < 0 or self.target_kl < 0:
            raise ValueError(f"kl_coef and target_kl must be >= 0, got {self.kl_coef}, {self.target_kl}")


class TextPolicy(torch.nn.Module):
    """π(token | prompt, tokens so far) from an LM with LoRA adapters, and a value head on the same
    hidden states. ``lm`` is a local transformers model (:class:`llmrl.lm.hf.HFLM`), wrapped in
    place: pass a fresh one."""

    def __init__(self, lm: Any, lora: Any | None = "default") -> None:
        super().__init__()
        from llmrl.lm.lora import add_lora, default_lora

        add_lora(lm, default_lora() if lora == "default" else lora)
        self.lm = lm
        self.llm = lm.model
        self.value_head = torch.nn.Linear(lm.hidden_size, 1).to(lm.device)
        torch.nn.init.zeros_(self.value_head.weight)
        torch.nn.init.zeros_(self.value_head.bias)

    def forward(self, prompts: Sequence[str], responses: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(log π over the vocabulary at each response position (N, V), V there (N,))."""
        logp_all, hidden, _ = self.lm.response_tensors(list(prompts), responses)
        return logp_all, self.value_head(hidden.float()).squeeze(-1)

    @torch.no_grad()
    def reference(self, prompts: Sequence[str], responses: Sequence[Sequence[int]]) -> torch.Tensor:
        """log π_ref over the vocabulary at each response position: the LM without its adapters."""
        with self.lm.model.disable_adapter():
            logp_all, _, _ = self.lm.response_tensors(list(prompts), responses)
        return logp_all

    def sample(self, prompts: Sequence[str], config: KLPPOConfig, seed: int) -> list[list[int]]:
        return self.lm.sample_ids(prompts, config.max_new_tokens, config.temperature, seed=seed)

    def decode(self, responses: Sequence[Sequence[int]]) -> list[str]:
        return [self.lm.tokenizer.decode(r, skip_special_tokens=True) for r in responses]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Adapters and value head: what a checkpoint must keep (the value model included)."""
        return {k: v.detach().cpu().clone() for k, v in self.named_parameters() if v.requires_grad}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        missing = [k for k, v in self.named_parameters() if v.requires_grad and k not in state]
        if missing:
            raise ValueError(f"the checkpoint lacks {len(missing)} trainable tensors (e.g. {missing[0]}): it is "
                             "not this policy's")  # fmt: skip
        own = dict(self.named_parameters())
        with torch.no_grad():
            for k, v in state.items():
                own[k].copy_(v)


@dataclass
class Rollout:
    prompts: list[str]
    responses: list[list[int]]
    texts: list[str]
    actions: torch.Tensor
    old_logp: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    scores: np.ndarray
    kl: np.ndarray
    """exact KL(π ‖ π_ref) per response, summed over its tokens (>= 0)"""
    kl_sampled: np.ndarray
    """Σ (log π(a) − log π_ref(a)) over the sampled tokens per response (an estimate; may be < 0)"""


def _per_response(values: torch.Tensor, lengths: Sequence[int]) -> np.ndarray:
    return np.array([float(x.sum()) for x in torch.split(values, list(lengths))])


@torch.no_grad()
def rollout(policy: TextPolicy, prompts: Sequence[str], reward: RewardFn, config: KLPPOConfig, kl_coef: float,
            seed: int) -> Rollout:  # fmt: skip
    """Sample a response per prompt, pay it, and compute per-token advantages."""
    prompts = list(prompts)
    responses = policy.sample(prompts, config, seed)
    lengths = [len(r) for r in responses]
    logp_all, values = policy(prompts, responses)
    ref_all = policy.reference(prompts, responses)
    actions = torch.tensor([t for r in responses for t in r], dtype=torch.long, device=logp_all.device)
    logp = logp_all.gather(1, actions[:, None]).squeeze(1)
    ref_logp = ref_all.gather(1, actions[:, None]).squeeze(1)
    kl_exact = (logp_all.exp() * (logp_all - ref_all)).sum(-1).clamp(min=0.0)  # rounding can dip below 0
    texts = policy.decode(responses)
    scores = np.asarray(reward(prompts, texts), dtype=np.float64)
    if scores.shape != (len(prompts),) or not np.all(np.isfinite(scores)):
        raise ValueError(f"the reward function must return one finite number per response, got shape {scores.shape}")
    rewards = -kl_coef * (logp - ref_logp)
    ends = torch.tensor(np.cumsum(lengths) - 1, device=rewards.device)
    rewards[ends] += torch.as_tensor(scores, dtype=rewards.dtype, device=rewards.device)
    adv, ret = [], []
    for r, v in zip(torch.split(rewards, lengths), torch.split(values, lengths)):
        done = torch.zeros(len(r), 1, device=r.device)
        done[-1] = 1.0
        a, g = gae(r[:, None], v[:, None], done, torch.zeros(1, device=r.device), config.ppo.gamma, config.ppo.gae_lambda)
        adv.append(a[:, 0])
        ret.append(g[:, 0])
    advantages = torch.cat(adv)
    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8) if len(advantages) > 1 else advantages
    return Rollout(prompts, responses, texts, actions, logp, values, advantages, torch.cat(ret), scores,
                   _per_response(kl_exact, lengths), _per_response(logp - ref_logp, lengths))  # fmt: skip


def update(policy: TextPolicy, optimiser: torch.optim.Optimizer, batch: Rollout, config: KLPPOConfig,
           seed: int) -> dict[str, float]:  # fmt: skip
    """PPO's epochs over the rollout's responses, in minibatches of whole responses."""
    ppo = config.ppo
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in batch.responses])])
    rng = np.random.default_rng(seed)
    params = [p for p in policy.parameters() if p.requires_grad]
    logs: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "entropy": [], "approx_kl": [],
                                    "clip_fraction": []}  # fmt: skip
    for _ in range(ppo.n_epochs):
        order = rng.permutation(len(batch.responses))
        for start in range(0, len(order), ppo.minibatch_size):
            rows = order[start : start + ppo.minibatch_size]
            idx = torch.tensor(np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in rows]), dtype=torch.long)
            logp_all, values = policy([batch.prompts[i] for i in rows], [batch.responses[i] for i in rows])
            dev = logp_all.device
            losses = ppo_losses(logp_all, batch.actions[idx.to(dev)], batch.old_logp[idx.to(dev)],
                                batch.advantages[idx.to(dev)], values, batch.old_values[idx.to(dev)],
                                batch.returns[idx.to(dev)], ppo.clip_range, ppo.vf_coef, ppo.ent_coef,
                                normalise_advantages=False)  # fmt: skip
            optimiser.zero_grad()
            losses.total.backward()
            torch.nn.utils.clip_grad_norm_(params, ppo.max_grad_norm)
            optimiser.step()
            for k in logs:
                logs[k].append(getattr(losses, k.removesuffix("_loss")).item())
    return {k: float(np.mean(v)) for k, v in logs.items()}


def adapt_kl_coef(kl_coef: float, kl: float, config: KLPPOConfig) -> float:
    """Ziegler et al.'s proportional controller: β ← β·(1 + clip(KL/target − 1, ±0.2)·n/horizon)."""
    if config.target_kl <= 0:
        return kl_coef
    error = float(np.clip(kl / config.target_kl - 1.0, -0.2, 0.2))
    return kl_coef * (1.0 + error * config.batch_size / config.kl_horizon)
