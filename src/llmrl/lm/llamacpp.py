"""The llama.cpp backend: a GGUF file run as-is (quantized) through llama-cpp-python.

Optional: ``pip install 'llmrl[llamacpp]'`` (or ``pip install llama-cpp-python``). PyPI serves only
a source distribution, so the install compiles llama.cpp: 10-20 minutes on a small CPU.

Scoring reuses the prompt prefix through llama.cpp's KV cache:

1. a context is tokenised (BOS + text) and evaluated once; its last row of logits gives the
   log-probability of every candidate's first token. If the previous context (or generation)
   shares a token prefix with it, only the new tokens are evaluated;
2. for each candidate, the KV cache is truncated back to the context (``Llama.n_tokens``) and only
   the candidate's tokens are evaluated (all but the last, whose prediction nobody needs); their
   logit rows give the remaining token log-probabilities.

No decode is given a single token where that can be avoided: llama.cpp's CPU backend runs
one-token batches through other matmul kernels (llamafile's sgemm only serves n >= 2), which
changes a Q4 model's log-probs by up to ~0.5 nats, while every split of a sequence into batches
of 2+ tokens gives bit-identical logits. So prefix reuse re-evaluates the last two context tokens
and both tokens of a two-token candidate, and its scores equal evaluating each pair from scratch.

On Intel CPUs with AMX (Sapphire Rapids and later), llama.cpp 0.3.36 built with
``-DGGML_NATIVE=ON`` (pip's default) was seen to die with SIGILL (``tilezero`` in
``ggml_backend_amx_mul_mat``) in a VM; build without AMX instead::

    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \\
      -DGGML_BMI2=ON -DGGML_AVX_VNNI=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON \\
      -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON" pip install llama-cpp-python

Tokenisation follows :mod:`llmrl.lm.hf` so the two backends score the same token sequences:
:func:`~llmrl.lm.base.split_trailing_space` first, then BOS prepended to the context whether or
not the GGUF asks for it, and context and candidate tokenised separately with no special tokens
added (special-token text such as ``<|im_start|>`` is still parsed, as transformers does).

``score_naive`` evaluates each (context, candidate) pair from an empty cache: the reference that
tests check the prefix-reusing path against.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

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

INSTALL_HINT = (
    "the llamacpp backend needs llama-cpp-python: install it with `pip install llama-cpp-python` "
    "(or `pip install 'llmrl[llamacpp]'`). PyPI has only its source, so pip compiles llama.cpp: "
    "expect 10-20 minutes on a small CPU. Or use the hf backend instead: load_model('<name>') "
    "without the 'llamacpp:' prefix runs the same GGUF through transformers."
)


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as e:  # also raised when sys.modules["llama_cpp"] is None
        raise LMError(INSTALL_HINT) from e
    return llama_cpp


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (rows of a 49k-262k vocabulary sum many small terms)."""
    x = np.asarray(logits, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))


