"""Serve any :class:`LanguageModel` over an OpenAI-compatible HTTP API (standard library only).

Endpoints: ``GET /v1/models``, ``GET /health``, ``POST /v1/completions`` (generation; scoring by
``echo + logprobs + max_tokens: 0`` as in OpenAI's legacy API; vLLM's ``prompt_logprobs``),
``POST /v1/embeddings`` and ``POST /tokenize`` (vLLM's shape: ``{"prompt"}`` -> ``{"tokens",
"count"}``; llama.cpp's ``{"content"}`` is accepted too).

Log-probs need token-level scores, which :class:`LanguageModel` does not promise. A served model
that can give them defines one more method::

    def token_logprobs(self, text: str) -> list[tuple[str, float | None]]:
        '''The tokens of ``text`` as the model reads it, each with log p(token | what precedes it).

        The token texts should concatenate to ``text`` (where they do not, clients find the
        candidate's tokens through ``/tokenize`` instead). Special tokens the tokenizer adds (BOS)
        are not listed; the first token is conditioned on them. A model with no BOS has nothing
        to condition the first token on and returns ``None`` as its log-prob.
        '''

Without it, requests for log-probs get HTTP 400 (like a server that cannot score); generation
and embeddings still work. Token ids are assigned by the server in order of first sight, so they
mean nothing outside one server's life.

This server is for tests and for sharing one model between local processes; it runs one model
call at a time (a lock) and does not batch concurrent requests. It has **no authentication**: it
binds to a loopback address unless ``allow_remote=True`` says the network is trusted. Every
request is bounded (:class:`ServeLimits`: prompts per request, ``n``, ``max_tokens``, prompt
length, seconds), and a request whose client has hung up stops between prompts and frees the
model. Subclasses change what it says through a few methods (``before_post``, ``tokens``,
``prompt_logprobs``, ``logprobs_block``, ``completions``); the test suite uses them to imitate
other servers and faults.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import select
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from llmrl.lm.base import LanguageModel

_MAX_BODY = 16 * 1024 * 1024


class RequestError(Exception):
    """A request the server refuses: HTTP ``status`` with an OpenAI-style error body."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask of the server; more is answered with HTTP 400 naming the limit."""

    max_prompts: int = 64
    """Prompts (or texts to embed or tokenize) in one request."""
    max_n: int = 16
    """Completions per prompt."""
    max_tokens: int = 1024
    """Tokens generated per completion."""
    max_prompt_chars: int = 200_000
    """Characters in one prompt."""
    request_seconds: float = 300.0
    """A request still at work after this long stops between prompts (HTTP 503)."""


_REQUEST = threading.local()  # the handler serving this thread's request: its client and deadline


