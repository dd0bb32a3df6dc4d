"""The LM as planner (SayCan, Ahn et al., 2022): "Say" × "Can".

At each decision the LM scores every skill's sentence as the next numbered step after a few
worked plans, the task and the steps done so far (:func:`saycan_prompt`); a learned affordance
model gives each skill's probability of succeeding from the current state
(:class:`AffordanceModel`, SayCan's value functions). The planner runs the skill with the highest
product, appends it to the plan and repeats until it picks ``done`` or runs out of decisions.

``mode`` picks what the choice uses: ``saycan`` (the product), ``lm`` (the LM alone: it cannot see
the state, so it proposes skills that cannot run now), ``affordance`` (the value alone: it cannot
read the task). The LM's scores come through :meth:`LanguageModel.score`, log-likelihoods that
chat APIs no longer return, so this runs on any llmrl backend that scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["MODES", "AffordanceModel", "SayCanPlanner", "saycan_prompt"]

MODES = ("saycan", "lm", "affordance")

PREAMBLE = ("A robot in a grid world carries out tasks step by step. Its skills: go to an object, pick up an "
            "object, open a door, put the object it holds next to another object, and done when the task is "
            "complete. It holds one object at a time; a locked door opens only for a key of its colour.")  # fmt: skip

# Worked plans in our words (SayCan's prompt is a list of instruction -> numbered-skill examples).
EXAMPLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("go to the green ball", ("go to the green ball", "done")),
    ("put the purple box next to the yellow key", ("pick up the purple box", "put the purple box next to the yellow key",
                                                   "done")),
    ("open the red door", ("pick up the red key", "open the red door", "done")),
)  # fmt: skip


def saycan_prompt(task: str, done: Sequence[str], examples: Sequence[tuple[str, Sequence[str]]] = EXAMPLES) -> str:
    """The LM's context before the next step's number: preamble, worked plans, the task, the
    steps so far."""
    blocks = [PREAMBLE]
    for t, steps in examples:
        blocks.append(f"Task: {t}\n" + "\n".join(f"{i + 1}. {s}" for i, s in enumerate(steps)))
    blocks.append(f"Task: {task}\n" + "".join(f"{i + 1}. {s}\n" for i, s in enumerate(done)) + f"{len(done) + 1}.")
    return "\n\n".join(blocks)


class AffordanceModel(nn.Module):
    """P(skill succeeds | what the agent observes), an MLP trained on tried skills' outcomes."""

    def __init__(self, in_dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    def fit(self, x: np.ndarray, y: np.ndarray, epochs: int = 200, learning_rate: float = 3e-3,
            seed: int = 0) -> float:  # fmt: skip
        """Full-batch Adam on the binary cross-entropy; returns the final training loss."""
        torch.manual_seed(seed)
        xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
        optimiser = torch.optim.Adam(self.parameters(), lr=learning_rate)
        loss = torch.tensor(0.0)
        for _ in range(epochs):
            loss = nn.functional.binary_cross_entropy_with_logits(self(xt), yt)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        return float(loss.detach())

    def probability(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(self(torch.as_tensor(np.asarray(x), dtype=torch.float32))).numpy()


@dataclass
class SayCanPlanner:
    """Chooses the next skill (see the module docstring). ``lm`` needs only ``score``."""

    lm: Any
    affordance: AffordanceModel | None
    mode: str = "saycan"
    normalise_length: bool = True
    """score a skill by its mean token log-probability: summed, a one-token "done" outscores every
    longer skill at step one (measured with gemma-3-270m: it ends every plan before it starts)"""
    done_text: str = "done"
    memo: dict[str, np.ndarray] = field(default_factory=dict)
    lm_calls: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode != "affordance" and self.lm is None:
            raise ValueError(f"mode {self.mode!r} needs an LM")
        if self.mode != "lm" and self.affordance is None:
            raise ValueError(f"mode {self.mode!r} needs an affordance model")

    def say(self, task: str, done: Sequence[str], skills: Sequence[str]) -> np.ndarray:
        """p_LM(skill | task, steps so far), normalised over the skills (memoised per prompt)."""
        prompt = saycan_prompt(task, done)
        key = prompt + "\x00" + "\x00".join(skills)
        if key not in self.memo:
            self.lm_calls += 1
            scores = self.lm.score([prompt], [[" " + s for s in skills]])[0]
            self.memo[key] = scores.probs(normalise_length=self.normalise_length)
        return self.memo[key]

    def choose(self, task: str, done: Sequence[str], skills: Sequence[str], can: np.ndarray) -> tuple[int, dict[str, Any]]:
        """The next skill's index and the scores behind it; ``can`` is each skill's affordance
        (``done``'s is 1: finishing is always possible)."""
        say = self.say(task, done, skills) if self.mode != "affordance" else np.ones(len(skills))
        if self.mode == "affordance":
            # The value alone cannot tell when the task is complete: it never picks done.
            can = np.where(np.asarray(skills) == self.done_text, -1.0, can)
        score = say * (can if self.mode != "lm" else 1.0)
        i = int(np.argmax(score))
        return i, {"say": float(say[i]), "can": float(can[i]), "skill": skills[i]}
