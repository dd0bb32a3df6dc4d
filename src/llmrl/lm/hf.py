"""The transformers backend: any causal LM from a local folder or a GGUF file, trainable.

Scoring is where the cost of an LM policy lies, so it is done the efficient way:

1. every context is encoded once (a batch, left-padded), keeping its KV cache;
2. the cache rows are repeated for that context's candidates and the candidate tokens run as one
   continuation batch;
3. the output layer runs only at the positions that predict a candidate token. gemma-3's 262k-row
   output layer costs more than the rest of the model per position, so this matters as much as
   the prefix sharing.

``score_naive`` runs each (context, candidate) pair as its own sequence with full logits: the
reference that tests check the fast path against, and the baseline of the scoring benchmark.

The torch module stays reachable (``.model``), and ``score_tensors`` returns differentiable
log-probabilities plus the hidden state of each context's last token, for value heads and LoRA.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmrl.lm.base import (
    CandidateScores,
    Generation,
    LanguageModel,
    LMError,
    as_candidate_lists,
    check_generate_args,
    pair_token_ids,
    truncate_at_stop,
)
from llmrl.lm.loading import quiet_loading


def cpu_supports_bf16() -> bool:
    """True where bf16 matmuls run natively on this CPU (AVX512-BF16 or AMX), so bf16 is faster."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str | torch.dtype, device: str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
             "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_supports_bf16() else torch.float32
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}: use one of auto, {', '.join(table)}")
    return table[dtype]


def default_chunk(device: torch.device | str) -> int:
    """Contexts per scoring forward, by device. A CPU gains nothing past ~16 (its cores are busy
    already, and larger padded batches waste work); a GPU needs wide batches to be busy: on an
    H100, a same-architecture gemma-3-270m scored 101 contexts/s in chunks of 16 and 385 in
    chunks of 256 (docs/benchmarks.md, "Scoring"). The KV cache of 256 GLAM prompts is small next
    to a GPU's memory for models of this size; pass ``context_batch_size`` for large models."""
    return 256 if torch.device(device).type == "cuda" else 16


def kv_cache_kwargs(decoder: torch.nn.Module, cache: Any) -> dict[str, Any]:
    """The keyword that hands a KV cache to ``decoder``: ``cache`` in current transformers,
    ``past_key_values`` before it was renamed (passing the old name now warns)."""
    return {_cache_kwarg(type(decoder)): cache}