class LMServer(ThreadingHTTPServer):
    """An HTTP server bound to one model; ``requests`` counts what it answered, by kind."""

    daemon_threads = True
    request_queue_size = 128  # the default 5 drops concurrent connects, which then wait 1 s for a SYN retry

    def __init__(
        self,
        model: LanguageModel,
        host: str = "127.0.0.1",
        port: int = 0,
        model_name: str | None = None,
        limits: ServeLimits | None = None,
        allow_remote: bool = False,
        enable_lora: bool = False,
    ) -> None:
        if not allow_remote and not _is_loopback(host):
            raise ValueError(f"llmrl's server has no authentication, so it serves loopback addresses only, not "
                             f"{host!r}: bind 127.0.0.1, or pass allow_remote=True on a network you trust")
        super().__init__((host, port), _Handler)
        self.limits = limits or ServeLimits()
        self.model = model
        self.model_name = model_name or getattr(model, "name", type(model).__name__)
        self.requests: Counter[str] = Counter()
        if enable_lora and not hasattr(model, "load_adapter"):
            raise ValueError(f"{type(model).__name__} cannot load adapters at run time: serve a transformers model "
                             "(the hf backend) to enable LoRA")
        self.enable_lora = enable_lora
        self._model_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._vocab: dict[str, int] = {}
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        """Serve from a daemon thread; returns the base URL."""
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="llmrl-serve", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving, close the socket and join the serving thread."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()

    def __enter__(self) -> LMServer:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # a client that hung up or timed out is its own business
        super().handle_error(request, client_address)

    # -------------------------------------------------------------- internals

    def count(self, kind: str) -> None:
        with self._count_lock:
            self.requests[kind] += 1

    def working(self) -> None:
        """Between two units of work: stop if the request's time is up or its client has gone."""
        if time.monotonic() > getattr(_REQUEST, "deadline", float("inf")):
            raise RequestError(503, f"the request took longer than {self.limits.request_seconds:g} s: send fewer "
                                    "prompts per request", "server_error")
        if not getattr(_REQUEST, "client_alive", lambda: True)():
            raise ConnectionAbortedError("the client hung up")

    def model_call(self) -> Any:
        """Hold the model for one call, with the request's adapter on (or none for the base model)."""
        stack = contextlib.ExitStack()
        stack.enter_context(self._model_lock)
        if self.enable_lora:
            stack.enter_context(self.model.adapter(getattr(_REQUEST, "adapter", None)))  # type: ignore[attr-defined]
        return stack

    def load_lora_adapter(self, body: dict[str, Any]) -> dict[str, Any]:
        """vLLM's ``POST /v1/load_lora_adapter {"lora_name", "lora_path"}`` (needs enable_lora)."""
        name, path = body.get("lora_name"), body.get("lora_path")
        if not self.enable_lora:
            raise RequestError(400, "this server does not load adapters at run time: start it with --enable-lora")
        if not isinstance(name, str) or not name or not isinstance(path, str) or name == self.model_name:
            raise RequestError(400, "give lora_name (not the base model's name) and lora_path (a peft adapter folder)")
        with self._model_lock:
            try:
                self.model.load_adapter(name, path)  # type: ignore[attr-defined]
            except (OSError, ValueError) as e:
                raise RequestError(400, f"cannot load the adapter in {path}: {e}") from None
        return {"status": "ok", "message": f"Success: LoRA adapter '{name}' added successfully."}

    def unload_lora_adapter(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("lora_name")
        if not self.enable_lora:
            raise RequestError(400, "this server does not load adapters at run time: start it with --enable-lora")
        with self._model_lock:
            if name not in self.model.adapters:  # type: ignore[attr-defined]
                raise RequestError(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
            self.model.unload_adapter(name)  # type: ignore[attr-defined]
        return {"status": "ok", "message": f"Success: LoRA adapter '{name}' removed successfully."}

    def served_names(self) -> list[str]:
        return [self.model_name, *(sorted(self.model.adapters) if self.enable_lora else [])]  # type: ignore[attr-defined]

    def check_batch(self, items: list[Any], what: str) -> None:
        if len(items) > self.limits.max_prompts:
            raise RequestError(400, f"{len(items)} {what} in one request; this server takes at most "
                                    f"{self.limits.max_prompts} (ServeLimits.max_prompts): split the request")
        long = [i for i, p in enumerate(items) if isinstance(p, str) and len(p) > self.limits.max_prompt_chars]
        if long:
            raise RequestError(400, f"{what} {long[0]} has more than {self.limits.max_prompt_chars} characters "
                                    "(ServeLimits.max_prompt_chars)")

    def before_post(self, path: str) -> tuple[int, bytes, str] | None:
        """A subclass may answer a POST itself (status, body, content type); None serves it."""
        return None

    def token_ids(self, tokens: list[str]) -> list[int]:
        with self._count_lock:
            return [self._vocab.setdefault(t, len(self._vocab)) for t in tokens]

    def tokens(self, text: str) -> list[tuple[str, float | None]]:
        """The served model's tokens of ``text``, each with its log-prob (as echoed to clients)."""
        return self.token_logprobs(text)

    def token_logprobs(self, text: str) -> list[tuple[str, float | None]]:
        fn = getattr(self.model, "token_logprobs", None)
        if fn is None:
            raise RequestError(
                400,
                f"the served model {self.model_name} has no token_logprobs method, so this server "
                "cannot return log-probs",
            )
        with self.model_call():
            # Texts that do not add up to ``text`` are passed on: clients then use /tokenize.
            return [(str(t), None if lp is None else float(lp)) for t, lp in fn(text)]

    # -------------------------------------------------------------- endpoints

    def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        self.check_model(body)
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise RequestError(400, "prompt must be a string or a non-empty list of strings")
        self.check_batch(prompts, "prompts")
        max_tokens = _int(body, "max_tokens", 16)
        n = _int(body, "n", 1)
        if not 1 <= n <= self.limits.max_n:
            raise RequestError(400, f"n must be in [1, {self.limits.max_n}] (ServeLimits.max_n), got {n}.")
        if not 0 <= max_tokens <= self.limits.max_tokens:
            raise RequestError(400, f"max_tokens must be in [0, {self.limits.max_tokens}] (ServeLimits.max_tokens), "
                                    f"got {max_tokens}.")
        echo = bool(body.get("echo", False))
        logprobs = body.get("logprobs")
        want_prompt_lps = body.get("prompt_logprobs") is not None
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        seed = body.get("seed")

        choices = []
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        for p in prompts:
            self.working()
            if max_tokens == 0:
                texts: tuple[str, ...] = ("",) * n
            else:
                with self.model_call():
                    texts = self.model.generate(
                        [p],
                        max_new_tokens=max_tokens,
                        temperature=float(body.get("temperature", 1.0)),
                        top_p=float(body.get("top_p", 1.0)),
                        stop=stop,
                        n=n,
                        seed=None if seed is None else int(seed),
                    )[0].texts
            scoring = logprobs is not None or want_prompt_lps
            prompt_toks = self.tokens(p) if scoring else None
            if prompt_toks is not None:
                usage["prompt_tokens"] += len(prompt_toks)
            for text in texts:
                choice: dict[str, Any] = {
                    "index": len(choices),
                    "text": (p if echo else "") + text,
                    "logprobs": None,
                    "finish_reason": "length" if max_tokens == 0 else "stop",
                }
                if logprobs is not None:
                    full = prompt_toks if text == "" else self.tokens(p + text)
                    n_prompt = len(prompt_toks)  # type: ignore[arg-type]
                    choice["logprobs"] = self.logprobs_block(full, n_prompt, echo)  # type: ignore[arg-type]
                    usage["completion_tokens"] += len(full) - n_prompt  # type: ignore[arg-type]
                if want_prompt_lps:
                    choice["prompt_logprobs"] = self.prompt_logprobs(prompt_toks)  # type: ignore[arg-type]
                choices.append(choice)
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return {
            "id": f"cmpl-{time.time_ns()}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": choices,
            "usage": usage,
        }

    def prompt_logprobs(self, toks: list[tuple[str, float | None]]) -> list[dict[str, Any] | None]:
        ids = self.token_ids([t for t, _ in toks])
        out: list[dict[str, Any] | None] = []
        for (t, lp), i in zip(toks, ids):
            if lp is None:
                out.append(None)
                continue
            # rank unknown: no top-k here
            out.append({str(i): {"logprob": lp, "rank": None, "decoded_token": t}})
        return out

    def logprobs_block(self, toks: list[tuple[str, float | None]], n_prompt: int, echo: bool) -> dict[str, Any]:
        """OpenAI's legacy ``logprobs`` object; text offsets add up the token texts from the start."""
        texts = [t for t, _ in toks]
        offsets, pos = [], 0
        for t in texts:
            offsets.append(pos)
            pos += len(t)
        keep = range(len(toks)) if echo else range(n_prompt, len(toks))
        return {
            "tokens": [texts[i] for i in keep],
            "token_logprobs": [toks[i][1] for i in keep],
            "text_offset": [offsets[i] for i in keep],
            "top_logprobs": [None if toks[i][1] is None else {texts[i]: toks[i][1]} for i in keep],
        }

    def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise RequestError(400, "input must be a string or a list of strings")
        self.check_batch(texts, "inputs")
        with self._model_lock:
            vectors = self.model.embed(texts) if texts else []
        return {
            "object": "list",
            "model": body.get("model", self.model_name),
            "data": [
                {"object": "embedding", "index": i, "embedding": [float(x) for x in v]} for i, v in enumerate(vectors)
            ],
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        }

    def tokenize(self, body: dict[str, Any]) -> dict[str, Any]:
        text = body.get("prompt", body.get("content"))
        if not isinstance(text, str):
            raise RequestError(400, "give the text to tokenize as 'prompt' (or 'content')")
        self.check_batch([text], "texts")
        ids = self.token_ids([t for t, _ in self.tokens(text)])
        return {"tokens": ids, "count": len(ids), "max_model_len": 0}

    def check_model(self, body: dict[str, Any]) -> None:
        """The request's model must be served; a loaded adapter's name selects that adapter."""
        name = body.get("model")
        if name is not None and name not in self.served_names():
            raise RequestError(404, f"The model `{name}` does not exist; this server has "
                                    f"{', '.join(f'`{n}`' for n in self.served_names())}.", "NotFoundError")
        _REQUEST.adapter = name if name not in (None, self.model_name) else None


class _Handler(BaseHTTPRequestHandler):
    server: LMServer
    timeout = 30  # seconds a connection may stay silent: no handler thread waits forever
    server_version = "llmrl-serve"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet in tests
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            s = self.server
            self._json(200, {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "llmrl"}
                                                        for n in s.served_names()]})
        elif self.path.rstrip("/") == "/health":
            self._json(200, {"status": "ok"})
        else:
            self._error(404, f"no route GET {self.path}", "NotFoundError")

    def do_POST(self) -> None:  # noqa: N802
        s = self.server
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self._error(400, "bad or missing Content-Length")
            return
        raw = self.rfile.read(length)
        s.count("post")
        answer = s.before_post(self.path)
        if answer is not None:
            self._send(*answer)
            return
        routes = {
            "/v1/completions": s.completions,
            "/v1/embeddings": s.embeddings,
            "/tokenize": s.tokenize,
            "/v1/load_lora_adapter": s.load_lora_adapter,
            "/v1/unload_lora_adapter": s.unload_lora_adapter,
        }
        route = routes.get(self.path.rstrip("/"))
        if route is None:
            self._error(404, f"no route POST {self.path}", "NotFoundError")
            return
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError as e:
            self._error(400, f"the request body is not a JSON object: {e}")
            return
        kind = self.path.strip("/").split("/")[-1]
        if kind == "completions":
            kind = "echo" if body.get("echo") else "prompt_logprobs" if body.get("prompt_logprobs") is not None else kind
        s.count(kind)
        _REQUEST.deadline = time.monotonic() + s.limits.request_seconds
        _REQUEST.adapter = None  # until check_model reads the request's model
        _REQUEST.client_alive = self._client_alive
        try:
            self._json(200, route(body))
        except ConnectionAbortedError:
            s.count("abandoned")  # nobody to answer: the model is free for the next request
        except RequestError as e:
            self._error(e.status, e.message, e.kind)
        except (ValueError, TypeError) as e:
            self._error(400, f"{type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - a served model's failure becomes HTTP 500, as in real servers
            self._error(500, f"{type(e).__name__}: {e}", "server_error")

    def _client_alive(self) -> bool:
        """False once the client has closed its end (the request body was read in full, so a
        readable socket with nothing to read means it hung up)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return not readable or bool(self.connection.recv(1, socket.MSG_PEEK))
        except OSError:
            return False

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._json(status, {"error": {"message": message, "type": kind, "code": status}})

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _int(body: dict[str, Any], key: str, default: int) -> int:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise RequestError(400, f"{key} must be an integer, got {value!r}")
    return int(value)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_in_thread(model: LanguageModel, host: str = "127.0.0.1", port: int = 0,
                    server_class: type[LMServer] = LMServer, **server_kwargs: Any) -> tuple[LMServer, str]:
    """Start serving ``model`` from a daemon thread; returns (server, base URL). ``server.stop()``
    ends it. ``port=0`` picks a free port; ``server_class`` (a subclass) and its keyword arguments
    change how it answers."""
    server = server_class(model, host=host, port=port, **server_kwargs)
    return server, server.start()
