"""Any OpenAI-compatible server as a backend: vLLM, llama.cpp server, Ollama, SGLang, or llmrl's own.

Scoring needs the log-probabilities of a *prompt's* tokens, which the OpenAI API gives in two ways:

- ``echo``: the legacy ``/v1/completions`` with ``echo: true, logprobs: 1, max_tokens: 0`` echoes
  the prompt's tokens with ``token_logprobs`` and ``text_offset`` (OpenAI's legacy API, llama.cpp
  server, older vLLM). Servers that reject ``max_tokens: 0`` are retried with ``max_tokens: 1``.
- ``prompt_logprobs``: vLLM's extension, ``prompt_logprobs: 1``, answers one dict per prompt token
  ``{token_id: {logprob, rank, decoded_token}}`` (the first entry is null: nothing precedes it).

``auto`` (the default) tries echo, then prompt_logprobs, and keeps the first that works.

Which tokens belong to the candidate: the prompt is ``context + candidate`` (after
:func:`split_trailing_space`), and a candidate token is any prompt token that *ends* after the
context, so a token that straddles the boundary counts for the candidate. Token ends come from
``text_offset`` in echo mode (shifted so the last prompt token ends at ``len(prompt)``, which
absorbs a BOS token decoded as text such as ``<s>``), and from the lengths of ``decoded_token``
counted back from the end of the prompt in prompt_logprobs mode. Where the token texts do not
add up to the prompt (no ``decoded_token`` in older vLLM; raw vocabulary pieces such as ``▁go``
or byte pieces of a multi-byte character), the context alone is tokenised through the server's
``/tokenize`` endpoint (once per context), and the prompt tokens after the common prefix of the
two tokenisations count for the candidate (a straddling token differs there, so it counts too).

Every (context, candidate) pair is one HTTP request, sent concurrently from a small thread pool;
identical pairs within one call are sent once. Every request is bounded: ``timeout`` is the time
for the whole answer (a server that trickles bytes is cut off, not waited for), replies larger
than ``max_response_bytes`` are refused, and a reply whose fields have the wrong types is an
:class:`LMError` ("malformed response"), never a crash deep in the parser.
"""

from __future__ import annotations

import contextvars
import http.client
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from llmrl.lm.base import (
    CandidateScores,
    Generation,
    LanguageModel,
    LMError,
    as_candidate_lists,
    check_generate_args,
    split_trailing_space,
    truncate_at_stop,
)

LOGPROBS_MODES = ("auto", "echo", "prompt_logprobs")
_EMBED_BATCH = 64
_MAX_REMEMBERED = 4096  # contexts whose /tokenize answer is kept
_MAX_RETRY_AFTER_S = 30.0
_MAX_RESPONSE_BYTES = 64 * 1024 * 1024

T = TypeVar("T")
R = TypeVar("R")


class HTTPStatusError(LMError):
    """The server answered with an HTTP error status; ``status`` and the server's message are kept."""

    def __init__(self, message: str, status: int, server_message: str) -> None:
        super().__init__(message)
        self.status = status
        self.server_message = server_message


class _NoLogprobs(Exception):
    """A response without the log-probs we asked for (internal: triggers the next mode)."""