class LlamaCppLM(LanguageModel):
    """A GGUF model run by llama.cpp on the CPU. ``path`` is the ``.gguf`` file.

    ``n_ctx`` bounds context + candidate (or prompt + generated) tokens. ``n_threads=None`` lets
    llama.cpp choose. ``seed`` makes unseeded sampling reproducible across runs.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        seed: int = 0,
        verbose: bool = False,
    ) -> None:
        super().__init__()
        path = Path(path).expanduser()
        if not path.is_file():
            raise LMError(
                f"GGUF file not found: {path}. Pass the path of an existing .gguf file, or a "
                "registered name such as 'llamacpp:smollm2-135m-instruct'."
            )
        llama_cpp = _import_llama_cpp()
        self.name = name or path.stem
        self.path = path
        t0 = time.perf_counter()
        try:
            # logits_all: every evaluated position keeps its logits row (Llama.scores), which
            # scoring needs for the candidate tokens. swa_full: keep the whole sliding-window KV
            # (gemma-3) so truncating back to a context and re-extending it stays exact.
            self.llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                seed=seed,
                logits_all=True,
                swa_full=True,
                verbose=verbose,
            )
        except (ValueError, RuntimeError) as e:
            raise LMError(f"llama.cpp could not load {path}: {e}. Is it a valid GGUF file?") from e
        self.load_seconds = time.perf_counter() - t0
        self.n_ctx = self.llama.n_ctx()
        self.n_vocab = self.llama.n_vocab()
        bos = self.llama.token_bos()
        # Prepend BOS ourselves, as hf.py does: some GGUFs set add_bos_token, some do not.
        self._bos = [bos] if bos is not None and bos >= 0 else []
        self._rng = np.random.default_rng(seed)

    # ----------------------------------------------------------------- tokens
    def encode(self, text: str) -> list[int]:
        if not text:
            return []
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _pair_ids(
        self, context: str, candidate: str, context_ids: list[int] | None = None
    ) -> tuple[list[int], list[int]]:
        return pair_token_ids(self.encode, self._bos, context, candidate, context_ids)

    @property
    def cache_identity(self) -> str:
        from llmrl.lm.gguf import file_fingerprint

        return f"llamacpp:{self.path}:{file_fingerprint(self.path)}"

    def _check_fits(self, n: int, what: str) -> None:
        if n > self.n_ctx:
            bigger = 2 ** int(np.ceil(np.log2(n)))
            raise LMError(
                f"{what} needs {n} tokens but the llama.cpp context holds n_ctx={self.n_ctx}: "
                f"load the model with a larger n_ctx, e.g. load_model(name, n_ctx={bigger})"
            )

    # ------------------------------------------------------------------ state
    def _eval_from(self, keep: int, tokens: Sequence[int]) -> None:
        """Keep the first ``keep`` cached tokens, evaluate ``tokens`` after them.

        ``Llama.eval`` removes the KV entries from ``n_tokens`` on before decoding, and writes the
        logits of the new positions into ``scores[keep : keep + len(tokens)]``.

        No decode call gets a single token unless ``tokens`` is one token: llama.cpp's CPU
        backend multiplies a one-token batch with other kernels than a longer one (llamafile's
        sgemm is skipped for n < 2), and on a Q4 model the logits differ by up to ~0.5 nats.
        Batches of 2+ tokens give bit-identical rows however the sequence is split, which is what
        makes prefix reuse equal to evaluating each pair from scratch.
        """
        tokens = list(tokens)
        step = max(2, int(self.llama.n_batch))
        self.llama.n_tokens = keep
        i = 0
        while i < len(tokens):
            n = min(step, len(tokens) - i)
            if len(tokens) - (i + n) == 1:  # do not leave a one-token remainder
                n -= 1
            self.llama.eval(tokens[i : i + n])
            i += n
        self.stats.extra["evaluated_tokens"] = self.stats.extra.get("evaluated_tokens", 0) + len(tokens)

    def _cached_prefix(self, ids: Sequence[int]) -> int:
        """Length of the longest prefix of ``ids`` already in llama.cpp's KV cache."""
        cached = self.llama.input_ids[: self.llama.n_tokens]
        n = min(len(cached), len(ids))
        if n == 0:
            return 0
        diff = np.flatnonzero(cached[:n] != np.asarray(ids[:n], dtype=cached.dtype))
        return int(diff[0]) if diff.size else n

    # ---------------------------------------------------------------- scoring
    def _score_context(self, ctx_ids: list[int], cand_ids: list[list[int]]) -> np.ndarray:
        """Summed log-probs of each candidate after ``ctx_ids``, evaluating the context once.

        Every decode gets at least two tokens (see :meth:`_eval_from`), so the logits equal those
        of evaluating each (context, candidate) pair in one batch (:meth:`score_naive`).
        """
        L = len(ctx_ids)
        # Reuse what the cache shares with this context, but re-evaluate at least its last two
        # tokens: the last row of logits must be fresh, and one-token decodes are avoided.
        keep = max(0, min(self._cached_prefix(ctx_ids), L - 2))
        self.stats.extra["reused_prefix_tokens"] = self.stats.extra.get("reused_prefix_tokens", 0) + keep
        todo = ctx_ids[keep:]
        if len(todo) < 2:  # the context is BOS alone: add a token whose row nobody reads
            todo = todo + [cand_ids[0][0]]
        self._eval_from(keep, todo)
        first = _log_softmax(self.llama.scores[L - 1])  # predicts every candidate's first token
        out = np.zeros(len(cand_ids), dtype=np.float64)
        for j, ids in enumerate(cand_ids):
            out[j] = first[ids[0]]
            if len(ids) > 1:
                # Truncate the KV back to the context and extend it with the candidate: all its
                # tokens but the last (whose prediction nobody needs), or both when it has two.
                self._eval_from(L, ids[:-1] if len(ids) > 2 else ids)
                lp = _log_softmax(self.llama.scores[L : L + len(ids) - 1])
                out[j] += lp[np.arange(len(ids) - 1), ids[1:]].sum()
        return out

    def _tokenise_all(
        self, contexts: Sequence[str], lists: list[tuple[str, ...]]
    ) -> list[tuple[list[int], list[list[int]]]]:
        work = []
        for c, cands in zip(contexts, lists):
            ctx_ids: list[int] = []
            cand_ids = []
            for cand in cands:
                ctx_ids, ids = self._pair_ids(c, cand, ctx_ids or None)
                cand_ids.append(ids)
            self._check_fits(len(ctx_ids) + max(len(x) for x in cand_ids), "a (context, candidate) pair")
            work.append((ctx_ids, cand_ids))
        return work

    @staticmethod
    def _results(lists: list[tuple[str, ...]], work, scores) -> list[CandidateScores]:
        results = []
        for cands, (_, cand_ids), lp in zip(lists, work, scores):
            s = np.asarray(lp, dtype=np.float32)
            n = np.array([len(x) for x in cand_ids])
            results.append(CandidateScores.from_sums(cands, s, n))
        return results

    def score(
        self,
        contexts: Sequence[str],
        candidates: Sequence[str] | Sequence[Sequence[str]],
    ) -> list[CandidateScores]:
        lists = as_candidate_lists(contexts, candidates)
        work = self._tokenise_all(contexts, lists)
        self.stats.score_calls += 1
        self.stats.scored_contexts += len(contexts)
        self.stats.prompt_tokens += sum(len(c) for c, _ in work)
        scores = [self._score_context(ctx_ids, cand_ids) for ctx_ids, cand_ids in work]
        return self._results(lists, work, scores)

    def score_naive(
        self,
        contexts: Sequence[str],
        candidates: Sequence[str] | Sequence[Sequence[str]],
    ) -> list[CandidateScores]:
        """Reference scorer: every (context, candidate) pair evaluated from an empty KV cache,
        its log-probs read off the full logits rows. Same tokens as :meth:`score`."""
        lists = as_candidate_lists(contexts, candidates)
        work = self._tokenise_all(contexts, lists)
        scores = []
        for ctx_ids, cand_ids in work:
            L = len(ctx_ids)
            row = []
            for ids in cand_ids:
                self.llama.reset()
                self._eval_from(0, ctx_ids + ids)
                lp = _log_softmax(self.llama.scores[L - 1 : L + len(ids) - 1])
                row.append(float(lp[np.arange(len(ids)), ids].sum()))
            scores.append(row)
        return self._results(lists, work, scores)

    def token_logprobs(self, text: str) -> list[tuple[str, float | None]]:
        """Per-token log-probs of ``text`` (the first token has none), like ``HFLM.token_logprobs``."""
        ids = self._bos + self.encode(text)
        self._check_fits(len(ids), "the text")
        self.llama.reset()
        self._eval_from(0, ids)
        lp = _log_softmax(self.llama.scores[: len(ids) - 1])[np.arange(len(ids) - 1), ids[1:]]
        pieces = [self.llama.detokenize([t], special=True).decode("utf-8", errors="replace") for t in ids]
        out: list[tuple[str, float | None]] = [
            (pieces[i], float(lp[i - 1]) if i > 0 else None) for i in range(len(ids))
        ]
        return out[len(self._bos):]

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
        """Continue each prompt with ``Llama.create_completion``.

        Sampling is plain temperature + top-p (top-k, min-p, typical and repeat penalties off, as
        in the hf backend); ``temperature == 0`` is greedy. Completion ``j`` of prompt ``i`` gets
        its own sampler seed, drawn from ``seed`` (or, when ``seed`` is None, from the generator
        seeded by the constructor's ``seed``), so seeded calls repeat exactly.
        """
        stop = check_generate_args(prompts, max_new_tokens, temperature, n, top_p, stop)
        self.stats.generate_calls += 1
        self.stats.generated_prompts += len(prompts)
        if len(prompts) == 0:
            return []
        rng = np.random.default_rng(seed) if seed is not None else self._rng
        seeds = rng.integers(0, 2**31 - 1, size=(len(prompts), n))
        encoded = [self._bos + self.encode(p) for p in prompts]
        for ids in encoded:
            # create_completion needs one free slot after the prompt; it shortens max_tokens itself.
            self._check_fits(len(ids) + 1, "a prompt")
        self.stats.prompt_tokens += sum(len(x) for x in encoded)
        gens = []
        for i, (p, ids) in enumerate(zip(prompts, encoded)):
            texts = []
            for j in range(n):
                if max_new_tokens == 0:  # create_completion reads 0 as "up to n_ctx"
                    texts.append("")
                    continue
                out = self.llama.create_completion(
                    prompt=list(ids),
                    max_tokens=max_new_tokens,
                    temperature=float(temperature),
                    top_p=float(top_p),
                    top_k=0,
                    min_p=0.0,
                    typical_p=1.0,
                    repeat_penalty=1.0,
                    stop=list(stop),
                    seed=int(seeds[i, j]),
                )
                usage = out.get("usage") or {}
                self.stats.extra["generated_tokens"] = (
                    self.stats.extra.get("generated_tokens", 0) + usage.get("completion_tokens", 0)
                )
                texts.append(truncate_at_stop(out["choices"][0]["text"], stop))
            gens.append(Generation(p, tuple(texts)))
        return gens

    def close(self) -> None:
        llama = getattr(self, "llama", None)
        if llama is not None and hasattr(llama, "close"):
            llama.close()
        self.llama = None
