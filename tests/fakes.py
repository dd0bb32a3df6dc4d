"""Stand-ins for a language model or a server, used by several test files. Each exists to make
something happen that the real model does not do on demand (exact hand-set log-probs, a
malformed reply, a server that fails); every path they test is also tested with the real model.
"""

from __future__ import annotations

import random
import re
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmrl.lm.base import CandidateScores, Generation, LanguageModel, as_candidate_lists, split_trailing_space
from llmrl.lm.serve import LMServer, RequestError

WORDS = ("go", "left", "right", "forward", ".", "pick", "up", "\n")


class WordLM(LanguageModel):
    """A test double with exact, hand-set log-probs.

    Tokens are words with their leading whitespace (" go"); token i of a text has log-prob
    -(len(token) + i % 3) / 4, a dyadic fraction, so sums are exact in floating point. There is
    no BOS: the first token has no log-prob. ``generate`` ignores ``stop`` on purpose (a server
    that does not cut at stop strings), so the client must cut. With ``bos=True`` the model reads
    a BOS token first (the server shows it), and the first token has a log-prob too.
    """

    name = "word-lm"

    def __init__(self, bos: bool = False) -> None:
        super().__init__()
        self.bos = bos

    @staticmethod
    def tokens(text: str) -> list[str]:
        return re.findall(r"\s*\S+|\s+", text)

    def token_logprobs(self, text: str) -> list[tuple[str, float | None]]:
        return [(t, None if i == 0 and not self.bos else -(len(t) + i % 3) / 4) for i, t in enumerate(self.tokens(text))]

    def expected(self, context: str, candidate: str) -> tuple[float, int]:
        """Sum and count of the log-probs of the tokens that end inside the candidate."""
        ctx, cand = split_trailing_space(context, candidate)
        lp, pos, total, count = self.token_logprobs(ctx + cand), 0, 0.0, 0
        for t, v in lp:
            pos += len(t)
            if pos > len(ctx):
                total, count = total + v, count + 1  # type: ignore[operator]
        return total, count

    def score(self, contexts: Sequence[str], candidates: Sequence[str] | Sequence[Sequence[str]]) -> list[CandidateScores]:
        out = []
        for ctx, cands in zip(contexts, as_candidate_lists(contexts, candidates)):
            lp, nt = np.array([self.expected(ctx, c) for c in cands]).T
            out.append(CandidateScores(cands, lp, lp / nt, nt.astype(np.int64)))
        return out

    def generate(self, prompts, max_new_tokens=64, temperature=0.0, top_p=1.0, stop=(), n=1, seed=None):
        out = []
        for p in prompts:
            texts = []
            for k in range(n):
                if temperature == 0:
                    words = [WORDS[(len(p) + j) % len(WORDS)] for j in range(max_new_tokens)]
                else:
                    rng = random.Random(f"{seed}|{p}|{k}") if seed is not None else random.Random()
                    words = [rng.choice(WORDS) for _ in range(max_new_tokens)]
                texts.append("".join(" " + w for w in words))
            out.append(Generation(p, tuple(texts)))
        return out

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([[len(t), t.count(" "), 1.0] for t in texts], dtype=np.float32)


# The third context ends inside a word: "Mission x" + "turn left" has the token " xturn", which
# straddles the boundary and counts for the candidate.


class CountingLM(LanguageModel):
    """A deterministic test double that records what reaches it."""

    name = "counting-lm"

    def __init__(self) -> None:
        super().__init__()
        self.scored: list[str] = []
        self.generated: list[str] = []

    def score(self, contexts: Sequence[str], candidates) -> list[CandidateScores]:
        self.scored += list(contexts)
        out = []
        for ctx, cands in zip(contexts, as_candidate_lists(contexts, candidates)):
            lp = np.array([-(zlib.crc32(f"{ctx}|{c}".encode()) % 1000) / 7.0 for c in cands])
            lp[0] = -np.inf if ctx == "impossible" else lp[0]
            nt = np.array([len(c.split()) for c in cands], dtype=np.int64)
            out.append(CandidateScores(tuple(cands), lp, lp / nt, nt))
        return out

    def generate(self, prompts, max_new_tokens=64, temperature=0.0, top_p=1.0, stop=(), n=1, seed=None):
        self.generated += list(prompts)
        rng = random.Random(seed) if seed is not None else random.Random()
        out = []
        for p in prompts:
            if temperature == 0:
                texts = (f"{p[::-1]}/{max_new_tokens}",) * n
            else:
                texts = tuple(f"{p}:{rng.random()}" for _ in range(n))
            out.append(Generation(p, texts))
        return out


class EmbeddingLM(CountingLM):
    """Embeds with its own deterministic vectors and records what reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded: list[str] = []

    def embed(self, texts):
        self.embedded += list(texts)
        vecs = np.array([[zlib.crc32(t.encode()) % 97, len(t), 1.0] for t in texts], dtype=np.float32).reshape(-1, 3)
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


class ScriptedLM(LanguageModel):
    """Replies from a table: stands in only to make the LM misbehave on purpose."""

    name = "scripted"

    def __init__(self, replies):
        super().__init__()
        self.replies, self.prompts = replies, []

    def score(self, contexts, candidates):
        raise NotImplementedError

    def generate(self, prompts, **kwargs):
        self.prompts += list(prompts)
        return [Generation(p, (self.replies[p.rsplit("\n\n", 1)[-1]],)) for p in prompts]


class FixedLM:
    """Scores that always prefer one action: enough to test the agent's bookkeeping."""

    def __init__(self, best: str) -> None:
        from llmrl.lm.base import CallStats

        self.best, self.stats, self.prompts = best, CallStats(), []

    def score(self, contexts, candidates):
        from llmrl.lm.base import CandidateScores

        self.stats.score_calls += 1
        self.stats.scored_contexts += len(contexts)
        self.prompts.extend(contexts)
        lp = np.array([0.0 if c == self.best else -5.0 for c in candidates])
        return [CandidateScores(tuple(candidates), lp, lp, np.ones(len(candidates), int)) for _ in contexts]


