"""Run code a language model wrote — a reward function, state features — where it cannot hurt.

Eureka splices the LM's reward into the task file and runs it with the trainer's privileges;
LESR imports it. Here the code runs in a long-lived worker process (:mod:`llmrl.sandbox._worker`)
that locks itself down before it reads a line of it:

============  ====================================================================================
layer         what it stops
============  ====================================================================================
environment   the worker starts with an empty environment: no inherited variables, no API keys
network       a fresh network namespace: no interface but a downed loopback
filesystem    Landlock: the whole tree read-only, one scratch folder writable; no ptrace or signals
              to processes outside
privileges    as root, the worker becomes ``nobody`` (no capabilities; the process limit applies)
limits        address space, CPU seconds, file size, open files, processes; no core dumps
syscalls      a seccomp allowlist: no sockets, fork, exec, threads, kill, mount, ptrace, bpf, ...
wall clock    each request has a deadline; past it the whole process group is killed
============  ====================================================================================

Data crosses as JSON and raw numpy buffers, never pickle, and everything that comes back is
checked (size, type, shape) before use. :func:`static_check` rejects obviously hostile code early
with a readable message, but it is a courtesy, not a layer: the escape catalogue in
``tests/sandbox`` runs with it off.

A layer the kernel lacks is named at start-up, and the sandbox refuses to run unless the caller
opts into the weaker mode (``allow_weaker=("syscalls",)`` or ``True``; ``--sandbox-weaker`` on the
command line).
"""

from __future__ import annotations

import ast
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmrl.sandbox import _worker

log = logging.getLogger(__name__)

LAYERS = ("network", "filesystem", "privileges", "limits", "syscalls")
SPIN_SECONDS = 1e-3
"""How long the parent busy-waits (yielding the core) for an answer before it sleeps: most
batches come back sooner, and a sleep and wake-up cost more than a small batch's work."""
_WORKER = Path(_worker.__file__)


@dataclass(frozen=True)
class Limits:
    """What one worker may use. The defaults fit a reward function over a batch of a few hundred rows."""

    memory_mb: int = 1024
    """address space (numpy's import takes about 300 MB of it)"""
    cpu_seconds: int = 600
    """CPU time over the worker's whole life, a backstop behind the per-request deadline"""
    call_seconds: float = 10.0
    """wall-clock deadline of one request (loading the code, one call, one batch)"""
    file_mb: int = 16
    """largest file the code may write, output included"""
    open_files: int = 64
    processes: int = 1
    """the worker itself: no fork even where seccomp is missing"""
    recursion_limit: int = 2000
    max_result_mb: int = 64
    """largest answer the parent accepts"""

    def __post_init__(self) -> None:
        for name in ("memory_mb", "cpu_seconds", "file_mb", "open_files", "processes", "recursion_limit",
                     "max_result_mb"):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ValueError(f"sandbox limit {name} must be > 0, got {getattr(self, name)}")
        if self.call_seconds <= 0:
            raise ValueError(f"sandbox limit call_seconds must be > 0, got {self.call_seconds}")


class SandboxUnavailable(RuntimeError):
    """A protection layer the caller requires does not hold on this kernel."""


class CodeFailure(Exception):
    """The untrusted code failed: ``kind`` is one of syntax, missing, exception, timeout, memory,
    killed, bad_output, rejected (by :func:`static_check`) or contract (a checked result was wrong)."""

    def __init__(self, kind: str, message: str, traceback: str = "") -> None:
        super().__init__(f"{kind}: {message}")
        self.kind, self.message, self.traceback = kind, message, traceback

    def feedback(self) -> str:
        """The failure as the LM should read it."""
        return f"{self.message}\n{self.traceback}".strip()