class OpenAILM(LanguageModel):
    """A model behind an OpenAI-compatible HTTP server.

    Args:
        base_url: the server's root, e.g. ``http://localhost:8000`` (a trailing ``/v1`` is fine).
        model: the model name the server knows (``GET /v1/models`` lists them).
        api_key: sent as a bearer token; defaults to ``$OPENAI_API_KEY``, else ``"EMPTY"``.
        timeout: seconds one HTTP request may take in all, connecting and the whole reply included.
        max_retries: retries after connection errors, time-outs, HTTP 429 and 5xx (never other 4xx).
        backoff: first retry delay in seconds, doubled at each retry (a ``Retry-After`` header wins).
        logprobs_mode: ``"echo"``, ``"prompt_logprobs"`` or ``"auto"`` (see the module docstring).
        max_concurrency: HTTP requests in flight at once.
        embedding_model: a model name for ``/v1/embeddings``; ``None`` embeds locally with MiniLM.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        logprobs_mode: str = "auto",
        max_concurrency: int = 8,
        embedding_model: str | None = None,
        max_response_bytes: int = _MAX_RESPONSE_BYTES,
    ) -> None:
        super().__init__()
        if logprobs_mode not in LOGPROBS_MODES:
            raise ValueError(
                f"unknown logprobs_mode {logprobs_mode!r}: use 'auto', 'echo' (echo+logprobs) or "
                "'prompt_logprobs' (vLLM)"
            )
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"base_url {base_url!r} is not an http(s) URL: give e.g. http://localhost:8000")
        if max_concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise ValueError("need max_concurrency >= 1, max_retries >= 0 and timeout > 0")
        root = base_url.rstrip("/")
        if root.endswith("/v1"):
            root = root[: -len("/v1")]
        self.base_url = root
        self.model = model
        self.name = f"openai:{model}"
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.logprobs_mode = logprobs_mode
        self.max_concurrency = int(max_concurrency)
        self.embedding_model = embedding_model
        self.max_response_bytes = int(max_response_bytes)
        # Settled by the first scored pair (a serial probe), then read by the worker threads.
        self._mode: str | None = None if logprobs_mode == "auto" else logprobs_mode
        self._probed = False
        self._echo_max_tokens = 0
        self._needs_tokenize = False  # token texts do not add up to prompts: find boundaries by /tokenize
        self._setup_runtime()


    @property
    def cache_identity(self) -> str:
        # Two servers may serve different weights under one model name (llama.cpp ignores it).
        return f"openai:{self.base_url}#{self.model}"
    def _setup_runtime(self) -> None:
        self._stats_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._token_ids: dict[str, list[int]] = {}
        host = urllib.parse.urlsplit(self.base_url).hostname or ""
        # A proxy from the environment must not capture a server on this machine.
        proxies: dict[str, str] | None = {} if host in ("localhost", "127.0.0.1", "::1") else None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies), _DeadlineHTTPHandler(),
                                                   _DeadlineHTTPSHandler())

    def __getstate__(self) -> dict[str, Any]:  # picklable for worker processes (Ray, multiprocessing)
        state = self.__dict__.copy()
        for k in ("_stats_lock", "_pool", "_token_ids", "_opener"):
            state.pop(k)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._setup_runtime()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    # ------------------------------------------------------------------ scoring

    def score(
        self,
        contexts: Sequence[str],
        candidates: Sequence[str] | Sequence[Sequence[str]],
    ) -> list[CandidateScores]:
        lists = as_candidate_lists(contexts, candidates)
        pairs = [split_trailing_space(ctx, cand) for ctx, cands in zip(contexts, lists) for cand in cands]
        unique = list(dict.fromkeys(pairs))
        results: dict[tuple[str, str], tuple[float, int, int]] = {}
        if unique and not self._probed:
            # The first pair runs alone so that the mode (and max_tokens 0 or 1) is settled once,
            # not discovered by 48 concurrent failures.
            results[unique[0]] = self._probe(unique[0])
            self._probed = True
            unique = unique[1:]
        mode = self._mode
        assert mode is not None
        if self._needs_tokenize:  # fetch each context's tokens once, not once per candidate
            todo = list(dict.fromkeys(c for c, _ in unique if c not in self._token_ids))
            self._map(self._tokenize, todo)
        for pair, res in zip(unique, self._map(lambda p: self._score_pair(mode, p), unique)):
            results[pair] = res

        out = []
        k = 0
        for cands in lists:
            lp = np.empty(len(cands), dtype=np.float64)
            nt = np.empty(len(cands), dtype=np.int64)
            for j in range(len(cands)):
                lp[j], nt[j], _ = results[pairs[k]]
                k += 1
            out.append(CandidateScores.from_sums(cands, lp, nt))
        with self._stats_lock:
            self.stats.score_calls += 1
            self.stats.scored_contexts += len(lists)
            self.stats.prompt_tokens += sum(r[2] for r in results.values())
        return out

    def _probe(self, pair: tuple[str, str]) -> tuple[float, int, int]:
        modes = ["echo", "prompt_logprobs"] if self._mode is None else [self._mode]
        failures = []
        for mode in modes:
            try:
                result = self._score_pair(mode, pair)
            except _NoLogprobs as e:
                failures.append(f"{mode}: {e}")
                continue
            except HTTPStatusError as e:
                # 400/422: the server rejects the fields; 501: it does not implement them.
                if e.status not in (400, 422, 501):
                    raise
                failures.append(f"{mode}: HTTP {e.status} {e.server_message}")
                continue
            self._mode = mode
            return result
        raise LMError(
            f"the server at {self.base_url} returned no prompt log-probs ({'; '.join(failures)}): "
            "llmrl needs echo+logprobs (llama.cpp server, older vLLM) or vLLM's prompt_logprobs; "
            "use a backend that supports them, or the hf backend"
        )

    def _score_pair(self, mode: str, pair: tuple[str, str]) -> tuple[float, int, int]:
        """(sum of the candidate's token log-probs, its token count, the prompt's token count)."""
        context, candidate = pair
        ids: list[str | None] | None = None
        if mode == "echo":
            logprobs, ends, n_prompt = self._echo_logprobs(context + candidate)
        else:
            logprobs, ends, ids, n_prompt = self._prompt_logprobs(context + candidate, len(context))
        if ends is not None:
            selected = [i for i in range(n_prompt) if ends[i] > len(context)]
        else:
            self._needs_tokenize = True
            selected = list(range(self._boundary_by_tokenize(context, context + candidate, ids), n_prompt))
        if not selected:
            raise LMError(
                f"malformed response from {self.base_url}/v1/completions: no prompt token covers the "
                f"candidate {candidate!r}"
            )
        total = 0.0
        for i in selected:
            if logprobs[i] is None:
                if i == 0:
                    raise LMError(
                        f"cannot score {candidate!r} after context {context!r}: the server gives no "
                        "log-prob for the first token of a prompt (its model adds no BOS token); "
                        "give a non-empty context"
                    )
                raise LMError(f"malformed response from {self.base_url}: null log-prob at prompt token {i}")
            total += float(logprobs[i])
        return total, len(selected), n_prompt

    def _echo_logprobs(self, prompt: str) -> tuple[list[float | None], list[int] | None, int]:
        """The prompt tokens' log-probs and where they end (``None``: token texts do not add up)."""
        body = {"model": self.model, "prompt": prompt, "echo": True, "logprobs": 1, "temperature": 0.0}
        max_tokens = self._echo_max_tokens
        try:
            resp = self._post("/v1/completions", {**body, "max_tokens": max_tokens})
        except HTTPStatusError as e:
            if max_tokens != 0 or e.status not in (400, 422):
                raise
            # Older vLLM and some servers reject max_tokens 0; one generated token is ignored below.
            max_tokens = 1
            resp = self._post("/v1/completions", {**body, "max_tokens": max_tokens})
            self._echo_max_tokens = 1
        lp = _first_choice(resp, self.base_url).get("logprobs")
        if not isinstance(lp, dict) or not lp.get("token_logprobs"):
            raise _NoLogprobs("logprobs missing from the response")
        token_lps = _numbers(lp["token_logprobs"], "token_logprobs", self.base_url)
        offsets = lp.get("text_offset")
        tokens = lp.get("tokens")
        if not isinstance(offsets, list) or len(offsets) != len(token_lps):
            raise _NoLogprobs("text_offset missing from the logprobs")
        if not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets):
            raise LMError(f"malformed response from {self.base_url}: text_offset holds non-integers "
                          f"{str(offsets)[:120]}")
        n = len(token_lps)
        n_prompt = _prompt_tokens(resp)
        if not (isinstance(n_prompt, int) and 0 < n_prompt <= n):
            n_prompt = n if max_tokens == 0 else sum(1 for o in offsets if o < len(prompt))
        token_lps = token_lps[:n_prompt]
        if isinstance(tokens, list) and len(tokens) == n and all(isinstance(t, str) for t in tokens[:n_prompt]):
            if not "".join(tokens[:n_prompt]).endswith(prompt):
                return token_lps, None, n_prompt  # raw vocabulary pieces ("▁go", "Ġgo" bytes)
            last_end = int(offsets[n_prompt - 1]) + len(tokens[n_prompt - 1])
        else:
            last_end = len(prompt)
        ends = [int(offsets[i + 1]) for i in range(n_prompt - 1)] + [last_end]
        shift = last_end - len(prompt)  # > 0 when a special token is decoded as text, e.g. "<bos>"
        return token_lps, [e - shift for e in ends], n_prompt

    def _prompt_logprobs(
        self, prompt: str, context_len: int
    ) -> tuple[list[float | None], list[int] | None, list[str | None], int]:
        """The prompt tokens' log-probs, where they end (``None`` without decoded_token), their ids."""
        body = {"model": self.model, "prompt": prompt, "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 1}
        resp = self._post("/v1/completions", body)
        entries = _first_choice(resp, self.base_url).get("prompt_logprobs", resp.get("prompt_logprobs"))
        if not isinstance(entries, list) or not any(isinstance(e, dict) for e in entries):
            raise _NoLogprobs("prompt_logprobs missing from the response")
        logprobs: list[float | None] = []
        texts: list[str | None] = []
        ids: list[str | None] = []
        for e in entries:
            if not isinstance(e, dict) or not e:
                logprobs.append(None)
                texts.append(None)
                ids.append(None)
                continue
            # vLLM lists the prompt's own token first, then the top-k alternatives.
            token_id, info = next(iter(e.items()))
            ids.append(str(token_id))
            if not isinstance(info, dict):
                raise LMError(f"malformed response from {self.base_url}: prompt_logprobs entry {str(e)[:200]}")
            logprobs.append(_numbers([info.get("logprob")], "prompt_logprobs", self.base_url)[0])
            text = info.get("decoded_token")
            texts.append(text if isinstance(text, str) else None)
        n = len(entries)
        if any(t is None for t in texts[1:]) or not prompt.endswith("".join(texts[1:])):  # type: ignore[arg-type]
            return logprobs, None, ids, n  # no decoded_token (older vLLM), or pieces that do not add up
        ends = [0] * n  # tokens left at 0 end inside the context
        end = len(prompt)
        for i in range(n - 1, -1, -1):  # count back from the end of the prompt to the context
            ends[i] = end
            if end <= context_len or i == 0:
                break
            end -= len(texts[i])  # type: ignore[arg-type]
        return logprobs, ends, ids, n

    def _boundary_by_tokenize(self, context: str, prompt: str, prompt_ids: list[str | None] | None) -> int:
        """The first prompt token that is not a context token, from the server's ``/tokenize``.

        The context's tokens and the prompt's share a prefix; a token that straddles the
        boundary differs there and so counts for the candidate, as it does with token texts.
        """
        ctx_ids = self._tokenize(context)
        if prompt_ids is None:
            prompt_ids = [str(t) for t in self._tokenize(prompt, remember=False)]
        k = 0
        while k < min(len(ctx_ids), len(prompt_ids)) and prompt_ids[k] in (None, str(ctx_ids[k])):
            k += 1
        return k

    def _tokenize(self, text: str, remember: bool = True) -> list[int]:
        """Token ids of ``text`` from the server's ``/tokenize`` (vLLM), kept for contexts."""
        known = self._token_ids.get(text)  # one read: another thread may clear the dict
        if known is not None:
            return known
        try:
            resp = self._post("/tokenize", {"model": self.model, "prompt": text})
        except HTTPStatusError as e:
            raise LMError(
                f"the server at {self.base_url} gives token texts that do not add up to the prompt "
                f"and has no usable /tokenize (HTTP {e.status}: {e.server_message}): llmrl cannot "
                "find where the candidate starts; try the other logprobs_mode or a newer vLLM"
            ) from e
        tokens = resp.get("tokens")
        if not isinstance(tokens, list):
            raise LMError(f"malformed response from {self.base_url}/tokenize: {json.dumps(resp)[:200]}")
        if remember:
            if len(self._token_ids) >= _MAX_REMEMBERED:  # contexts change every step: stay bounded
                self._token_ids.clear()
            self._token_ids[text] = tokens
        return tokens

    # --------------------------------------------------------------- generation

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
        stops = check_generate_args(prompts, max_new_tokens, temperature, n, top_p, stop)

        def one(prompt: str) -> tuple[tuple[str, ...], int]:
            texts: list[str] = []
            prompt_tokens = 0
            # Greedy completions are all the same: ask once (some servers reject n > 1 when greedy).
            want = 1 if temperature == 0 else n
            while len(texts) < want:  # servers without ``n`` (llama.cpp) answer one choice per request
                body: dict[str, Any] = {
                    "model": self.model,
                    "prompt": prompt,
                    "max_tokens": int(max_new_tokens),
                    "temperature": float(temperature),
                    "top_p": float(top_p),
                    "n": want - len(texts),
                }
                if stops:
                    body["stop"] = stops
                if seed is not None:
                    body["seed"] = int(seed) + len(texts)  # later requests must not repeat the first
                resp = self._post("/v1/completions", body)
                choices = resp.get("choices")
                if not isinstance(choices, list) or not choices:
                    raise LMError(f"malformed response from {self.base_url}/v1/completions: {json.dumps(resp)[:200]}")
                choices = sorted(choices, key=_index)
                for c in choices[: want - len(texts)]:
                    text = c.get("text") if isinstance(c, dict) else None
                    if not isinstance(text, str):
                        raise LMError(f"malformed response from {self.base_url}/v1/completions: {str(c)[:200]}")
                    texts.append(truncate_at_stop(text, stops))
                if not prompt_tokens:
                    prompt_tokens = _prompt_tokens(resp) or 0
            if len(texts) < n:
                texts = texts * n
            return tuple(texts), prompt_tokens

        results = self._map(one, list(prompts))
        with self._stats_lock:
            self.stats.generate_calls += 1
            self.stats.generated_prompts += len(prompts)
            self.stats.prompt_tokens += sum(r[1] for r in results)
        return [Generation(prompt=p, texts=texts) for p, (texts, _) in zip(prompts, results)]

    # ---------------------------------------------------------------- embedding

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self.embedding_model is None:
            return super().embed(texts)
        if isinstance(texts, str):
            raise ValueError("texts must be a list of strings, got one string: wrap it as [text]")
        texts = list(texts)
        batches = [texts[i : i + _EMBED_BATCH] for i in range(0, len(texts), _EMBED_BATCH)]

        def one(batch: list[str]) -> list[list[float]]:
            resp = self._post("/v1/embeddings", {"model": self.embedding_model, "input": batch})
            data = resp.get("data")
            if not isinstance(data, list) or len(data) != len(batch):
                raise LMError(f"malformed response from {self.base_url}/v1/embeddings: {json.dumps(resp)[:200]}")
            data = sorted(data, key=_index)
            vectors = [d.get("embedding") if isinstance(d, dict) else None for d in data]
            if not all(isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v) for v in vectors):
                raise LMError(f"malformed response from {self.base_url}/v1/embeddings: an embedding is not a list "
                              "of numbers")
            return vectors

        vectors = [v for vs in self._map(one, batches) for v in vs]
        with self._stats_lock:
            self.stats.embed_calls += 1
        if not vectors:
            return np.zeros((0, 0), dtype=np.float32)
        arr = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        return arr / np.maximum(norms, 1e-12)

    # --------------------------------------------------------------------- HTTP

    def _map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(x) for x in items]`` with up to ``max_concurrency`` in flight; the first error wins."""
        if len(items) <= 1 or self.max_concurrency == 1:
            return [fn(x) for x in items]
        if self._pool is None:
            with self._stats_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="llmrl-openai")
        futures = [self._pool.submit(fn, x) for x in items]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats.extra[key] = self.stats.extra.get(key, 0) + 1

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST JSON, retrying connection errors, time-outs, 429 and 5xx with exponential back-off."""
        url = self.base_url + path
        data = json.dumps(body).encode()
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Authorization": f"Bearer {self.api_key}",
        }
        last_error = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._count("http_retries")
            self._count("http_requests")
            delay = self.backoff * 2**attempt
            deadline = _Deadline(self.timeout)
            token = _DEADLINE.set(deadline)
            try:
                req = urllib.request.Request(url, data=data, headers=headers, method="POST")
                with self._opener.open(req, timeout=self.timeout) as resp:
                    raw = _read_bounded(resp, deadline, self.max_response_bytes, url)
            except urllib.error.HTTPError as e:
                message = _server_message(e)
                if e.code != 429 and e.code < 500:
                    raise HTTPStatusError(_status_text(url, e.code, message), e.code, message) from None
                last_error = f"the server at {url} answered HTTP {e.code}: {message}"
                retry_after = _retry_after(e)
                if retry_after is not None:
                    delay = min(retry_after, _MAX_RETRY_AFTER_S)
            except (TimeoutError, urllib.error.URLError, ConnectionError, http.client.HTTPException, OSError) as e:
                reason = e.reason if isinstance(e, urllib.error.URLError) else e
                if deadline.expired or isinstance(reason, TimeoutError) or "timed out" in str(reason):
                    last_error = (
                        f"no complete answer from {url} within {self.timeout:g} s: the server is overloaded, "
                        "stalled or the request too long; raise timeout= (--lm-timeout) or lower max_concurrency"
                    )
                else:
                    last_error = f"could not connect to {url} ({reason}): start the server or fix base_url"
            else:
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    parsed = None
                if not isinstance(parsed, dict):
                    raise LMError(f"malformed response from {url}: {raw[:200].decode('utf-8', 'replace')!r}")
                return parsed
            finally:
                deadline.cancel()
                _DEADLINE.reset(token)
            if attempt < self.max_retries:
                time.sleep(delay)
        attempts = self.max_retries + 1
        raise LMError(f"{last_error} (gave up after {attempts} attempt{'s' if attempts > 1 else ''})")


