"""The one interface every language-model backend implements.

A backend answers three questions, each batched over many contexts (many environments) at once:

- ``score(contexts, candidates)``: how likely is each candidate continuation of its context?
- ``generate(prompts, ...)``: what does the model write after each prompt?
- ``embed(texts)``: a sentence embedding of each text.

Results are plain dataclasses of numpy arrays and strings, so the RL side never touches torch
tensors or HTTP payloads.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from llmrl.lm.errors import LMError


@dataclass(frozen=True)
class CandidateScores:
    """Log-likelihoods of the candidates of one context.

    ``logprob[i]`` is log p(candidate_i | context), the sum of its token log-probabilities;
    ``mean_logprob[i]`` divides that sum by ``n_tokens[i]`` (a length-normalised score).
    """

    candidates: tuple[str, ...]
    logprob: np.ndarray
    mean_logprob: np.ndarray
    n_tokens: np.ndarray

    def __post_init__(self) -> None:
        check_logprobs(self.logprob, self.candidates)

    @classmethod
    def from_sums(cls, candidates: Sequence[str], logprob: Sequence[float], n_tokens: Sequence[int]) -> CandidateScores:
        """Build from summed log-probs and token counts (the mean is derived)."""
        lp, n = np.asarray(logprob, dtype=np.float64), np.asarray(n_tokens, dtype=np.int64)
        return cls(tuple(candidates), lp, lp / np.maximum(n, 1), n)

    def probs(self, normalise_length: bool = False) -> np.ndarray:
        """A softmax over the candidates: GLAM's policy over action strings."""
        s = self.mean_logprob if normalise_length else self.logprob
        z = s - s.max()
        e = np.exp(z)
        return e / e.sum()


@dataclass(frozen=True)
class Generation:
    """The ``n`` completions of one prompt (stop strings removed)."""

    prompt: str
    texts: tuple[str, ...]


LOGPROB_TOLERANCE = 1e-4
"""Log-probs a little above 0 are float rounding (a sum of many near-zero terms); more is not."""


def check_logprobs(logprob: Any, candidates: Sequence[str] = ()) -> None:
    """Raise :class:`LMError` unless every value is a log-probability: ≤ 0, and finite or -inf
    (probability 0). NaN or positive scores come from damaged weights or a misbehaving server;
    let through, they make a greedy agent take action 0 forever."""
    lp = np.asarray(logprob, dtype=np.float64)
    bad = np.isnan(lp) | (lp > LOGPROB_TOLERANCE)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        name = f"candidate {candidates[i]!r}" if i < len(candidates) else f"candidate {i}"
        raise LMError(f"the model scored {name} at {float(lp[i])}, which is no log-probability (NaN or above 0): "
                      "its weights are damaged or its server misbehaves; re-make the converted model "
                      "(delete it from $LLMRL_CACHE_DIR/models) or check the server")


def as_candidate_lists(
    contexts: Sequence[str], candidates: Sequence[str] | Sequence[Sequence[str]]
) -> list[tuple[str, ...]]:
    """Normalise ``candidates``: one shared list for every context, or one list per context.

    Raises a ``ValueError`` that names the fix for empty or mismatched input.
    """
    if isinstance(contexts, str):
        raise ValueError("contexts must be a list of strings, got one string: wrap it as [context]")
    if len(candidates) == 0:
        raise ValueError("candidates is empty: give at least one candidate string to score")
    if all(isinstance(c, str) for c in candidates):
        lists = [tuple(candidates)] * len(contexts)  # type: ignore[arg-type]
    else:
        if len(candidates) != len(contexts):
            raise ValueError(
                f"got {len(contexts)} contexts but {len(candidates)} candidate lists: give one list "
                "per context, or a single list of strings shared by all contexts"
            )
        lists = [tuple(c) for c in candidates]  # type: ignore[arg-type]
    for i, cands in enumerate(lists):
        if len(cands) == 0:
            raise ValueError(f"context {i} has an empty candidate list: give at least one candidate")
        for c in cands:
            if not isinstance(c, str) or c == "":
                raise ValueError(f"context {i} has a candidate {c!r}: candidates must be non-empty strings")
    return lists


def split_trailing_space(context: str, candidate: str) -> tuple[str, str]:
    """Move the context's trailing whitespace onto the candidate.

    Tokenizers attach a space to the word that follows it ("Action: " + "go" should be scored as
    "Action:" + " go"), so scoring "Action: " then "go" would ask the model for a token sequence it
    never produces. Every backend applies this before tokenising.
    """
    stripped = context.rstrip(" ")
    return stripped, context[len(stripped):] + candidate


