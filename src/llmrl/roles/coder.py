"""What the LM-as-programmer roles share: sampling programs, cutting them out of the LM's text,
and keeping a record of every candidate, runnable or not.

The reward coder (Text2Reward, Eureka) and the state coder (LESR) run one loop: show the LM the
task as code, sample K programs, run each in :mod:`llmrl.sandbox` inside a short training, feed
the statistics (or the error) back as text, repeat. A failed program is a result, never a crash:
its kind and message are kept in its :class:`Candidate`, counted in the run's runnable share,
and shown to the LM in the next prompt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from llmrl.lm.base import LanguageModel
from llmrl.sandbox import CodeFailure

_FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", re.DOTALL)


def extract_program(completion: str, start: str) -> str:
    """The program in an LM reply. A completion model continues ``start`` (the program's first
    lines, which the prompt ends with) up to the closing fence; a chat model answers with a fenced
    block of its own, which wins when it defines the same function."""
    name = re.search(r"^def (\w+)\(", start, re.MULTILINE)
    for block in _FENCE.findall(completion):
        if name and re.search(rf"^def {name.group(1)}\(", block, re.MULTILINE):
            return block.strip() + "\n"
    return start + completion.split("```")[0].rstrip() + "\n"


@dataclass
class Candidate:
    """One sampled program and what became of it."""

    iteration: int
    index: int
    code: str
    status: str = "pending"
    """ok, or the failure's kind (syntax, rejected, exception, timeout, memory, killed, bad_output, contract)"""
    error: str = ""
    fitness: float | None = None
    """the task's own success measure after the short training (None if it did not run)"""
    stats: dict[str, Any] = field(default_factory=dict)
    """what training recorded (component curves, returns, Lipschitz constants)"""
    seconds: float = 0.0

    @property
    def runnable(self) -> bool:
        return self.status == "ok"

    def fail(self, failure: CodeFailure) -> None:
        self.status, self.error = failure.kind, failure.feedback()[:3000]

    def record(self) -> dict[str, Any]:
        return asdict(self)


def sample_programs(lm: LanguageModel, prompt: str, start: str, k: int, *, temperature: float, max_new_tokens: int,
                    seed: int) -> list[str]:  # fmt: skip
    """K programs for one prompt that ends with ``start`` (seeded: a resumed search samples the same ones)."""
    gen = lm.generate([prompt], max_new_tokens=max_new_tokens, temperature=temperature, n=k, seed=seed,
                      stop=["\n```", "\ndef main", "\nif __name__"])  # fmt: skip
    return [extract_program(text, start) for text in gen[0].texts]


def curve(values: Sequence[float], points: int = 10) -> list[float]:
    """``points`` evenly spaced values of a training curve (Eureka's reflection shows ten)."""
    if len(values) == 0:
        return []
    idx = np.linspace(0, len(values) - 1, min(points, len(values))).round().astype(int)
    return [float(values[i]) for i in idx]


def describe_curve(name: str, values: Sequence[float]) -> str:
    if len(values) == 0:
        return f"{name}: never recorded"
    pts = ", ".join(f"{v:.3g}" for v in curve(values))
    return f"{name}: [{pts}], max {max(values):.3g}, mean {float(np.mean(values)):.3g}, min {min(values):.3g}"


