"""Reward models learned from preferences: the Bradley–Terry model on an LM backbone.

A preference pair is (prompt, chosen response, rejected response). The model scores a response
by a scalar head on the backbone's final state at the response's last token, and is trained to
make P(chosen ≻ rejected) = σ(r(chosen) − r(rejected)) likely: the loss is
−log σ(r_c − r_r) (Christiano et al. 2017; Ouyang et al. 2022; TRL's RewardTrainer computes the
same). The backbone trains through LoRA adapters; only they and the head change.

We write the loss instead of using TRL's RewardTrainer: it needs a sequence-classification
model and a `datasets` pipeline around our LM layer's model, for ten lines of arithmetic here.

A reward model is also a plain reward function: ``rm(prompts, responses) -> np.ndarray``, which
is what the PPO-KL trainer (:mod:`llmrl.rl.text_ppo`) takes, so a rule-based function can stand
in its place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

RewardFn = Callable[[Sequence[str], Sequence[str]], np.ndarray]
"""A reward for each (prompt, response): a learned model or any plain function."""


@dataclass(frozen=True)
class Preference:
    prompt: str
    chosen: str
    rejected: str


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """−log σ(r_c − r_r), averaged over the pairs."""
    return -torch.nn.functional.logsigmoid(r_chosen - r_rejected).mean()


def sample_preferences(prompts: Sequence[str], first: Sequence[str], second: Sequence[str], gold: RewardFn,
                       rng: np.random.Generator, temperature: float = 1.0) -> list[Preference]:  # fmt: skip
    """Label pairs of responses with a gold reward as a Bradley–Terry rater would: ``first`` is
    preferred with probability σ((g(first) − g(second)) / temperature). Ties in responses are
    dropped (nothing to prefer)."""
    g1, g2 = np.asarray(gold(prompts, first), float), np.asarray(gold(prompts, second), float)
    p_first = 1.0 / (1.0 + np.exp(-(g1 - g2) / temperature))
    out = []
    for p, a, b, q in zip(prompts, first, second, p_first):
        if a == b:
            continue
        out.append(Preference(p, a, b) if rng.random() < q else Preference(p, b, a))
    return out


class RewardModel(torch.nn.Module):
    """r(prompt, response): a scalar head on an LM's final state at the response's last token.

    ``lm`` is a local transformers model (:class:`llmrl.lm.hf.HFLM`); it is wrapped with LoRA
    adapters in place (pass a fresh one)."""

    def __init__(self, lm: Any, lora: Any | None = "default") -> None:
        super().__init__()
        from llmrl.lm.lora import add_lora, default_lora

        if lora == "default":
            lora = default_lora()
        if lora is not None:
            add_lora(lm, lora)
        self.lm = lm
        self.llm = lm.model  # registered, so .parameters() holds the adapters
        self.head = torch.nn.Linear(lm.hidden_size, 1).to(lm.device)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        ids = [self.lm.encode(r) for r in responses]
        _, _, last = self.lm.response_tensors(list(prompts), ids)
        return self.head(last.float()).squeeze(-1)

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 32) -> np.ndarray:  # type: ignore[override]
        out = [self.forward(prompts[i : i + batch_size], responses[i : i + batch_size]).cpu().numpy()
               for i in range(0, len(prompts), batch_size)]  # fmt: skip
        return np.concatenate(out) if out else np.zeros(0)

    def state(self) -> dict[str, torch.Tensor]:
        """What training changed (adapters and head), for a checkpoint."""
        return {k: v.detach().cpu().clone() for k, v in self.named_parameters() if v.requires_grad}


def accuracy(rm: RewardModel, pairs: Sequence[Preference], batch_size: int = 32) -> float:
    """The share of pairs the model orders as labelled (ties count half)."""
    if not pairs:
        return float("nan")
    prompts = [p.prompt for p in pairs]
    rc = rm(prompts, [p.chosen for p in pairs], batch_size)
    rr = rm(prompts, [p.rejected for p in pairs], batch_size)
    return float(np.mean((rc > rr) + 0.5 * (rc == rr)))


def train_reward_model(rm: RewardModel, train: Sequence[Preference], test: Sequence[Preference], *, epochs: int = 2,
                       batch_size: int = 16, learning_rate: float = 1e-4, seed: int = 0) -> list[dict[str, float]]:  # fmt: skip
    """Bradley–Terry training with Adam; one record per epoch (loss, train and held-out accuracy)."""
    if not train:
        raise ValueError("no preference pairs to train the reward model on")
    params = [p for p in rm.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=learning_rate)
    rng = np.random.default_rng(seed)
    history = []
    for epoch in range(epochs):
        rm.train()
        losses = []
        order = rng.permutation(len(train))
        for start in range(0, len(train), batch_size):
            batch = [train[i] for i in order[start : start + batch_size]]
            prompts = [p.prompt for p in batch] * 2
            scores = rm.forward(prompts, [p.chosen for p in batch] + [p.rejected for p in batch])
            loss = bradley_terry_loss(scores[: len(batch)], scores[len(batch):])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(loss.item())
        rm.eval()
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "train_accuracy": accuracy(rm, train),
                        "test_accuracy": accuracy(rm, test)})  # fmt: skip
    return history

