"""Numbers into and out of a causal LM: states and actions as embeddings, not as text (KALM).

KALM (Pang et al. 2024) grounds an LM in an environment's numeric states and discrete actions with
small adapters around an unchanged transformer:

- **in**: a state vector goes through ``Linear(state_dim -> hidden)`` and an action id through
  ``Embedding(n_actions -> hidden)``; the result replaces the input embedding of a placeholder
  token at that slot of the prompt;
- **out**: the hidden state one position earlier predicts the item (next-token style): a state by
  ``Linear(hidden -> state_dim)`` (MSE), an action by ``Linear(hidden -> n_actions)`` (CE), text
  by the LM's own output layer (CE).

Loss = 0.5 MSE_state + 0.5 CE_action + CE_text, each a mean over its targets (KALM's weights).
States are standardised with statistics fit on the data, so the MSE weighs every coordinate alike.

A sequence is a plain list of items (:class:`Text`, :class:`State`, :class:`Action`), each marked
as a target or not; :meth:`GroundedLM.batch` turns a list of sequences into tensors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from llmrl.lm.base import LMError, TrainableLM
from llmrl.lm.lora import add_lora, default_lora
from llmrl.runs import atomic_torch_save

TEXT, STATE, ACTION = 0, 1, 2
CHECKPOINT_FILE = "grounded.pt"


@dataclass(frozen=True)
class Text:
    """Text, tokenised without special tokens; ``target``: its tokens are trained with CE."""

    text: str
    target: bool = False


@dataclass(frozen=True, eq=False)
class State:
    """A state vector (raw, not standardised); ``target``: regressed with MSE from the slot before."""

    vector: np.ndarray
    target: bool = False


@dataclass(frozen=True)
class Action:
    """A discrete action id; ``target``: classified with CE from the slot before."""

    id: int
    target: bool = False


Item = Text | State | Action
Segments = list[Item]
"""A sequence: text, states and actions in order, e.g. ``[Text("Goal: ..."), State(s0), Action(3, True)]``."""


@dataclass
class Encoded:
    """One sequence as token slots: ``ids`` (placeholders at numeric slots), the kind and target
    flag of every slot, and the numeric values in slot order."""

    ids: np.ndarray  # (L,) int64
    kinds: np.ndarray  # (L,) int8: TEXT, STATE or ACTION
    targets: np.ndarray  # (L,) bool
    states: np.ndarray  # (n_state_slots, state_dim) float32, raw
    actions: np.ndarray  # (n_action_slots,) int64

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class NumericBatch:
    """Padded model inputs plus where each numeric value goes and each target is predicted from.

    Index tensors are ``(2, n)``: row 0 the batch row, row 1 the position. ``*_from`` positions are
    one before the target's slot (position t-1 predicts the item at t).
    """

    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    position_ids: torch.Tensor  # (B, L)
    state_slots: torch.Tensor  # (2, Ns) where state embeddings replace placeholders
    states: torch.Tensor  # (Ns, D) raw
    action_slots: torch.Tensor  # (2, Na)
    actions: torch.Tensor  # (Na,)
    text_from: torch.Tensor  # (2, Nt)
    text_targets: torch.Tensor  # (Nt,) token ids
    state_from: torch.Tensor  # (2, Nst)
    state_targets: torch.Tensor  # (Nst, D) raw
    action_from: torch.Tensor  # (2, Nat)
    action_targets: torch.Tensor  # (Nat,)

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())


class NumericAdapters(nn.Module):
    """KALM's four adapters plus the state standardisation (``fit_normalisation``), all fp32."""

    def __init__(self, state_dim: int, n_actions: int, hidden: int, embedding_std: float = 0.02) -> None:
        super().__init__()
        self.state_in = nn.Linear(state_dim, hidden)
        self.action_in = nn.Embedding(n_actions, hidden)
        self.state_out = nn.Linear(hidden, state_dim)
        self.action_out = nn.Linear(hidden, n_actions)
        self.register_buffer("state_mean", torch.zeros(state_dim))
        self.register_buffer("state_std", torch.ones(state_dim))
        # Start the input vectors at the scale of the LM's token embeddings (gemma scales its
        # embeddings by sqrt(hidden), so its scale is ~50x smollm2's): a fresh adapter then looks
        # like an ordinary token to the first layer instead of a huge or vanishing one.
        nn.init.normal_(self.state_in.weight, std=embedding_std / state_dim**0.5)
        nn.init.zeros_(self.state_in.bias)
        nn.init.normal_(self.action_in.weight, std=embedding_std)
        # Output heads start at zero: the mean state and a uniform action distribution, whatever
        # the scale of the LM's final hidden states (gemma's are large), like LoRA's B = 0.
        for head in (self.state_out, self.action_out):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    @property
    def state_dim(self) -> int:
        return self.state_in.in_features

    @property
    def n_actions(self) -> int:
        return self.action_in.num_embeddings

    def fit_normalisation(self, states: np.ndarray | torch.Tensor, min_std: float = 1e-3) -> None:
        """Set the standardisation from data, e.g. every observation of the training episodes."""
        x = torch.as_tensor(np.asarray(states, dtype=np.float32)).reshape(-1, self.state_dim)
        self.state_mean.copy_(x.mean(0))
        self.state_std.copy_(x.std(0).clamp(min=min_std) if len(x) > 1 else torch.ones(self.state_dim))

    def standardise(self, states: torch.Tensor) -> torch.Tensor:
        return (states - self.state_mean) / self.state_std

    def destandardise(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.state_std + self.state_mean

    def embed_state(self, states: torch.Tensor) -> torch.Tensor:
        return self.state_in(self.standardise(states.float()))

    def embed_action(self, actions: torch.Tensor) -> torch.Tensor:
        return self.action_in(actions)


class GroundedLM(nn.Module):
    """An HFLM grounded in numeric states and actions: the LM (LoRA-adapted by default, or fully
    trainable with ``lora=None``) plus :class:`NumericAdapters`.

    ``lora``: ``"default"`` (r=8, alpha=16 on q/k/v/o projections), a peft ``LoraConfig``, or
    ``None`` for a full fine-tune. Like :class:`llmrl.roles.policy.LMActorCritic`, the LM is
    wrapped in place (``lm.model`` becomes the peft model).
    """

    def __init__(self, lm: Any, state_dim: int = 10, n_actions: int = 40, lora: Any | None = "default") -> None:
        super().__init__()
        if not isinstance(lm, TrainableLM):
            raise TypeError(
                f"GroundedLM trains a local transformers model (a TrainableLM such as HFLM), got "
                f"{type(lm).__name__}: load one with llmrl.lm.load_model('smollm2-135m-instruct') or a local folder"
            )
        if lora == "default":
            lora = default_lora()
        if lora is not None:
            add_lora(lm, lora)
        else:
            lm.model.requires_grad_(True)
        self.lm = lm
        self.llm = lm.model  # registered, so .parameters() includes the LM's trainable weights
        self.lora = lora
        with torch.no_grad():
            probe = torch.arange(min(4096, lm.model.get_input_embeddings().num_embeddings), device=lm.device)
            embedding_std = float(lm.model.get_input_embeddings()(probe).float().std())
        self.adapters = NumericAdapters(state_dim, n_actions, lm.hidden_size, embedding_std).to(lm.device)
        # Any id works at numeric slots (its embedding is replaced); pad keeps it recognisable.
        self.placeholder_id = int(lm.tokenizer.pad_token_id)
        self._text_cache: dict[str, list[int]] = {}

    @property
    def device(self) -> torch.device:
        return self.lm.device

    # ------------------------------------------------------------------ inputs
    def _tokens(self, text: str) -> list[int]:
        ids = self._text_cache.get(text)
        if ids is None:
            ids = self._text_cache[text] = self.lm.encode(text)
        return ids

    def encode(self, segments: Segments) -> Encoded:
        """Token slots of one sequence: BOS (if the model has one), then each item in order."""
        ids, kinds, targets = list(self.lm._bos), [TEXT] * len(self.lm._bos), [False] * len(self.lm._bos)
        states, actions = [], []
        D = self.adapters.state_dim
        for item in segments:
            if isinstance(item, Text):
                tok = self._tokens(item.text)
                ids += tok
                kinds += [TEXT] * len(tok)
                targets += [item.target] * len(tok)
            elif isinstance(item, State):
                v = np.asarray(item.vector, dtype=np.float32)
                if v.shape != (D,):
                    raise ValueError(f"a state must have shape ({D},), got {v.shape}")
                ids.append(self.placeholder_id)
                kinds.append(STATE)
                targets.append(item.target)
                states.append(v)
            elif isinstance(item, Action):
                a = int(item.id)
                if not 0 <= a < self.adapters.n_actions:
                    raise ValueError(f"action {a} is outside [0, {self.adapters.n_actions})")
                ids.append(self.placeholder_id)
                kinds.append(ACTION)
                targets.append(item.target)
                actions.append(a)
            else:
                raise TypeError(f"a sequence holds Text, State and Action items, got {type(item).__name__}")
        if targets and targets[0]:
            raise ValueError("the first slot of a sequence cannot be a target: nothing precedes it")
        return Encoded(
            np.asarray(ids, dtype=np.int64), np.asarray(kinds, dtype=np.int8), np.asarray(targets, dtype=bool),
            np.asarray(states, dtype=np.float32).reshape(-1, D), np.asarray(actions, dtype=np.int64),
        )

    def collate(self, encoded: Sequence[Encoded], padding: str = "right") -> NumericBatch:
        """Pad encoded sequences into one batch. ``padding="left"`` aligns their ends (prompts
        for generation); positions count real tokens only, so both sides give the same outputs."""
        if padding not in ("left", "right"):
            raise ValueError(f"padding must be 'left' or 'right', got {padding!r}")
        B, L = len(encoded), max(len(e) for e in encoded)
        ids = np.full((B, L), self.placeholder_id, dtype=np.int64)
        mask = np.zeros((B, L), dtype=np.int64)
        kinds = np.full((B, L), -1, dtype=np.int8)
        targets = np.zeros((B, L), dtype=bool)
        for b, e in enumerate(encoded):
            cols = slice(L - len(e), L) if padding == "left" else slice(0, len(e))
            ids[b, cols], mask[b, cols], kinds[b, cols], targets[b, cols] = e.ids, 1, e.kinds, e.targets
        # Row-major order of the slots matches the order of each sequence's values.
        states = np.concatenate([e.states for e in encoded]) if B else np.zeros((0, self.adapters.state_dim))
        actions = np.concatenate([e.actions for e in encoded])

        def where(m: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.stack(np.nonzero(m)), dtype=torch.long)

        is_state, is_action = kinds == STATE, kinds == ACTION
        state_slots, action_slots = where(is_state), where(is_action)
        # Target values in slot order: pick them out of the per-kind value lists.
        state_rank = np.cumsum(is_state.ravel()).reshape(B, L) - 1
        action_rank = np.cumsum(is_action.ravel()).reshape(B, L) - 1
        t_text, t_state, t_action = targets & (kinds == TEXT), targets & is_state, targets & is_action
        dev = self.device

        def shifted(m: np.ndarray) -> torch.Tensor:
            idx = where(m)
            return (idx - torch.tensor([[0], [1]])).to(dev)

        mask_t = torch.as_tensor(mask)
        return NumericBatch(
            input_ids=torch.as_tensor(ids).to(dev),
            attention_mask=mask_t.to(dev),
            position_ids=(mask_t.cumsum(-1) - 1).clamp(min=0).to(dev),
            state_slots=state_slots.to(dev),
            states=torch.as_tensor(states, dtype=torch.float32).to(dev),
            action_slots=action_slots.to(dev),
            actions=torch.as_tensor(actions, dtype=torch.long).to(dev),
            text_from=shifted(t_text),
            text_targets=torch.as_tensor(ids[t_text]).to(dev),
            state_from=shifted(t_state),
            state_targets=torch.as_tensor(states[state_rank[t_state]], dtype=torch.float32).reshape(
                -1, self.adapters.state_dim).to(dev),
            action_from=shifted(t_action),
            action_targets=torch.as_tensor(actions[action_rank[t_action]], dtype=torch.long).to(dev),
        )

    def batch(self, sequences: Sequence[Segments], padding: str = "right") -> NumericBatch:
        return self.collate([self.encode(s) for s in sequences], padding)

    # ------------------------------------------------------------------ model
    def embed_state(self, states: torch.Tensor) -> torch.Tensor:
        return self.adapters.embed_state(states).to(self.lm.dtype)

    def embed_action(self, actions: torch.Tensor) -> torch.Tensor:
        return self.adapters.embed_action(actions).to(self.lm.dtype)

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.llm.get_input_embeddings()(ids)

    def inputs_embeds(self, batch: NumericBatch) -> torch.Tensor:
        """Token embeddings, with the adapter outputs at the numeric slots."""
        emb = self.embed_tokens(batch.input_ids)
        s, a = batch.state_slots, batch.action_slots
        if s.shape[1]:
            emb = emb.index_put((s[0], s[1]), self.embed_state(batch.states))
        if a.shape[1]:
            emb = emb.index_put((a[0], a[1]), self.embed_action(batch.actions))
        return emb

    def decoder(self) -> nn.Module:
        return self.llm.get_decoder()

    def hidden_states(self, batch: NumericBatch) -> torch.Tensor:
        """Final-layer hidden states, (B, L, hidden)."""
        return self.decoder()(
            inputs_embeds=self.inputs_embeds(batch), attention_mask=batch.attention_mask,
            position_ids=batch.position_ids, use_cache=False,
        ).last_hidden_state

    def text_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The LM's output layer (with gemma-2-style soft-capping where configured), fp32."""
        logits = self.llm.get_output_embeddings()(hidden).float()
        cap = getattr(self.llm.config.get_text_config(), "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    def state_prediction(self, hidden: torch.Tensor) -> torch.Tensor:
        """Predicted standardised state from hidden states (fp32)."""
        return self.adapters.state_out(hidden.float())

    def action_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.adapters.action_out(hidden.float())

    def forward(self, batch: NumericBatch) -> dict[str, torch.Tensor]:
        """KALM's loss on one batch: ``loss`` = 0.5 mse_state + 0.5 ce_action + ce_text.

        A kind without targets in the batch contributes 0. Heads run only at positions that
        predict a target (the text head's 49k-262k outputs per position would dominate otherwise).
        """
        h = self.hidden_states(batch)
        zero = h.new_zeros((), dtype=torch.float32)
        mse = ce_a = ce_t = zero
        if batch.state_from.shape[1]:
            pred = self.state_prediction(h[batch.state_from[0], batch.state_from[1]])
            mse = torch.nn.functional.mse_loss(pred, self.adapters.standardise(batch.state_targets))
        if batch.action_from.shape[1]:
            logits = self.action_logits(h[batch.action_from[0], batch.action_from[1]])
            ce_a = torch.nn.functional.cross_entropy(logits, batch.action_targets)
        if batch.text_from.shape[1]:
            logits = self.text_logits(h[batch.text_from[0], batch.text_from[1]])
            ce_t = torch.nn.functional.cross_entropy(logits, batch.text_targets)
        loss = 0.5 * mse + 0.5 * ce_a + ce_t  # KALM's weighting
        return {"loss": loss, "mse_state": mse, "ce_action": ce_a, "ce_text": ce_t}

    # ------------------------------------------------------------- save / load
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """LoRA (or all LM) weights that train, the adapters and the standardisation."""
        state = {n: p.detach().cpu().clone() for n, p in self.named_parameters() if p.requires_grad}
        state.update({n: b.detach().cpu().clone() for n, b in self.named_buffers() if n.startswith("adapters.")})
        return state

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        wanted = set(self.trainable_state())
        lacking = wanted - set(state)
        if unexpected or lacking:
            raise LMError(
                f"checkpoint does not match this model (unexpected {sorted(unexpected)[:3]}, "
                f"missing {sorted(lacking)[:3]}): was it saved with another LoRA setting or model?"
            )

    def meta(self) -> dict[str, Any]:
        lora = None
        if self.lora is not None:
            lora = {"r": self.lora.r, "alpha": self.lora.lora_alpha, "dropout": self.lora.lora_dropout,
                    "target_modules": sorted(self.lora.target_modules)}
        return {"format": 1, "model": self.lm.name, "state_dim": self.adapters.state_dim,
                "n_actions": self.adapters.n_actions, "hidden": self.lm.hidden_size, "lora": lora}

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``directory/grounded.pt`` atomically (temporary file, fsync, rename)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / CHECKPOINT_FILE
        atomic_torch_save(path, {"meta": self.meta(), "state": self.trainable_state()})
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike[str], lm: Any) -> GroundedLM:
        """Rebuild a saved GroundedLM on ``lm`` (a freshly loaded HFLM of the same base model)."""
        path = Path(directory) / CHECKPOINT_FILE
        if not path.exists():
            raise LMError(f"no {CHECKPOINT_FILE} in {directory}: save one with GroundedLM.save(directory)")
        saved = torch.load(path, map_location="cpu", weights_only=True)
        meta = saved["meta"]
        if meta["hidden"] != lm.hidden_size:
            raise LMError(
                f"{path} was trained on {meta['model']!r} (hidden {meta['hidden']}), but the LM given "
                f"has hidden size {lm.hidden_size}: load {meta['model']!r}"
            )
        lora = meta["lora"]
        if lora is not None:
            from peft import LoraConfig

            lora = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                              target_modules=lora["target_modules"])
        grounded = cls(lm, meta["state_dim"], meta["n_actions"], lora=lora)
        grounded.load_trainable_state(saved["state"])
        return grounded
