"""The LM as an offline-RL backbone: LaMo (Shi et al., ICLR 2024), a Decision Transformer whose
transformer is a pre-trained language model.

LaMo's four parts, as its paper and released configuration describe them:

1. the DT's GPT-2 body is replaced by the pre-trained LM's decoder stack (GPT-2 small there;
   any Hugging Face causal LM here, gemma-3-270m by default);
2. the LM's weights stay frozen and LoRA adapters on its attention are trained (their learning
   rate ``lm_learning_rate`` 1e-5, the rest 1e-4);
3. the linear embeddings of returns, states and actions become MLPs (``mlp_embedding``), since a
   single linear map cannot bend a 3-d state into the LM's 640-d input space;
4. the LM keeps training on language: the next-token loss on a text corpus, weighted by
   ``co_lambda`` = 0.1, is added to the action loss (LaMo used WikiText-103; with no downloads we
   use English prose that ships with Python: the standard library's documentation strings).

The ablation "LaMo without pre-training" is the same architecture with random weights, all of them
trained (no LoRA, no language loss). The Decision Transformer itself lives in :mod:`llmrl.rl.dt`;
this role only grafts an LM into it: :func:`graft_lm` swaps the body and the embeddings of a DT
model, and :class:`LanguageLoss` is the auxiliary loss ``train_dt`` adds to each step.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["LMBody", "LanguageLoss", "graft_lm", "load_backbone", "prose_corpus", "random_like"]


# --------------------------------------------------------------------------- the body
class LMBody(nn.Module):
    """A causal LM's decoder stack behind the interface the DT calls (``inputs_embeds``,
    ``attention_mask``, ``position_ids``). The DT passes zero positions (its timesteps carry time);
    an LM was pre-trained with token positions, so each row gets 0, 1, 2, ... over its real
    (unpadded) tokens, as when the LM reads text."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, **unused: Any) -> Any:
        if attention_mask is None:
            attention_mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        return self.decoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=positions,
                            use_cache=False)


def load_backbone(model: str = "gemma-3-270m", *, pretrained: bool = True, seed: int = 0) -> Any:
    """The causal LM (a transformers ``PreTrainedModel``, fp32) named as elsewhere in llmrl
    (a registered name, a folder or a .gguf). ``pretrained=False`` keeps the architecture and
    draws fresh random weights from ``seed`` (LaMo's "without pre-training" ablation)."""
    from llmrl.lm import load_model

    lm = load_model(model, dtype="fp32")
    causal = getattr(lm, "model", None)
    if not isinstance(causal, nn.Module):
        raise ValueError(f"LaMo needs a local transformers model; {model!r} loads as {type(lm).__name__} "
                         "(use a registered name, a model folder or a .gguf file)")
    causal.tokenizer = lm.tokenizer  # the language loss tokenises with it
    return causal if pretrained else random_like(causal, seed)


def random_like(causal_lm: nn.Module, seed: int = 0) -> nn.Module:
    """``causal_lm``'s architecture and tokenizer with fresh random weights drawn from ``seed``
    (the caller's torch generator untouched)."""
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = AutoModelForCausalLM.from_config(causal_lm.config, dtype=torch.float32)
    fresh.tokenizer = causal_lm.tokenizer
    return fresh


def _mlp(d_in: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, hidden))


def graft_lm(dt: nn.Module, causal_lm: nn.Module, *, lora_r: int | None = 8, mlp_embedding: bool = True,
             seed: int = 0) -> nn.Module:
    """Make ``dt`` (a ``transformers.DecisionTransformerModel`` built with ``hidden_size`` equal to
    the LM's) a LaMo model, in place: its body becomes ``causal_lm``'s decoder (frozen, with LoRA
    of rank ``lora_r`` on q/k/v/o; ``lora_r=None`` trains every weight, for the randomly
    initialised ablation), and its return/state/action embeddings become MLPs, all new weights drawn
    from ``seed``. Returns ``dt``."""
    decoder = causal_lm.get_decoder() if hasattr(causal_lm, "get_decoder") else causal_lm.model
    hidden = causal_lm.config.get_text_config().hidden_size
    if dt.config.hidden_size != hidden:
        raise ValueError(f"the DT's hidden_size is {dt.config.hidden_size} but the LM's is {hidden}: build the DT "
                         "with hidden_size equal to the LM's before grafting")
    with torch.random.fork_rng(devices=[]):  # seeded new weights, the caller's generator untouched
        torch.manual_seed(seed)
        if lora_r is not None:
            from peft import inject_adapter_in_model

            from llmrl.lm.lora import default_lora

            for p in causal_lm.parameters():
                p.requires_grad_(False)
            # In place, so the causal LM (used by the language loss) runs through the same adapters.
            inject_adapter_in_model(default_lora(r=lora_r, alpha=2 * lora_r), decoder)
        else:  # the DT reads no tokens: the word embeddings and output layer get no gradient
            for module in (causal_lm.get_input_embeddings(), causal_lm.get_output_embeddings()):
                for p in module.parameters() if module is not None else ():
                    p.requires_grad_(False)
        if mlp_embedding:
            dt.embed_state = _mlp(dt.config.state_dim, hidden)
            dt.embed_action = _mlp(dt.config.act_dim, hidden)
            dt.embed_return = _mlp(1, hidden)
    dt.encoder = LMBody(decoder)
    dt.__dict__["lamo_lm"] = causal_lm  # for the language loss; not a submodule, so not saved twice
    _save_trainable_only(dt)
    return dt


