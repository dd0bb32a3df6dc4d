"""LoRA adapters (peft) on a trainable LM, one way for every role that fine-tunes one (GLAM's policy,
KALM's grounded LM)."""

from __future__ import annotations

import warnings
from typing import Any

from llmrl.lm.errors import LMError


def default_lora(r: int = 8, alpha: int = 16) -> Any:
    """LoRA of rank ``r`` on the attention projections (q, k, v, o), no dropout."""
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])


def add_lora(lm: Any, lora: Any) -> None:
    """Wrap ``lm.model`` in peft adapters, in place (the base weights freeze, the adapters train)."""
    from peft import PeftModel, get_peft_model

    if isinstance(lm.model, PeftModel):
        raise LMError("this LM already carries peft adapters: load a fresh one for each trainable role")
    with warnings.catch_warnings():
        # peft reads transformers' deprecated `is_gradient_checkpointing`; the warning is theirs.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        lm.model = get_peft_model(lm.model, lora)


def remove_lora(lm: Any) -> None:
    """Drop ``lm``'s peft adapters, in place, leaving its base weights as they were."""
    from peft import PeftModel

    if isinstance(lm.model, PeftModel):
        lm.model = lm.model.unload()


def train_completions(lm: Any, pairs: list[tuple[str, str]], epochs: int, learning_rate: float, batch_size: int,
                      lora_r: int = 8, seed: int = 0) -> list[float]:  # fmt: skip
    """Supervised fine-tuning with new LoRA adapters: teach ``lm`` (an HFLM) to write each pair's
    completion after its prompt (the loss is the completion tokens' mean negative log-likelihood).
    Returns the mean loss per epoch; the adapters stay on ``lm`` (drop them with :func:`remove_lora`)."""
    import numpy as np
    import torch

    if not pairs:
        raise ValueError("train_completions needs at least one (prompt, completion) pair")
    add_lora(lm, default_lora(r=lora_r))
    optimiser = torch.optim.AdamW([p for p in lm.model.parameters() if p.requires_grad], lr=learning_rate)
    rows = [(prompt, lm.encode(completion)) for prompt, completion in pairs]
    rng = np.random.default_rng(seed)
    losses = []
    lm.model.train()
    for _ in range(epochs):
        order, total = rng.permutation(len(rows)), 0.0
        for start in range(0, len(rows), batch_size):
            batch = [rows[i] for i in order[start : start + batch_size]]
            logp, _, _ = lm.response_tensors([p for p, _ in batch], [ids for _, ids in batch])
            targets = torch.tensor([t for _, ids in batch for t in ids], dtype=torch.long, device=logp.device)
            loss = -logp.gather(1, targets[:, None]).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
        losses.append(total / len(rows))
    lm.model.eval()
    return losses