@functools.cache
def _cache_kwarg(cls: type) -> str:
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def returned_cache(output: Any) -> Any:
    """The KV cache a decoder returned (``output.cache``, formerly ``output.past_key_values``)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


@dataclass
class ScoreTensors:
    """Differentiable scores of one flattened batch of (context, candidate) pairs."""

    logprob: torch.Tensor  # (n_pairs,) summed token log-probs
    n_tokens: torch.Tensor  # (n_pairs,)
    context_index: torch.Tensor  # (n_pairs,) which context each pair belongs to
    context_hidden: torch.Tensor  # (n_contexts, hidden) final-layer state of each context's last token


class HFLM(LanguageModel):
    """A transformers causal LM. ``path`` is a folder with config.json and weights."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        device: str = "cpu",
        dtype: str | torch.dtype = "auto",
        context_batch_size: int | None = None,
        pair_batch_size: int | None = None,
        num_threads: int | None = None,
    ) -> None:
        super().__init__()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path).expanduser()
        if not (path / "config.json").exists():
            raise LMError(
                f"{path} is not a Hugging Face model folder (no config.json). Pass a folder saved "
                "with save_pretrained, a .gguf file, or a registered name (see llmrl.lm.registry)."
            )
        if num_threads:
            torch.set_num_threads(num_threads)
        self.name = name or path.name
        self.path = path
        self.device = torch.device(device)
        self.dtype = resolve_dtype(dtype, device)
        t0 = time.perf_counter()
        try:
            with quiet_loading():
                self.tokenizer = AutoTokenizer.from_pretrained(str(path))
                self.model = AutoModelForCausalLM.from_pretrained(str(path), dtype=self.dtype).to(self.device)
        except Exception as e:  # noqa: BLE001 - safetensors, JSON and OS errors all mean a damaged folder
            raise LMError(f"cannot load the model in {path} ({type(e).__name__}: {str(e)[:200]}): the folder is "
                          "damaged or incomplete; for a registered model delete it (it is converted again), "
                          "otherwise re-save it") from None
        self._check_weights()
        self.model.eval()
        self.init = "pretrained"  # or "random:<seed>:..." after reinitialise()
        self.adapters: dict[str, str] = {}  # adapters loaded at run time: name -> peft's name for it
        self.load_seconds = time.perf_counter() - t0
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # Contexts (and context-candidate pairs) scored per forward: see default_chunk().
        self.context_batch_size = context_batch_size or default_chunk(self.device)
        self.pair_batch_size = pair_batch_size or 8 * self.context_batch_size
        # Prepend BOS ourselves: some tokenizers add it, some do not, and scores depend on it.
        self._bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []

    def reinitialise(self, seed: int, keep_embeddings: bool = True) -> None:
        """Replace the weights with the architecture's own random initialisation (seeded): the same
        network without what pretraining put in it. ``keep_embeddings`` keeps the pretrained token
        embeddings (and the output layer tied to them), as GLAM's non-pretrained baseline (NPAE)
        does, so words stay distinguishable and only the transformer's knowledge is gone."""
        from transformers import AutoModelForCausalLM

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = AutoModelForCausalLM.from_config(self.model.config, dtype=self.dtype)
        if keep_embeddings:
            with torch.no_grad():
                fresh.get_input_embeddings().weight.copy_(self.model.get_input_embeddings().weight)
                if not self.model.config.get_text_config().tie_word_embeddings:
                    fresh.get_output_embeddings().weight.copy_(self.model.get_output_embeddings().weight)
        self.model = fresh.to(self.device).eval()
        self.init = f"random:{seed}:{'pretrained-embeddings' if keep_embeddings else 'all'}"

    # ----------------------------------------------------------------- adapters loaded at run time
    def load_adapter(self, name: str, path: str | os.PathLike[str]) -> None:
        """Load the peft LoRA adapter saved in ``path`` as ``name`` (replacing an adapter of that
        name): what a serving process does when the learner pushes new adapters (vLLM's
        ``/v1/load_lora_adapter``). The base weights stay; :meth:`adapter` picks one per call."""
        from peft import PeftModel

        folder = Path(path)
        if not (folder / "adapter_config.json").is_file():
            raise LMError(f"{folder} holds no adapter_config.json: give a folder written by peft's save_pretrained "
                          "(llmrl.scale.adapter_sync.AdapterSync writes one)")
        # Each load gets a fresh internal name, so the adapter in use is never deleted under a call.
        self._adapter_loads = getattr(self, "_adapter_loads", 0) + 1
        internal = f"runtime_{self._adapter_loads}"  # peft names allow no dots
        with quiet_loading(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(folder), adapter_name=internal, is_trainable=False)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(folder), adapter_name=internal)
        self.model.eval()
        previous = self.adapters.get(name)
        self.adapters[name] = internal
        if previous is not None:
            self.model.set_adapter(internal)
            self.model.delete_adapter(previous)

    def unload_adapter(self, name: str) -> None:
        """Forget adapter ``name`` (KeyError if it is not loaded)."""
        internal = self.adapters.pop(name)
        others = [a for a in self.model.peft_config if a != internal]
        if others:  # peft keeps one adapter at least: a lone one stays in memory, unused
            self.model.set_adapter(others[0])
            self.model.delete_adapter(internal)

    @contextlib.contextmanager
    def adapter(self, name: str | None) -> Iterator[None]:
        """Calls inside run with adapter ``name`` on, or with none (the base model) for None."""
        from peft import PeftModel

        if name is None:
            with self.model.disable_adapter() if isinstance(self.model, PeftModel) else contextlib.nullcontext():
                yield
            return
        if name not in self.adapters:
            raise LMError(f"no adapter named {name!r} is loaded (loaded: {sorted(self.adapters)}): load it first")
        self.model.set_adapter(self.adapters[name])
        yield

    def _check_weights(self) -> None:
        """A weight file of NaNs or infinities loads without complaint and scores NaN later."""
        for name, p in self.model.named_parameters():
            if not torch.isfinite(p).all():
                raise LMError(f"the model in {self.path} has non-finite weights ({name}): it is damaged; for a "
                              "registered model delete the folder (it is converted again)")

    # ----------------------------------------------------------------- tokens
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without special tokens."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _pair_ids(
        self, context: str, candidate: str, context_ids: list[int] | None = None
    ) -> tuple[list[int], list[int]]:
        return pair_token_ids(self.encode, self._bos, context, candidate, context_ids)

    @property
    def cache_identity(self) -> str:
        # The folder, when its weights were last written, and the dtype all change the scores.
        weights = sorted(self.path.glob("*.safetensors")) + sorted(self.path.glob("*.bin"))
        stamp = ",".join(f"{w.name}:{w.stat().st_size}:{int(w.stat().st_mtime)}" for w in weights)
        init = "" if self.init == "pretrained" else f":{self.init}"
        return f"hf:{self.path.resolve()}:{stamp}:{str(self.dtype).removeprefix('torch.')}{init}"

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.get_text_config().hidden_size)

    def _decoder(self) -> torch.nn.Module:
        return self.model.get_decoder()

    @torch.no_grad()
    def mean_hidden(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Each text's final hidden states averaged over its tokens (BOS excluded), L2-normalised:
        the LM's own sentence vector, which no paraphrase objective shaped (unlike MiniLM's).
        Shape (len(texts), hidden_size), float32."""
        out = np.zeros((len(texts), self.hidden_size), np.float32)
        decoder = self._decoder()
        for start in range(0, len(texts), batch_size):
            ids = [self._bos + self.encode(t) for t in texts[start: start + batch_size]]
            width = max(len(x) for x in ids)
            tokens = torch.tensor([x + [self.tokenizer.pad_token_id] * (width - len(x)) for x in ids], device=self.device)
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=self.device)
            hidden = decoder(input_ids=tokens, attention_mask=mask).last_hidden_state.float()
            mask = mask.clone()
            mask[:, : len(self._bos)] = 0  # the BOS state is the same for every text
            mean = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
            out[start: start + len(ids)] = torch.nn.functional.normalize(mean, dim=-1).cpu().numpy()
        return out

    def _logprobs_at(self, hidden: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        """log p(token_ids | hidden) through the output layer, for selected rows only."""
        logits = self.model.get_output_embeddings()(hidden).float()
        cap = getattr(self.model.config.get_text_config(), "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return torch.log_softmax(logits, dim=-1).gather(-1, token_ids[:, None]).squeeze(-1)

    # ---------------------------------------------------------------- scoring
    def score_tensors(
        self, contexts: Sequence[str], candidates: Sequence[Sequence[str]]
    ) -> ScoreTensors:
        """Shared-prefix scoring of one batch; differentiable when grad is enabled.

        ``candidates[i]`` are the candidates of ``contexts[i]``. The pairs come back flattened in
        order (context 0's candidates, then context 1's, ...).
        """
        pad = self.tokenizer.pad_token_id
        dev = self.device
        ctx_ids, cand_ids, owner = [], [], []
        for i, (c, cands) in enumerate(zip(contexts, candidates)):
            ids = None  # the context's tokens, from its first candidate on
            for cand in cands:
                ids, cand_i = self._pair_ids(c, cand, ids)
                cand_ids.append(cand_i)
                owner.append(i)
            ctx_ids.append(ids)

        # 1. encode contexts once: left-pad so every context ends at the same column.
        ctx, ctx_mask = _padded(ctx_ids, pad, left=True)
        ctx_pos = (ctx_mask.cumsum(-1) - 1).clamp(min=0)
        out = self._decoder()(
            input_ids=ctx.to(dev), attention_mask=ctx_mask.to(dev), position_ids=ctx_pos.to(dev),
            use_cache=True,
        )
        ctx_hidden = out.last_hidden_state[:, -1]  # predicts every candidate's first token
        cache = returned_cache(out)

        # 2. continue each context's cache with its candidates' tokens (all but the last token:
        #    nothing needs the prediction that follows a candidate).
        owner_t = torch.tensor(owner, dtype=torch.long)
        lengths = torch.tensor([len(x) for x in cand_ids], dtype=torch.long)
        first_tok = torch.tensor([x[0] for x in cand_ids], dtype=torch.long)
        logprob = self._logprobs_at(ctx_hidden[owner_t.to(dev)], first_tok.to(dev))
        L = int(lengths.max()) - 1
        if L > 0:
            cont, cont_mask = _padded([ids[:-1] for ids in cand_ids], pad, left=False, width=L)
            cache.reorder_cache(owner_t.to(dev))
            mask = torch.cat([ctx_mask[owner_t], cont_mask], dim=1)
            ctx_len = ctx_mask.sum(-1)[owner_t]
            pos = ctx_len[:, None] + torch.arange(L)[None, :]
            decoder = self._decoder()
            h = decoder(
                input_ids=cont.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                use_cache=True, **kv_cache_kwargs(decoder, cache),
            ).last_hidden_state
            # 3. output layer only where a candidate token is predicted: position k -> token k+1,
            #    i.e. every unmasked cell of the continuation.
            r, c = cont_mask.nonzero(as_tuple=True)
            targets = torch.tensor([t for ids in cand_ids for t in ids[1:]], dtype=torch.long)
            lp = self._logprobs_at(h[r.to(dev), c.to(dev)], targets.to(dev))
            logprob = logprob.index_add(0, r.to(dev), lp)
        return ScoreTensors(logprob, lengths.to(dev), owner_t.to(dev), ctx_hidden)

    def score(
        self,
        contexts: Sequence[str],
        candidates: Sequence[str] | Sequence[Sequence[str]],
    ) -> list[CandidateScores]:
        lists = as_candidate_lists(contexts, candidates)
        self.stats.score_calls += 1
        self.stats.scored_contexts += len(contexts)
        results: list[CandidateScores] = []
        with torch.inference_mode():
            for start, stop in self._chunks(lists):
                st = self.score_tensors(contexts[start:stop], lists[start:stop])
                lp = st.logprob.float().cpu().numpy()
                nt = st.n_tokens.cpu().numpy()
                k = 0
                for cands in lists[start:stop]:
                    s, n = lp[k : k + len(cands)], nt[k : k + len(cands)]
                    results.append(CandidateScores.from_sums(cands, s, n))
                    k += len(cands)
        return results

    def _chunks(self, lists: list[tuple[str, ...]]) -> Iterator[tuple[int, int]]:
        """Split contexts so a chunk has at most ``context_batch_size`` contexts and about
        ``pair_batch_size`` (context, candidate) pairs: bounds memory for long candidate lists."""
        start, pairs = 0, 0
        for i, cands in enumerate(lists):
            if i > start and (i - start >= self.context_batch_size or pairs + len(cands) > self.pair_batch_size):
                yield start, i
                start, pairs = i, 0
            pairs += len(cands)
        if start < len(lists):
            yield start, len(lists)

    def score_naive(
        self,
        contexts: Sequence[str],
        candidates: Sequence[str] | Sequence[Sequence[str]],
        batch_size: int = 4,
    ) -> list[CandidateScores]:
        """Reference scorer: every (context, candidate) pair is its own sequence, run through the
        whole model with full logits (``batch_size`` pairs at a time, right-padded: full logits
        take ~1 MB per token with a 262k vocabulary)."""
        lists = as_candidate_lists(contexts, candidates)
        pairs = [self._pair_ids(c, cand) for c, cands in zip(contexts, lists) for cand in cands]
        pad = self.tokenizer.pad_token_id
        lp = np.zeros(len(pairs), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(pairs), batch_size):
                chunk = pairs[start : start + batch_size]
                T = max(len(a) + len(b) for a, b in chunk)
                ids = torch.full((len(chunk), T), pad, dtype=torch.long)
                mask = torch.zeros_like(ids)
                for j, (a, b) in enumerate(chunk):
                    ids[j, : len(a) + len(b)] = torch.tensor(a + b)
                    mask[j, : len(a) + len(b)] = 1
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
                logp = torch.log_softmax(logits.float()[:, :-1], dim=-1)
                tok = logp.gather(-1, ids[:, 1:, None].to(self.device)).squeeze(-1).cpu()
                for j, (a, b) in enumerate(chunk):
                    lp[start + j] = float(tok[j, len(a) - 1 : len(a) + len(b) - 1].sum())
        results, k = [], 0
        for cands in lists:
            s = lp[k : k + len(cands)]
            n = np.array([len(pairs[k + i][1]) for i in range(len(cands))])
            results.append(CandidateScores.from_sums(cands, s, n))
            k += len(cands)
        return results

    def token_logprobs(self, text: str) -> list[tuple[str, float | None]]:
        """Per-token log-probs of ``text`` (the first token has none): what a server's
        ``echo`` + ``logprobs`` returns. Used by the OpenAI-compatible server in ``llmrl.lm.serve``."""
        ids = self._bos + self.encode(text)
        with torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([ids], device=self.device)).logits.float()
            logp = torch.log_softmax(logits[0, :-1], dim=-1)
            lp = logp.gather(-1, torch.tensor(ids[1:], device=self.device)[:, None]).squeeze(-1).tolist()
        pieces = [self.tokenizer.decode([t]) for t in ids]
        out: list[tuple[str, float | None]] = [(pieces[i], lp[i - 1] if i > 0 else None) for i in range(len(ids))]
        # The BOS token is not part of the text a server echoes.
        return out[len(self._bos):] if self._bos else out

    # ------------------------------------------------- token-level policies (RLHF)
    def sample_ids(self, prompts: Sequence[str], max_new_tokens: int, temperature: float = 1.0,
                   seed: int | None = None) -> list[list[int]]:  # fmt: skip
        """Sample a response per prompt from the full distribution (no top-k or top-p, so the
        sampler is the policy PPO scores) and return its token ids, cut after the first end of
        sequence (kept: stopping is the policy's choice too)."""
        if temperature <= 0:
            raise LMError("sample_ids samples the policy: temperature must be > 0")
        pad, eos = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id
        ids, mask = _padded([self._bos + self.encode(p) for p in prompts], pad, left=True)
        rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
        with rng, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                      max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                                      top_k=0, top_p=1.0, pad_token_id=pad, eos_token_id=eos)  # fmt: skip
        rows = []
        for row in out[:, ids.shape[1]:].tolist():
            cut = row.index(eos) + 1 if eos in row else len(row)
            rows.append(row[:cut])
        return rows

    def response_tensors(self, prompts: Sequence[str], responses: Sequence[Sequence[int]]) -> tuple[torch.Tensor, ...]:
        """One forward pass over each prompt followed by its response tokens; differentiable when
        grad is enabled. Returns ``(logp_all, hidden, last_hidden)``: the log-distribution over the
        vocabulary at every position that predicts a response token (rows flattened in order,
        prompt 0's tokens first), the final-layer state there, and the state at each sequence's
        last token (a reward model's input)."""
        pad = self.tokenizer.pad_token_id
        rows = [self._bos + self.encode(p) for p in prompts]
        starts = [len(r) for r in rows]
        full = [r + list(x) for r, x in zip(rows, responses)]
        ids, mask = _padded(full, pad, left=False)
        hidden = self._decoder()(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).last_hidden_state
        lengths = mask.sum(1)
        last = hidden[torch.arange(len(full)), (lengths - 1).to(self.device)]
        r = torch.tensor([i for i, x in enumerate(responses) for _ in x], dtype=torch.long)
        c = torch.tensor([starts[i] - 1 + k for i, x in enumerate(responses) for k in range(len(x))], dtype=torch.long)
        h = hidden[r.to(self.device), c.to(self.device)]
        logits = self.model.get_output_embeddings()(h).float()
        cap = getattr(self.model.config.get_text_config(), "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return torch.log_softmax(logits, dim=-1), h, last

    # ------------------------------------------------------------- generation
    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        n: int = 1,
        seed: int | None = None,
    ) -> list[Generation]:
        stop = check_generate_args(prompts, max_new_tokens, temperature, n, top_p, stop)
        self.stats.generate_calls += 1
        self.stats.generated_prompts += len(prompts)
        if len(prompts) == 0:
            return []
        pad = self.tokenizer.pad_token_id
        encoded = [self._bos + self.encode(p) for p in prompts]
        T = max(len(x) for x in encoded)
        ids = torch.full((len(prompts), T), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, x in enumerate(encoded):
            ids[i, T - len(x):] = torch.tensor(x)
            mask[i, T - len(x):] = 1
        self.stats.prompt_tokens += int(mask.sum())
        kwargs: dict = dict(max_new_tokens=max_new_tokens, num_return_sequences=n, pad_token_id=pad)
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            kwargs.update(stopping_criteria=[_StopStrings(self.tokenizer, T, stop)])
        rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
        ids, mask = ids.to(self.device), mask.to(self.device)
        with rng, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            if n > 1 and T > 1:
                # The n samples of a prompt share its prefix: read it once, then copy its KV cache n
                # times (generate's own num_return_sequences would re-read the prompt n times).
                # Positions count real tokens, as generate counts them for left-padded rows.
                positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, :-1]
                prefix = self._decoder()(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions,
                                         use_cache=True)  # fmt: skip
                cache = returned_cache(prefix)
                cache.batch_repeat_interleave(n)
                kwargs.update(num_return_sequences=1, **kv_cache_kwargs(self.model, cache))
                ids, mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
            out = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        texts = self.tokenizer.batch_decode(out[:, T:], skip_special_tokens=True)
        gens = []
        for i, p in enumerate(prompts):
            gens.append(Generation(p, tuple(truncate_at_stop(t, stop) for t in texts[i * n : (i + 1) * n])))
        return gens


