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
