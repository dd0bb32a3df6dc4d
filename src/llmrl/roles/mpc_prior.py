"""The LM as the MPC's starting point: from the task in words and the current state in words, the
LM writes an action sequence that the PETS planner's CEM starts from (:class:`llmrl.rl.mbrl.ActionPrior`).

The claim it serves (issue 20 §1): a language model knows that a weak motor must rock a pendulum
back and forth before it can lift it, so a plan that starts from its proposal may need fewer
env steps of model learning than one that starts from zero. Prompted LMs as zero-shot
low-level controllers and pattern machines: Mirchandani et al. 2023 ("Large Language Models as
General Pattern Machines", arXiv:2307.04721); an LM-proposed prior for a sampling planner is
our own small test of the idea, not a published method.

One call, batched: :meth:`LMActionPrior.propose` turns observations into prompts (task
description + state in words, :data:`TASK_TEXTS`), asks ``generate`` greedily for ``steps //
hold`` numbers in [−1, 1] (−1 and 1 are the action's bounds), holds each number for ``hold`` env
steps and scales them to the env's bounds. Answers are memoised per prompt (greedy decoding is
deterministic), so evaluation episodes that start from the same states cost one call each.

Parsing reads the answer's leading list of numbers and counts what it had to forgive
(:class:`PriorStats`): numbers outside [−1, 1] are clipped, an
answer with fewer numbers than asked gives a shorter prior (the planner's default takes over
after it), and an answer without any number — or an LM that raises — gives ``None``, which
``PETSAgent.reset(None)`` reads as plain PETS.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from llmrl.envs import CARTPOLE_SWINGUP_ID
from llmrl.lm.base import LanguageModel
from llmrl.lm.errors import LMError
from llmrl.rl.mbrl import ActionPrior

__all__ = ["LMActionPrior", "PriorStats", "TASK_TEXTS", "TaskText", "parse_actions", "prior_prompt"]

_NUMBER = re.compile(r"[-+−]?(?:\d+\.?\d*|\.\d+)")
_SEPARATOR = re.compile(r"[\s,;]+")
_MAX_CHARS = 2_000  # an answer is read this far, no further (a runaway generation costs nothing more)


@dataclass(frozen=True)
class TaskText:
    """A task told in words: what to achieve, what the action does, and the state described."""

    goal: str
    action: str
    """What −1 and +1 mean."""
    describe: Callable[[np.ndarray], str]
    """The observation in words."""


def _pendulum_state(obs: np.ndarray) -> str:
    cos, sin, theta_dot = (float(v) for v in np.asarray(obs, np.float64)[:3])
    theta = math.degrees(math.atan2(sin, cos))  # 0 = upright, positive = counter-clockwise
    side = "left" if theta > 0 else "right"
    turning = "counter-clockwise" if theta_dot > 0 else "clockwise"
    return (f"The pendulum is {abs(theta):.0f} degrees from upright, on the {side} side, "
            f"turning {turning} at {abs(theta_dot):.1f} rad/s.")


def _swingup_state(obs: np.ndarray) -> str:
    x, x_dot, cos, sin, theta_dot = (float(v) for v in np.asarray(obs, np.float64)[:5])
    theta = math.degrees(math.atan2(sin, cos))
    return (f"The cart is at {x:+.2f} m, moving at {x_dot:+.2f} m/s. The pole is {abs(theta):.0f} degrees "
            f"from upright, turning at {theta_dot:+.1f} rad/s.")


TASK_TEXTS: dict[str, TaskText] = {
    "Pendulum-v1": TaskText(
        goal=("A pendulum hangs from a motor. Bring it to point straight up and keep it there, using little "
              "force. The motor is too weak to lift it in one push: rock it back and forth to gain speed, "
              "then catch it at the top."),
        action="-1 is the strongest clockwise torque, +1 the strongest counter-clockwise torque, 0 none.",
        describe=_pendulum_state),
    CARTPOLE_SWINGUP_ID: TaskText(
        goal=("A pole hangs below a cart on a track. Move the cart so the pole swings up, then balance the pole "
              "upright with the cart near the middle of the track. Swing the cart left and right to pump energy "
              "into the pole, then make small moves to balance it."),
        action="-1 pushes the cart left as hard as possible, +1 pushes it right, 0 not at all.",
        describe=_swingup_state),
}
"""Our own descriptions of the two tasks of the PETS recipe, by env id."""


def prior_prompt(task: TaskText, obs: np.ndarray, n_numbers: int, seconds_per_number: float) -> str:
    """The prompt: the task, the action's meaning, the state, and the answer's form."""
    return (f"Task: {task.goal}\nAction: one number between -1 and 1. {task.action}\n"
            f"State: {task.describe(obs)}\n"
            f"Write the next {n_numbers} actions, each held for {seconds_per_number:g} s, as {n_numbers} numbers "
            f"between -1 and 1 separated by commas.\nActions:")


def parse_actions(text: str, n: int) -> tuple[np.ndarray, int]:
    """The leading list of numbers of ``text`` (separated by commas, semicolons or spaces; read
    up to the first word, so numbers the LM echoes from the prompt's prose are not taken), at most
    ``n``, clipped to [−1, 1], and how many needed clipping. No leading number: an empty array."""
    values: list[float] = []
    for token in _SEPARATOR.split(text[:_MAX_CHARS].strip()):
        token = token.strip("[]()")
        if not token:
            continue
        if len(values) == n or not _NUMBER.fullmatch(token):
            break
        value = float(token.replace("−", "-").rstrip("."))
        if not math.isfinite(value):
            break
        values.append(value)
    array = np.array(values, np.float64)
    return np.clip(array, -1.0, 1.0), int(np.sum(np.abs(array) > 1.0))


@dataclass
class PriorStats:
    """What the LM's answers were worth: every proposal is exactly one of usable (full length),
    short, or unusable (no number; the caller gets None); errors are LM calls that raised."""

    lm_calls: int = 0
    proposals: int = 0
    usable: int = 0
    short: int = 0
    unusable: int = 0
    errors: int = 0
    clipped_numbers: int = 0
    memo_hits: int = 0
    seconds: float = 0.0


class LMActionPrior:
    """Proposes PETS's starting action sequence with a language model.

    Args:
        lm: any :class:`llmrl.lm.LanguageModel` (only ``generate`` is used).
        env_id: a key of :data:`TASK_TEXTS`, or pass ``task``.
        action_low, action_high: the env's action bounds (the LM answers in [−1, 1]).
        steps: env steps the prior covers; past them the planner starts from its default.
        hold: env steps each of the LM's numbers is held (so it writes ``ceil(steps / hold)`` numbers).
        std: CEM's starting spread around the proposal, as a share of half the action range;
            None keeps the planner's own.
        step_seconds: the env's control interval, told to the LM.
        max_new_tokens: the answer's budget (default: four tokens a number).
    """

    def __init__(self, lm: LanguageModel, env_id: str | None = None, *, action_low: Sequence[float] | np.ndarray,
                 action_high: Sequence[float] | np.ndarray, steps: int = 40, hold: int = 4, std: float | None = None,
                 step_seconds: float = 0.05, max_new_tokens: int | None = None, task: TaskText | None = None) -> None:
        if task is None:
            if env_id not in TASK_TEXTS:
                raise ValueError(f"no task description for {env_id!r} (known: {', '.join(TASK_TEXTS)}): "
                                 "pass task=TaskText(goal, action, describe)")
            task = TASK_TEXTS[env_id]
        if steps < 1 or hold < 1:
            raise ValueError(f"steps and hold must be at least 1, got steps={steps}, hold={hold}")
        if std is not None and not std > 0:
            raise ValueError(f"std must be positive (a share of half the action range) or None, got {std}")
        self.lm, self.task, self.steps, self.hold, self.std = lm, task, steps, hold, std
        self.low = np.asarray(action_low, np.float64).reshape(-1)
        self.high = np.asarray(action_high, np.float64).reshape(-1)
        self.n_numbers = math.ceil(steps / hold)
        self.step_seconds = step_seconds
        self.max_new_tokens = max_new_tokens or 4 * self.n_numbers + 4
        self.stats = PriorStats()
        self._memo: dict[str, str] = {}

    def prompt(self, obs: np.ndarray) -> str:
        return prior_prompt(self.task, obs, self.n_numbers, self.hold * self.step_seconds)

    def __call__(self, obs: np.ndarray) -> ActionPrior | None:
        return self.propose([obs])[0]

    def propose(self, observations: Sequence[np.ndarray]) -> list[ActionPrior | None]:
        """One prior per observation (None where the LM's answer was unusable), in one ``generate`` call."""
        prompts = [self.prompt(o) for o in observations]
        new = list(dict.fromkeys(p for p in prompts if p not in self._memo))
        self.stats.memo_hits += len(prompts) - len(new)
        if new:
            t0 = time.perf_counter()
            self.stats.lm_calls += 1
            try:
                answers = [g.texts[0] if g.texts else "" for g in
                           self.lm.generate(new, max_new_tokens=self.max_new_tokens, temperature=0.0, stop=["\n"])]
            except (LMError, RuntimeError, ValueError):  # an LM that cannot answer costs the prior, not the run
                self.stats.errors += 1
                answers = None
            self.stats.seconds += time.perf_counter() - t0
            if answers is not None:
                self._memo.update(zip(new, answers))
        return [self._prior(self._memo.get(p, "")) for p in prompts]

    def _prior(self, answer: str) -> ActionPrior | None:
        self.stats.proposals += 1
        values, clipped = parse_actions(answer, self.n_numbers)
        self.stats.clipped_numbers += clipped
        if len(values) == 0:
            self.stats.unusable += 1
            return None
        if len(values) < self.n_numbers:
            self.stats.short += 1
        else:
            self.stats.usable += 1
        unit = np.repeat(values, self.hold)[: self.steps, None]  # [T, 1] in [−1, 1], shared by every action dim
        mean = self.low + (unit + 1.0) / 2.0 * (self.high - self.low)
        std = None if self.std is None else np.broadcast_to(self.std * (self.high - self.low) / 2.0, mean.shape).copy()
        return ActionPrior(mean.astype(np.float32), None if std is None else std.astype(np.float32))