def clean_environment() -> dict[str, str]:
    """The worker's whole environment: nothing inherited, single-threaded numerics."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip


class Sandbox:
    """One long-lived locked-down worker: ``load`` code once, then ``call`` or ``batch`` it many times.

    A failure in the code raises :class:`CodeFailure`; a timeout, a crash or a malformed answer
    also kills the worker, and the next ``load`` starts a fresh one. Use as a context manager, or
    call :meth:`close`.
    """

    def __init__(self, limits: Limits | None = None, *, allow_weaker: bool | Collection[str] = False,
                 scratch: str | os.PathLike[str] | None = None, _skip_layers: Collection[str] = ()) -> None:
        self.limits = limits or Limits()
        self._skip = tuple(_skip_layers)  # as if the kernel lacked them: tests show each layer alone
        if allow_weaker is not True and allow_weaker is not False:
            unknown = sorted(set(allow_weaker) - set(LAYERS))
            if unknown:
                raise ValueError(f"allow_weaker names unknown layers {unknown}; the layers are {', '.join(LAYERS)}")
        self.allow_weaker = allow_weaker
        self._own_scratch = scratch is None
        self.scratch = Path(tempfile.mkdtemp(prefix="llmrl-sandbox-") if scratch is None else scratch).resolve()
        self.scratch.mkdir(parents=True, exist_ok=True)
        self._proc: subprocess.Popen[bytes] | None = None
        self.layers: dict[str, dict[str, Any]] = {}
        self.loads = 0

    # --- life cycle ---

    def start(self) -> None:
        """Start the worker and check its layers (done by ``load`` when needed)."""
        self.close_worker()
        self._proc = subprocess.Popen(
            [sys.executable, "-I", str(_WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=clean_environment(), cwd=self.scratch, close_fds=True,
            start_new_session=True,  # its own process group, killed as a whole
        )  # fmt: skip
        assert self._proc.stdout is not None
        self._reader = _worker.Reader(self._proc.stdout.fileno(), spin_seconds=SPIN_SECONDS)
        settings = {
            "scratch": str(self.scratch),
            "limits": {"memory_bytes": self.limits.memory_mb << 20, "cpu_seconds": self.limits.cpu_seconds,
                       "file_bytes": self.limits.file_mb << 20, "open_files": self.limits.open_files,
                       "processes": self.limits.processes},
            "recursion_limit": self.limits.recursion_limit,
            "max_input_bytes": 1 << 30,
            "skip": list(self._skip),
        }  # fmt: skip
        self._send({"op": "settings", "value": settings})
        try:
            hello = self._receive(30.0)
        except CodeFailure as e:
            self.close_worker()
            raise SandboxUnavailable(f"the sandbox worker did not start: {e.message}") from None
        self.layers = hello["value"]["layers"]
        missing = {name: self.layers.get(name, {}).get("detail", "not reported") for name in LAYERS
                   if not self.layers.get(name, {}).get("ok")}  # fmt: skip
        if missing:
            allowed = set(LAYERS) if self.allow_weaker is True else set(self.allow_weaker or ())
            refused = {k: v for k, v in missing.items() if k not in allowed}
            text = "; ".join(f"{k} ({v})" for k, v in missing.items())
            if refused:
                self.close_worker()
                raise SandboxUnavailable(
                    f"the sandbox cannot hold on this machine: {text}. Run where these layers exist (Linux >= 5.13 "
                    f"with Landlock, libseccomp2, user or network namespaces), or accept a weaker sandbox with "
                    f"allow_weaker={tuple(sorted(refused))!r} (--sandbox-weaker true on the command line)")
            log.warning("sandbox running WITHOUT %s", text)

    def close_worker(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for pipe in (proc.stdin, proc.stdout):
            if pipe:
                pipe.close()
        proc.wait()

    def close(self) -> None:
        self.close_worker()
        if self._own_scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # --- requests ---

    def load(self, code: str, entries: Sequence[str] = ()) -> None:
        """Run ``code`` in a fresh worker and check it defines the functions ``entries``.

        Every program gets its own process (about 0.1 s), so one candidate cannot tamper with the
        next one's evaluation (patched builtins, import hooks, a forged protocol)."""
        self.start()
        self.loads += 1
        self._request({"op": "load", "code": code, "entries": list(entries)})

    def call(self, entry: str, *args: Any) -> Any:
        """``entry(*args)`` in the worker; arguments and result are numbers, strings, arrays, lists, dicts."""
        return self._request({"op": "call", "entry": entry, "value": list(args)})["value"]

    def batch(self, entry: str, *columns: Any, n: int, columnar: bool = False) -> Any:
        """``[entry(*row_i) for i in range(n)]``, where row i takes element i of each column (an
        array, or a dict of arrays that becomes a dict of elements): one round trip for a batch.

        With ``columnar``, rows of ``number`` or ``(number, {name: number})`` come back as
        ``{"reward": array, "parts": {name: array}}`` (one array each, far cheaper to send than
        rows); rows of any other shape come back as the list."""
        rows = self._request({"op": "batch", "entry": entry, "value": list(columns), "n": int(n),
                              "columns": columnar})["value"]  # fmt: skip
        if columnar and isinstance(rows, dict) and rows.get("__columns__") is True:
            return rows
        if not isinstance(rows, list) or len(rows) != n:
            self.close_worker()
            raise CodeFailure("bad_output", f"the worker answered {type(rows).__name__} instead of {n} rows")
        return rows

    def output(self, max_chars: int = 2000) -> str:
        """The tail of what the code printed."""
        path = self.scratch / "output.log"
        try:
            with open(path, "rb") as f:
                f.seek(max(0, path.stat().st_size - max_chars))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        if not self.alive:
            raise CodeFailure("killed", "the worker is not running (it was killed after an earlier failure): "
                                        "load the code again")
        self._send(message)
        reply = self._receive(self.limits.call_seconds)
        if not reply.get("ok"):
            raise CodeFailure(str(reply.get("kind", "exception")), str(reply.get("message", "")),
                              str(reply.get("traceback", "")))
        return reply

    def _send(self, message: dict[str, Any]) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            _worker.write_frame(self._proc.stdin.fileno(), message)
        except (BrokenPipeError, OSError):
            self._died("while receiving the request")

    def _receive(self, seconds: float) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            reply = _worker.read_frame(self._reader, self.limits.max_result_mb << 20,
                                       deadline=time.monotonic() + seconds)
        except TimeoutError:
            self.close_worker()
            raise CodeFailure("timeout", f"no answer within {seconds:g} s (the worker was killed)") from None
        except EOFError:
            self._died("before answering")
        except (ValueError, TypeError, KeyError, RecursionError, UnicodeDecodeError) as e:
            self.close_worker()
            raise CodeFailure("bad_output", f"the worker's answer was malformed ({e}); the worker was killed") from None
        if not isinstance(reply, dict):
            self.close_worker()
            raise CodeFailure("bad_output", "the worker's answer was not a message")
        return reply

    def _died(self, when: str) -> Any:
        assert self._proc is not None
        code = self._proc.wait()
        self.close_worker()
        why = {-signal.SIGKILL: "killed (over its memory or CPU limit?)", -signal.SIGSEGV: "crashed (segfault)",
               -signal.SIGXCPU: "over its CPU-time limit", -signal.SIGSYS: "stopped by the syscall filter",
               -signal.SIGXFSZ: "over its file-size limit"}.get(code, f"exited with code {code}")  # fmt: skip
        kind = "memory" if code == -signal.SIGKILL else "timeout" if code == -signal.SIGXCPU else "killed"
        raise CodeFailure(kind, f"the worker {why} {when}")


