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
    if any(v is None for v in value):
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