def check_generate_args(
    prompts: Sequence[str], max_new_tokens: int, temperature: float, n: int, top_p: float = 1.0,
    stop: str | Sequence[str] = (),
) -> list[str]:
    """Reject bad ``generate`` arguments with a message that names the fix (every backend), and
    return ``stop`` as a list of non-empty strings (a single string is one stop, not characters)."""
    if isinstance(prompts, str):
        raise ValueError("generate() takes a list of prompts, got one string: wrap it as [prompt]")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    return [stop] if isinstance(stop, str) else [s for s in stop if s]


def pair_token_ids(
    encode: Callable[[str], list[int]], bos: list[int], context: str, candidate: str,
    context_ids: list[int] | None = None,
) -> tuple[list[int], list[int]]:
    """Token ids of (BOS + context, candidate), the rule every local backend scores by.

    The context's trailing spaces move onto the candidate (``split_trailing_space``); both are
    tokenised separately, so a context's tokens are the same for all its candidates and its KV
    cache can be shared. A candidate glued to a word ("is" + "toggle") is therefore scored as its
    own tokens, not as the merged token a tokenizer would produce for the joined text.
    ``context_ids``, if given, are this context's ids from an earlier call (they do not depend on
    the candidate), so a context is tokenised once for all its candidates.
    """
    ctx, cand = split_trailing_space(context, candidate)
    ctx_ids = bos + encode(ctx) if context_ids is None else context_ids
    if not ctx_ids:
        raise LMError("empty context on a model without a BOS token: nothing predicts the first "
                      "candidate token; give a non-empty context")
    cand_ids = encode(cand)
    if not cand_ids:
        raise ValueError(f"candidate {candidate!r} tokenises to nothing: use a non-empty string")
    return ctx_ids, cand_ids


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the earliest occurrence of any stop string (servers usually cut there already)."""
    cut = len(text)
    for s in stop:
        k = text.find(s) if s else -1
        if 0 <= k < cut:
            cut = k
    return text[:cut]


@dataclass
class CallStats:
    """Counters every backend keeps, reported by evaluations (LM calls, tokens, cache hits)."""

    score_calls: int = 0
    scored_contexts: int = 0
    generate_calls: int = 0
    generated_prompts: int = 0
    embed_calls: int = 0
    prompt_tokens: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    extra: dict[str, float] = field(default_factory=dict)


class LanguageModel(abc.ABC):
    """A language model behind the three batched calls that RL roles need."""

    name: str

    def __init__(self) -> None:
        self.stats = CallStats()

    @property
    def cache_identity(self) -> str:
        """What names this model's results in a persistent cache: everything that changes its
        scores (weights, dtype, server), not just a display name. Backends refine it."""
        return self.name

    @abc.abstractmethod
    def score(
        self,
        contexts: Sequence[str],
        candidates: Sequence[str] | Sequence[Sequence[str]],
    ) -> list[CandidateScores]:
        """Log-probability of each candidate continuation given its context, one result per context.

        ``candidates`` is either one list of strings shared by every context (e.g. the six
        BabyAI actions) or one list per context.
        """

    @abc.abstractmethod
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
        """Continue each prompt; ``temperature == 0`` is greedy. Seeded sampling is reproducible."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Sentence embeddings, shape (len(texts), dim), L2-normalised.

        Backends delegate to the shared MiniLM embedder unless they have their own.
        """
        from llmrl.lm.embed import default_embedder

        self.stats.embed_calls += 1
        return default_embedder().embed(texts)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sockets, processes or memory held by the backend."""


@runtime_checkable
class TrainableLM(Protocol):
    """A local LM whose weights a role can fine-tune (GLAM's policy, KALM's grounded LM): the torch
    module and its tokenizer, and scores that keep their gradients. :class:`llmrl.lm.hf.HFLM`
    is one; a server or llama.cpp is not."""

    model: Any  # the torch module (wrapped in place by peft when adapters are added)
    tokenizer: Any
    device: Any

    @property
    def hidden_size(self) -> int:
        """Width of the final hidden state (what value heads and adapters read)."""

    @property
    def cache_identity(self) -> str:
        """What names the base weights in a cache (see :class:`LanguageModel`)."""

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without special tokens."""

    def score_tensors(self, contexts: Sequence[str], candidates: Sequence[Sequence[str]]) -> Any:
        """Differentiable shared-prefix scores plus each context's last hidden state."""