def check_numbers(value: Any, n: int, what: str, bound: float) -> np.ndarray:
    """``value`` as ``n`` finite floats within ``bound``, or a ``contract`` CodeFailure naming the problem."""
    if value is None or (not isinstance(value, np.ndarray) and any(v is None for v in value)):
        raise CodeFailure("contract", f"{what} is None: the function must return a number (is its return missing?)")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CodeFailure("contract", f"{what} must be numbers, got {type(value).__name__}") from None
    if arr.shape != (n,):
        raise CodeFailure("contract", f"{what} must be one number per transition ({n}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise CodeFailure("contract", f"{what} contains NaN or infinity (e.g. at row {int(np.argmin(np.isfinite(arr)))})")
    if np.abs(arr).max(initial=0.0) > bound:
        raise CodeFailure("contract", f"{what} reaches {np.abs(arr).max():.3g}, beyond the bound of +-{bound:g}: "
                                      "scale it down")
    return arr


SEARCH_COLUMNS = ("iteration", "env_steps", "candidates", "runnable", "runnable_share", "best_fitness", "mean_fitness",
                  "lm_seconds", "train_seconds")  # fmt: skip


@dataclass
class SearchSettings:
    """The search's knobs, as both coder recipes name them."""

    model: str
    iterations: int
    samples: int
    temperature: float
    max_new_tokens: int
    seed: int
    workers: int
    cluster: Any = None
    label: str = "search"


def code_search(folder: Any, settings: SearchSettings, *, prompt: Any, start: str, job: Any, job_args: Any,
                progress: bool = True) -> list[Candidate]:  # fmt: skip
    """The LM-as-programmer loop (Eureka's and LESR's): per iteration, sample programs, train each
    (``job(job_args(candidate))`` in :func:`llmrl.workers.run_jobs`), keep every result.

    ``prompt(done)`` writes an iteration's prompt from the candidates so far; the prompt ends
    with ``start``. A job returns ``{"failure": None | {"kind", "message"}, "fitness", "stats",
    "env_steps", "seconds"}``. Candidates go to ``candidates.jsonl`` and one row per iteration to
    ``progress.csv`` in the run folder; a resumed run picks up at its first unfinished iteration.
    """
    import time

    from llmrl.runs import JsonLines, read_json_lines, read_rows
    from llmrl.workers import run_jobs

    path = folder.path / "candidates.jsonl"
    rows = read_rows(folder.path / "progress.csv", "iteration") if folder.resumed else []
    finished = {int(r["iteration"]) for r in rows}
    done = [Candidate(**{k: v for k, v in r.items() if k in Candidate.__dataclass_fields__})
            for r in read_json_lines(path) if r["iteration"] in finished]  # fmt: skip
    resume_at = max(finished, default=-1) + 0.5
    log = folder.progress(SEARCH_COLUMNS, key="iteration", resume_at=resume_at)
    out = JsonLines(path, key="iteration", resume_at=resume_at)
    lm = None
    env_steps = sum(c.stats.get("env_steps", 0) for c in done)
    try:
        for it in range(settings.iterations):
            if it in finished:
                continue
            if lm is None:
                from llmrl.lm import load_model

                lm = load_model(settings.model)
            t0 = time.perf_counter()
            codes = sample_programs(lm, prompt(done), start, settings.samples, temperature=settings.temperature,
                                    max_new_tokens=settings.max_new_tokens, seed=settings.seed * 1000 + it)  # fmt: skip
            lm_seconds = time.perf_counter() - t0
            candidates = [Candidate(it, i, code) for i, code in enumerate(codes)]
            t0 = time.perf_counter()
            for i, result in run_jobs(job, [(job_args(c),) for c in candidates], settings.workers,
                                      cluster=settings.cluster):  # fmt: skip
                c = candidates[i]
                c.seconds, c.stats = result["seconds"], {**result["stats"], "env_steps": result["env_steps"]}
                env_steps += result["env_steps"]
                if result["failure"]:
                    c.status, c.error = result["failure"]["kind"], result["failure"]["message"]
                else:
                    c.status, c.fitness = "ok", result["fitness"]
            train_seconds = time.perf_counter() - t0
            for c in candidates:
                out.write(c.record())
            out.flush()
            ok = [c.fitness for c in candidates if c.runnable]
            log.write({"iteration": it, "env_steps": env_steps, "candidates": len(candidates), "runnable": len(ok),
                       "runnable_share": len(ok) / len(candidates), "best_fitness": max(ok, default=None),
                       "mean_fitness": float(np.mean(ok)) if ok else None, "lm_seconds": lm_seconds,
                       "train_seconds": train_seconds})  # fmt: skip
            done += candidates
            if progress:
                print(f"[{settings.label}] iteration {it}: {len(ok)}/{len(candidates)} runnable, best fitness "
                      f"{max(ok, default=float('nan')):.3g}", flush=True)
    finally:
        log.close()
        out.close()
        if lm is not None:
            lm.close()
    return done


def best_of(candidates: Sequence[Candidate]) -> Candidate | None:
    """The fittest runnable candidate (the earliest among equals), or None."""
    runnable = [c for c in candidates if c.runnable]
    return max(runnable, key=lambda c: (c.fitness if c.fitness is not None else -np.inf, -c.iteration, -c.index),
               default=None)


def search_summary(candidates: Sequence[Candidate], iterations: int) -> dict[str, Any]:
    """Runnable share (overall and per iteration, with each failure kind counted), steps spent, the best."""
    by_iteration = {}
    for it in range(iterations):
        cs = [c for c in candidates if c.iteration == it]
        if cs:
            statuses: dict[str, int] = {}
            for c in cs:
                statuses[c.status] = statuses.get(c.status, 0) + 1
            by_iteration[it] = {"candidates": len(cs), "runnable_share": sum(c.runnable for c in cs) / len(cs),
                                "statuses": statuses,
                                "best_fitness": max((c.fitness for c in cs if c.runnable), default=None)}  # fmt: skip
    best = best_of(candidates)
    return {"candidates": len(candidates),
            "runnable_share": sum(c.runnable for c in candidates) / len(candidates) if candidates else 0.0,
            "by_iteration": by_iteration, "env_steps": sum(c.stats.get("env_steps", 0) for c in candidates),
            "best": {"iteration": best.iteration, "index": best.index, "fitness": best.fitness} if best else None}  # fmt: skip