class _StopStrings:
    """Stops each row once its generated text holds a stop string.

    transformers' own ``stop_strings`` precomputes tables over the whole vocabulary on every
    ``generate`` call (about 2.4 s for gemma-3's 262k tokens on a CPU, more than generating 16
    short replies); decoding the few new tokens of each row per step costs far less.
    """

    def __init__(self, tokenizer, prompt_length: int, stop: Sequence[str]) -> None:
        self.tokenizer, self.start, self.stop = tokenizer, prompt_length, tuple(stop)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.start :], skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stop) for t in texts], device=input_ids.device)


def _padded(rows: Sequence[Sequence[int]], pad: int, left: bool, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows padded into one (n, width) tensor and its 0/1 mask, built in numpy in one go."""
    width = width or max(len(x) for x in rows)
    lengths = np.fromiter((len(x) for x in rows), dtype=np.int64, count=len(rows))
    col = np.arange(width)[None, :]
    mask = (col >= width - lengths[:, None]) if left else (col < lengths[:, None])
    ids = np.full((len(rows), width), pad, dtype=np.int64)
    ids[mask] = np.fromiter((t for x in rows for t in x), dtype=np.int64, count=int(lengths.sum()))
    return torch.from_numpy(ids), torch.from_numpy(mask.astype(np.int64))