# --------------------------------------------------------------------------- bounded HTTP
class _Deadline:
    """The end of one request's time. A per-read socket timeout does not bound a request (a server
    that sends a byte every few seconds never trips it), so at the deadline the request's socket
    is shut down, which wakes any read blocked on it."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            self._expire()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self._timer.cancel()


_DEADLINE: contextvars.ContextVar[_Deadline | None] = contextvars.ContextVar("llmrl_http_deadline", default=None)


class _Watched:
    """A connection whose socket the current request's deadline can shut down."""

    sock: socket.socket

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        deadline = _DEADLINE.get()
        if deadline is not None:
            deadline.watch(self.sock)


class _WatchedHTTPConnection(_Watched, http.client.HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, http.client.HTTPSConnection):
    pass


class _DeadlineHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_WatchedHTTPConnection, req)


class _DeadlineHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_WatchedHTTPSConnection, req, context=self._context)


def _read_bounded(resp: Any, deadline: _Deadline, limit: int, url: str) -> bytes:
    """The reply body, read in pieces, refused past ``limit`` bytes or the deadline."""
    chunks, size = [], 0
    while True:
        chunk = resp.read(65536)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise LMError(f"the reply from {url} is larger than {limit} bytes: refused (a misbehaving server?)")
        chunks.append(chunk)
    if deadline.expired:
        raise TimeoutError("the request's time ran out while reading the reply")
    return b"".join(chunks)