def _save_trainable_only(model: nn.Module) -> None:
    """Checkpoints of ``model`` leave out its frozen parameters (the LM's weights: a gigabyte that
    never changes); loading fills them from the model at hand, which was built the same way."""
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}

    def drop(module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: Any) -> None:
        for name in frozen:
            state.pop(prefix + name, None)

    def fill(state: dict[str, Any], prefix: str, *args: Any) -> None:
        params = dict(model.named_parameters())
        for name in frozen:
            state.setdefault(prefix + name, params[name].detach())

    model._register_state_dict_hook(drop)
    model._register_load_state_dict_pre_hook(fill)


def lm_parameters(dt: nn.Module) -> list[nn.Parameter]:
    """The trainable parameters inside the grafted LM (LoRA adapters, or all weights of a random one)."""
    return [p for p in dt.encoder.parameters() if p.requires_grad]


# --------------------------------------------------------------------------- the language loss
PROSE_MODULES = ("argparse", "collections", "csv", "datetime", "decimal", "difflib", "email", "fractions",
                 "functools", "heapq", "http.client", "itertools", "json", "logging", "pathlib", "pickle",
                 "random", "shutil", "statistics", "string", "subprocess", "tarfile", "textwrap", "threading",
                 "unittest", "urllib.request", "zipfile")
"""Standard-library modules whose documentation strings make the language corpus (fixed order)."""


def prose_corpus(modules: Sequence[str] = PROSE_MODULES, min_words: int = 12) -> list[str]:
    """English paragraphs from the docstrings of ``modules`` and of their public classes and
    functions, in a fixed order: the same corpus on every machine with the same Python."""
    paragraphs: list[str] = []
    for name in modules:
        module = importlib.import_module(name)
        docs = [inspect.getdoc(module)]
        for attr in sorted(vars(module)):
            obj = getattr(module, attr)
            if not attr.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj)):
                docs.append(inspect.getdoc(obj))
        for doc in docs:
            for para in (doc or "").split("\n\n"):
                text = " ".join(para.split())
                if len(text.split()) >= min_words and not text.startswith((">>>", "...")):
                    paragraphs.append(text)
    return paragraphs


class LanguageLoss:
    """LaMo's auxiliary loss: ``weight`` × the LM's next-token negative log-likelihood on
    ``batch_size`` windows of ``tokens`` tokens drawn from ``corpus`` (a fresh draw per call from
    torch's global generator, which a resumed ``train_dt`` restores). Call it with no arguments;
    ``train_dt`` adds it to each step."""

    def __init__(self, causal_lm: nn.Module, tokenizer: Any, corpus: Sequence[str] | None = None, *,
                 weight: float = 0.1, batch_size: int = 1, tokens: int = 32) -> None:
        if weight < 0 or batch_size < 1 or tokens < 2:
            raise ValueError(f"LanguageLoss needs weight >= 0, batch_size >= 1 and tokens >= 2; got {weight}, "
                             f"{batch_size}, {tokens}")
        ids = tokenizer("\n\n".join(corpus or prose_corpus()), add_special_tokens=False)["input_ids"]
        if len(ids) < tokens + 1:
            raise ValueError(f"the corpus has {len(ids)} tokens, fewer than one window of {tokens}: give more text")
        self.ids = torch.tensor(ids, dtype=torch.long)
        bos = getattr(tokenizer, "bos_token_id", None)
        self.bos = None if bos is None else torch.tensor([bos], dtype=torch.long)
        self.lm, self.weight, self.batch_size, self.tokens = causal_lm, weight, batch_size, tokens

    def __call__(self) -> torch.Tensor:
        starts = torch.randint(0, len(self.ids) - self.tokens, (self.batch_size,)).tolist()
        rows = torch.stack([self.ids[s:s + self.tokens] for s in starts])
        if self.bos is not None:
            rows = torch.cat([self.bos.expand(len(rows), 1), rows], dim=1)
        device = next(self.lm.parameters()).device
        out = self.lm(input_ids=rows.to(device), labels=rows.to(device), use_cache=False)
        return self.weight * out.loss