# --------------------------------------------------------------------------- servers
@dataclass
class ServeOptions:
    """How a :class:`MisbehavingServer` departs from a well-behaved vLLM-like server."""

    no_logprobs: bool = False
    """Answer log-prob requests with ``logprobs: null`` / ``prompt_logprobs: null`` (cannot score)."""
    no_echo: bool = False
    """Reject ``echo: true`` with HTTP 400, so clients must use ``prompt_logprobs``."""
    no_prompt_logprobs: bool = False
    """Ignore the ``prompt_logprobs`` field, like servers that are not vLLM."""
    min_max_tokens: int = 0
    """Reject a smaller ``max_tokens`` with HTTP 400 (older vLLM needs 1)."""
    decoded_tokens: bool = True
    """Put ``decoded_token`` in prompt_logprobs entries (False: clients need ``/tokenize``)."""
    bos_text: str | None = None
    """Prepend a BOS token with this text and no log-prob to every tokenisation, as vLLM shows
    ``<bos>``: token texts then start with text the prompt does not have."""
    raw_token_text: bool = False
    """Echo tokens as raw vocabulary pieces, as older vLLM did: ``▁`` for a space and a ``▁`` before
    the first word, so the texts do not add up to the prompt (clients need ``/tokenize``)."""
    malformed: bool = False
    """Answer every POST with HTTP 200 and a body that is not JSON."""
    fail_first: int = 0
    """Answer the first N POSTs with HTTP 503 (to test retries)."""
    delay_s: float = 0.0
    """Sleep this long before answering each POST (to test time-outs)."""


class MisbehavingServer(LMServer):
    """llmrl's server, made to imitate other servers' quirks and faults (``ServeOptions``)."""

    def __init__(self, model: LanguageModel, options: ServeOptions | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.options = options or ServeOptions()
        self._failures_left = self.options.fail_first

    def before_post(self, path: str) -> tuple[int, bytes, str] | None:
        if self.options.delay_s:
            time.sleep(self.options.delay_s)
        with self._count_lock:
            fail = self._failures_left > 0
            self._failures_left -= int(fail)
        if fail:
            self.count("failed")
            body = b'{"error": {"message": "the server is starting up (simulated failure)", "type": "server_error"}}'
            return 503, body, "application/json"
        if self.options.malformed:
            return 200, b"<html><body>502 Bad Gateway</body></html>", "text/html"
        return None

    def tokens(self, text: str) -> list[tuple[str, float | None]]:
        bos = self.options.bos_text
        return ([(bos, None)] if bos is not None else []) + super().tokens(text)

    def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        opts = self.options
        max_tokens = body.get("max_tokens", 16)
        if isinstance(max_tokens, int) and max_tokens < opts.min_max_tokens:
            raise RequestError(400, f"max_tokens must be at least {opts.min_max_tokens}, got {max_tokens}.")
        if body.get("echo") and opts.no_echo:
            raise RequestError(400, "echo is not supported by this server")
        if opts.no_prompt_logprobs:
            body = {k: v for k, v in body.items() if k != "prompt_logprobs"}
        reply = super().completions(body)
        if opts.no_logprobs:
            for choice in reply["choices"]:
                choice["logprobs"] = None
                if "prompt_logprobs" in choice:
                    choice["prompt_logprobs"] = None
        return reply

    def prompt_logprobs(self, toks: list[tuple[str, float | None]]) -> list[dict[str, Any] | None]:
        out = super().prompt_logprobs(toks)
        if not self.options.decoded_tokens:
            for entry in out:
                for info in (entry or {}).values():
                    info.pop("decoded_token", None)
        return out

    def logprobs_block(self, toks: list[tuple[str, float | None]], n_prompt: int, echo: bool) -> dict[str, Any]:
        if self.options.raw_token_text:
            toks = [(t.replace(" ", "\u2581"), lp) for t, lp in toks]
            if toks:
                toks[0] = ("\u2581" + toks[0][0], toks[0][1])
        return super().logprobs_block(toks, n_prompt, echo)


class ProgramLM(LanguageModel):
    """Writes programs from a list, in order, K at a time: the LM-as-programmer loops' stand-in
    (a real model runs in the slow tests). Every prompt is kept, to check what was fed back."""

    name = "programs"

    def __init__(self, bodies):
        super().__init__()
        self.bodies, self.prompts, self.next = list(bodies), [], 0

    def score(self, contexts, candidates):
        raise NotImplementedError

    def generate(self, prompts, n=1, **kwargs):
        self.prompts += list(prompts)
        out = []
        for p in prompts:
            texts = tuple(self.bodies[(self.next + i) % len(self.bodies)] for i in range(n))
            self.next += n
            out.append(Generation(p, texts))
        return out


def tiny_model_folder(path: Path) -> Path:
    """A two-layer random Llama with a word-level tokenizer: a real transformers folder, made here."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<s>", "</s>", "<unk>", "go", "left", "right", "Goal:"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                            unk_token="<unk>").save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    LlamaForCausalLM(config).save_pretrained(path)
    return path