# --- a fast early rejection, not a protection ----------------------------------------------------

ALLOWED_IMPORTS = frozenset({"math", "cmath", "numpy", "random", "statistics", "itertools", "functools",
                             "collections", "operator", "typing", "dataclasses", "heapq", "bisect", "re", "string",
                             "__future__"})  # fmt: skip
FORBIDDEN_NAMES = frozenset({"exec", "eval", "compile", "open", "__import__", "globals", "locals", "vars",
                             "getattr", "setattr", "delattr", "breakpoint", "input", "memoryview"})  # fmt: skip


def static_check(code: str) -> list[str]:
    """Reasons to reject ``code`` before running it (empty if none): syntax errors, imports beyond
    math and numpy, dunder attributes, and builtins that reach outside a pure function."""
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        return [f"SyntaxError: {e.msg} (line {e.lineno})"]
    problems = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                if name.split(".")[0] not in ALLOWED_IMPORTS:
                    problems.append(f"line {line}: import of {name!r} (allowed: {', '.join(sorted(ALLOWED_IMPORTS))})")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("__"):
            problems.append(f"line {line}: dunder attribute {node.attr!r}")
        elif isinstance(node, ast.Name) and (node.id in FORBIDDEN_NAMES or node.id.startswith("__")):
            problems.append(f"line {line}: use of {node.id!r}")
    return problems


def reject_early(code: str) -> None:
    """Raise :class:`CodeFailure` ("rejected") if :func:`static_check` finds anything."""
    problems = static_check(code)
    if problems:
        kind = "syntax" if problems[0].startswith("SyntaxError") else "rejected"
        raise CodeFailure(kind, "the code was rejected before running: " + "; ".join(problems[:8]))