def _index(choice: Any) -> int:
    index = choice.get("index", 0) if isinstance(choice, dict) else 0
    return index if isinstance(index, int) else 0


def _prompt_tokens(resp: dict[str, Any]) -> int | None:
    """``usage.prompt_tokens`` when the server reports it as a count (servers vary; it is a hint)."""
    usage = resp.get("usage")
    n = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else None


def _numbers(values: Any, field: str, where: str) -> list[float | None]:
    """A list of log-probs as floats (None kept), or LMError naming the field that is malformed."""
    if not isinstance(values, list):
        raise LMError(f"malformed response from {where}: {field} is not a list")
    out: list[float | None] = []
    for v in values:
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise LMError(f"malformed response from {where}: {field} holds {v!r}, not a number")
        out.append(None if v is None else float(v))
    return out


def _first_choice(resp: dict[str, Any], where: str) -> dict[str, Any]:
    choices = resp.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise LMError(f"malformed response from {where}: {json.dumps(resp)[:200]}")
    return choices[0]


def _server_message(e: urllib.error.HTTPError) -> str:
    """The error text a server put in its body: OpenAI's ``{"error": {"message"}}`` or plain text."""
    try:
        raw = e.read(65536)  # an error body is a message: no more is read
    except Exception:  # noqa: BLE001 - the status alone is still worth reporting
        raw = b""
    text = raw.decode("utf-8", "replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        return text[:500] or str(e.reason)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail")
            if msg:
                return str(msg)[:500]
        elif isinstance(err, str):
            return err[:500]
        if "detail" in body:
            return str(body["detail"])[:500]
    return text[:500]


def _status_text(url: str, status: int, message: str) -> str:
    hint = {
        401: "check api_key (or $OPENAI_API_KEY)",
        403: "check api_key (or $OPENAI_API_KEY)",
        404: "check base_url and the model name (GET /v1/models lists the served models)",
    }.get(status)
    text = f"the server at {url} answered HTTP {status}: {message}"
    return f"{text}; {hint}" if hint else text


def _retry_after(e: urllib.error.HTTPError) -> float | None:
    value = e.headers.get("Retry-After") if e.headers else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
