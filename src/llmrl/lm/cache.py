"""A persistent cache of deterministic LM results, shared by every process on the machine.

Evaluations re-score the same (context, candidates) many times: the same seeds, the same first
observations, the same prompts in a sweep. :class:`CachedLM` wraps any backend and answers those
from a sqlite file; :class:`ResultCache` is the store.

The store is safe under concurrent processes (parallel env workers, sweeps): sqlite in WAL mode
(readers never block the writer), a busy time-out instead of "database is locked" errors, and one
short ``BEGIN IMMEDIATE`` transaction of ``INSERT OR IGNORE`` per write (results are
deterministic, so whichever process writes a key first wins and the others agree with it).
WAL needs a local filesystem: do not put the cache on NFS.

Only *frozen* models belong behind a cache: the key is the model's name, so a model whose weights
change (a policy being trained) must not be wrapped, or must pass ``model_key`` naming its weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmrl.config import cache_dir
from llmrl.lm.base import (
    CandidateScores,
    Generation,
    LanguageModel,
    LMError,
    as_candidate_lists,
    check_generate_args,
)

CACHE_FILE = "lm-cache.sqlite"
_KEY_VERSION = 1  # bump when the meaning of stored values changes
_SQL_CHUNK = 500  # keys per SELECT, below sqlite's bound-parameter limit




def default_cache_path() -> Path:
    """Where :class:`ResultCache` keeps its file by default: ``cache_dir() / "lm-cache.sqlite"``."""
    return cache_dir() / CACHE_FILE


def cache_key(model: str, method: str, inputs: Any, params: Mapping[str, Any]) -> str:
    """sha256 of a canonical JSON of (model, method, inputs, params): equal calls, equal keys.

    Canonical means sorted dict keys, no whitespace, tuples as lists. Give numbers a fixed type
    (``float(temperature)``): JSON writes ``0`` and ``0.0`` differently.
    """
    payload = json.dumps(
        [_KEY_VERSION, model, method, inputs, dict(params)],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ResultCache:
    """A key -> JSON value store in one sqlite file, safe for concurrent threads and processes.

    Args:
        path: the sqlite file; ``None`` is :func:`default_cache_path`. Parent folders are created.
        timeout: seconds a writer waits for another process's write before giving up.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, timeout: float = 60.0) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.timeout = float(timeout)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._connection()  # fail here, with a clear message, rather than at the first call

    key = staticmethod(cache_key)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        # A connection inherited through fork() must not be used in the child: open a new one.
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LMError(f"cannot create the cache folder {self.path.parent} ({e}): set LLMRL_CACHE_DIR") from e
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                conn = sqlite3.connect(
                    self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
                )
                conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                # Switching to WAL needs a moment alone with the file; it sticks to the file after.
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS results ("
                    "key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL) WITHOUT ROWID"
                )
                break
            except sqlite3.OperationalError as e:
                if "locked" in str(e) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise LMError(
                    f"cannot open the LM cache {self.path} ({e}): delete the file, or point "
                    "LLMRL_CACHE_DIR at a local folder"
                ) from e
            except sqlite3.DatabaseError as e:
                raise LMError(f"the LM cache {self.path} is not a usable sqlite file ({e}): delete it") from e
        self._conn, self._pid = conn, os.getpid()
        return conn

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The stored values of those ``keys`` that are present. A stored value that is not JSON
        (a damaged row) is left out, with a warning, so it is computed and written again."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        with self._lock:
            conn = self._connection()
            for i in range(0, len(keys), _SQL_CHUNK):
                chunk = keys[i : i + _SQL_CHUNK]
                marks = ",".join("?" * len(chunk))
                for key, value in conn.execute(f"SELECT key, value FROM results WHERE key IN ({marks})", chunk):
                    try:
                        found[key] = json.loads(value)
                    except (TypeError, ValueError):
                        self.warn_damaged(key)
        return found

    def warn_damaged(self, key: str) -> None:
        warnings.warn(f"llmrl: a damaged entry in the LM cache {self.path} ({key[:12]}) is ignored and "
                      "recomputed", stacklevel=3)

    def put_many(self, items: Mapping[str, Any], replace: bool = False) -> None:
        """Store values (JSON-serialisable) in one short transaction; existing keys keep their value
        unless ``replace`` (a damaged entry being rewritten).

        A write that fails (disk full, lock held past ``timeout``) warns and is skipped: the cache
        only saves work, it must not stop a run.
        """
        if not items:
            return
        now = time.time()
        rows = [(k, json.dumps(v, separators=(",", ":"), allow_nan=True), now) for k, v in items.items()]
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
                    conn.executemany(f"{verb} INTO results (key, value, created) VALUES (?, ?, ?)", rows)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as e:
                warnings.warn(f"llmrl: could not write {len(rows)} results to the LM cache {self.path}: {e}", stacklevel=2)

    def get(self, key: str, default: Any = None) -> Any:
        return self.get_many([key]).get(key, default)

    def put(self, key: str, value: Any) -> None:
        self.put_many({key: value})

    def __contains__(self, key: str) -> bool:
        return key in self.get_many([key])

    def __len__(self) -> int:
        with self._lock:
            return int(self._connection().execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __getstate__(self) -> dict[str, Any]:  # picklable: the receiving process opens its own connection
        return {"path": self.path, "timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["timeout"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"ResultCache({str(self.path)!r})"


class CachedLM(LanguageModel):
    """Any backend, with its deterministic results kept in a :class:`ResultCache`.

    - ``score``: one entry per (context, candidate list); misses go to the inner backend in one call.
    - ``generate``: cached only when deterministic. Greedy (``temperature == 0``) is cached per
      prompt. Seeded sampling is cached per *batch*: a backend samples a batch from one random
      stream, so a prompt's seeded sample depends on the rest of the batch.
    - ``embed``: one entry per text, keyed on the embedder (``embed_key``; by default the
      shared MiniLM, which every backend delegates to).

    ``self.stats`` counts the calls made to this wrapper and the cache hits and misses (per context
    or prompt); ``inner.stats`` counts the work the backend actually did.

    Args:
        inner: the backend to wrap.
        cache: a :class:`ResultCache`, a path to its file, or ``None`` for the default file.
        model_key: what names the model in cache keys; defaults to ``inner.cache_identity``
            (weights, dtype or server URL, per backend). Change it when
            the weights change (a checkpoint hash) or results would come from the old weights.
    """

    def __init__(
        self,
        inner: LanguageModel,
        cache: ResultCache | str | os.PathLike[str] | None = None,
        model_key: str | None = None,
        embed_key: str | None = None,
    ) -> None:  # embed_key: what names the embedder; set it when a backend embeds its own way
        super().__init__()
        self.embed_key = embed_key
        self.inner = inner
        self.cache = cache if isinstance(cache, ResultCache) else ResultCache(cache)
        self.model_key = model_key or inner.cache_identity
        self.name = getattr(inner, "name", self.model_key)

    def score(
        self,
        contexts: Sequence[str],
        candidates: Sequence[str] | Sequence[Sequence[str]],
    ) -> list[CandidateScores]:
        lists = as_candidate_lists(contexts, candidates)
        keys = [cache_key(self.model_key, "score", [ctx, list(c)], {}) for ctx, c in zip(contexts, lists)]
        found = self._valid(self.cache.get_many(keys), dict(zip(keys, lists)), _scores_from)
        todo = {k: (ctx, c) for k, ctx, c in zip(keys, contexts, lists) if k not in found}
        if todo:
            ctxs = [ctx for ctx, _ in todo.values()]
            cands = [list(c) for _, c in todo.values()]
            fresh = self.inner.score(ctxs, cands)
            new = {
                k: {
                    "logprob": r.logprob.tolist(),
                    "mean_logprob": r.mean_logprob.tolist(),
                    "n_tokens": r.n_tokens.tolist(),
                }
                for k, r in zip(todo, fresh)
            }
            self.cache.put_many(new, replace=True)
            found.update({k: r for k, r in zip(todo, fresh)})
        hits = sum(1 for k in keys if k not in todo)
        self.stats.score_calls += 1
        self.stats.scored_contexts += len(lists)
        self.stats.cache_hits += hits
        self.stats.cache_misses += len(keys) - hits
        return [found[k] for k in keys]

    def _valid(self, stored: dict[str, Any], expect: dict[str, Any], decode: Any) -> dict[str, Any]:
        """The stored entries that decode into a well-formed result (the rest are warned about
        and recomputed): a corrupt cell must cost time, never a run or a wrong answer."""
        out = {}
        for key, value in stored.items():
            try:
                out[key] = decode(value, expect[key])
            except (TypeError, ValueError, KeyError, LMError):
                self.cache.warn_damaged(key)
        return out

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
        prompts = list(prompts)
        kwargs = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, stop=stops, n=n, seed=seed)
        self.stats.generate_calls += 1
        self.stats.generated_prompts += len(prompts)
        params = {
            "max_new_tokens": int(max_new_tokens),
            "temperature": float(temperature),
            "top_p": float(top_p),
            "stop": stops,
            "n": int(n),
            "seed": None if seed is None else int(seed),
        }
        if temperature == 0:
            keys = [cache_key(self.model_key, "generate", p, params) for p in prompts]
            found = self._valid(self.cache.get_many(keys), dict.fromkeys(keys, n), _texts_from)
            todo = {k: p for k, p in zip(keys, prompts) if k not in found}
            if todo:
                fresh = self.inner.generate(list(todo.values()), **kwargs)  # type: ignore[arg-type]
                new = {k: list(g.texts) for k, g in zip(todo, fresh)}
                self.cache.put_many(new, replace=True)
                found.update(new)
            hits = sum(1 for k in keys if k not in todo)
            self.stats.cache_hits += hits
            self.stats.cache_misses += len(keys) - hits
            return [Generation(prompt=p, texts=tuple(found[k])) for k, p in zip(keys, prompts)]
        if seed is not None:
            key = cache_key(self.model_key, "generate_batch", prompts, params)
            texts = self._valid(self.cache.get_many([key]), {key: (len(prompts), n)}, _batch_from).get(key)
            if texts is not None:
                self.stats.cache_hits += len(prompts)
            else:
                self.stats.cache_misses += len(prompts)
                texts = [list(g.texts) for g in self.inner.generate(prompts, **kwargs)]  # type: ignore[arg-type]
                self.cache.put_many({key: texts}, replace=True)
            return [Generation(prompt=p, texts=tuple(t)) for p, t in zip(prompts, texts)]
        return self.inner.generate(prompts, **kwargs)  # type: ignore[arg-type]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise ValueError("embed() takes a list of strings, got one string: wrap it as [text]")
        self.stats.embed_calls += 1
        # Keyed on the embedder: backends that do not embed their own way share MiniLM's entries.
        own = type(self.inner).embed is not LanguageModel.embed
        embedder = self.embed_key or (self.model_key if own else "all-MiniLM-L6-v2")
        keys = [cache_key(embedder, "embed", t, {}) for t in texts]
        found = self._valid(self.cache.get_many(keys), dict.fromkeys(keys), _vector_from)
        todo = {k: t for k, t in zip(keys, texts) if k not in found}
        if todo:
            fresh = self.inner.embed(list(todo.values()))
            new = {k: v.tolist() for k, v in zip(todo, fresh)}
            self.cache.put_many(new, replace=True)
            found.update(new)
        hits = sum(1 for k in keys if k not in todo)
        self.stats.cache_hits += hits
        self.stats.cache_misses += len(keys) - hits
        if not keys:
            return self.inner.embed([])
        return np.asarray([found[k] for k in keys], dtype=np.float32)

    def close(self) -> None:
        self.inner.close()
        self.cache.close()


# --------------------------------------------------------------------------- decoding stored entries
def _scores_from(value: Any, candidates: tuple[str, ...]) -> CandidateScores:
    """A stored score entry as CandidateScores; raises on any other shape or on invalid log-probs."""
    arrays = [np.asarray(value[k], dtype=np.float64) for k in ("logprob", "mean_logprob", "n_tokens")]
    if any(a.shape != (len(candidates),) for a in arrays):
        raise ValueError("wrong length")
    logprob, mean, n_tokens = arrays
    return CandidateScores(candidates, logprob, mean, n_tokens.astype(np.int64))


def _texts_from(value: Any, n: int) -> list[str]:
    if not isinstance(value, list) or len(value) != n or not all(isinstance(t, str) for t in value):
        raise ValueError("not n texts")
    return value


def _batch_from(value: Any, shape: tuple[int, int]) -> list[list[str]]:
    if not isinstance(value, list) or len(value) != shape[0]:
        raise ValueError("not one entry per prompt")
    return [_texts_from(texts, shape[1]) for texts in value]


def _vector_from(value: Any, _: Any) -> list[float]:
    vector = np.asarray(value, dtype=np.float64)
    if vector.ndim != 1 or not len(vector) or not np.isfinite(vector).all():
        raise ValueError("not a finite vector")
    return value
