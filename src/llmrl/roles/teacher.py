"""The LM as curriculum teacher: it reads the student's per-task success and picks the next task.

Claim under test (OMNI, Zhang, Lehman, Stanley, Clune 2024, "OMNI: Open-endedness via Models of
human Notions of Interestingness", ICLR): a teacher should train on tasks that are *learnable*
(not yet mastered, not hopeless — OMNI finds them by learning progress, after Kanitscheider et
al. 2021) and, among those, *interesting* (unlike what the student already masters — OMNI asks a
foundation model). Here one small LM does both from a prompt, and the recipe
(:mod:`llmrl.recipes.curriculum`) measures held-out success against uniform, ALP-GMM and PLR.

How the LM chooses (:class:`LMTeacher`). Every task has a description in words
(:func:`describe_babyai_task`: "go to an object in a 6x6 room with 4 distractors, behind a
locked door"). The prompt, in our words, states OMNI's two criteria, then lists the tasks in
groups by the student's recent success (``stats()["success_rate"]``, rounded to 10%): being
learnt (with each rate), not tried, never solved, mastered. After "Next practice task:" the LM
*scores* every task's description (``LanguageModel.score``, one shared prompt, so a backend with
a prefix cache reads it once) and the next task is drawn from the softmax of those
log-likelihoods (``temperature``). We score rather than generate: a 270M model's free text
rarely names a task exactly, while its likelihoods rank all of them. With probability
``epsilon`` a task is drawn uniformly, so every task's success estimate is refreshed (as
ALP-GMM's random share does).

What a 270M model makes of it is measured, not assumed: ``stats()`` reports the LM's choice mass
on each group of its last prompt (``lm/mass_learning``, ``lm/mass_mastered``, ...). On 38 tasks
with made-up rates (8 mastered, 10 never solved, 20 being learnt) gemma-3-270m put 46% of its
mass on the tasks being learnt, 38% on never-solved and 16% on mastered ones: close to the groups'
sizes, so the order of the prompt and the descriptions' own likelihood weigh as much as the
rates. Calibrating by the prompt without results (``calibrate``) made it worse (79% on mastered).

Cost. An LM call takes ~0.1–1 s on a free CPU core (4–6 s for a 1,000-token prompt and 38
candidates on a loaded one), so the distribution is re-asked only every ``ask_every`` draws and
memoised by prompt (rates move in 10% steps, so a prompt can come back). ``stats()`` counts asks,
LM calls, memo hits and LM seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from llmrl.lm.base import LanguageModel
from llmrl.rl.curriculum import Curriculum, Task

__all__ = ["LMTeacher", "LMTeacherConfig", "describe_babyai_task", "teacher_prompt"]


@dataclass
class LMTeacherConfig:
    """The LM teacher's settings."""

    ask_every: int = 32
    """Draws between two asks of the LM (an LM call costs ~0.1–1 s on a CPU)."""
    epsilon: float = 0.2
    """Share of draws that take a task uniformly instead of the LM's choice."""
    temperature: float = 1.0
    """Tasks are drawn from softmax(log-likelihood / temperature); 0 takes the LM's top task."""
    calibrate: bool = False
    """Score log p(task | prompt) − log p(task | the prompt without the student's results), to
    cancel a task's prior likelihood (domain-conditional PMI, Holtzman et al. 2021; one extra LM
    call, memoised). Off by default: with gemma-3-270m it moved the choice onto mastered tasks."""
    normalise_length: bool = False
    """Score descriptions by mean instead of summed token log-probability."""
    mastered: float = 0.8
    """A task whose recent success is at least this is listed as mastered."""

    def __post_init__(self) -> None:
        if self.ask_every < 1:
            raise ValueError(f"ask_every must be >= 1, got {self.ask_every}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must lie in [0, 1], got {self.epsilon}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0: the LM's top task), got {self.temperature}")
        if not 0.0 < self.mastered <= 1.0:
            raise ValueError(f"mastered must lie in (0, 1], got {self.mastered}")


# --------------------------------------------------------------------------- tasks in words
_MISSIONS = {"goto": "go to an object", "pickup": "pick up an object", "open": "open a door",
             "putnext": "put an object next to another"}  # fmt: skip
_DOORS = {"none": "", "closed": ", behind a closed door", "locked": ", behind a locked door"}


def describe_babyai_task(task: dict[str, Any]) -> str:
    """A task of :mod:`llmrl.envs.task_space` in words, as the teacher's prompt lists it."""
    n = task["num_dists"]
    dists = "no distractors" if n == 0 else f"{n} distractor{'s' * (n != 1)}"
    door = _DOORS[task["door"]]
    if task["family"] == "open":  # the door is the goal, not an obstacle
        door = " (it is locked)" if task["door"] == "locked" else ""
    size = task["room_size"]
    return f"{_MISSIONS[task['family']]} in a {size}x{size} room with {dists}{door}"


# --------------------------------------------------------------------------- the prompt
_INTRO = (
    "A teacher picks practice tasks for a student who learns to act in a grid world.\n"
    "A good practice task is learnable: the student succeeds sometimes, but not yet always. "
    "Tasks it has mastered teach it little, and tasks it never solves are too hard for now. "
    "Among learnable tasks, the teacher prefers interesting ones, unlike the tasks already mastered.\n"
)


GROUPS = ("learning", "untried", "unsolved", "mastered")
"""The prompt's groups of tasks, in the prompt's order."""


def success_groups(success: np.ndarray, mastered: float = 0.8) -> list[str]:
    """Each task's group by its success rate rounded to 10% (NaN: never tried)."""
    groups = []
    for s in success:
        r = None if math.isnan(s) else round(float(s), 1)
        groups.append("untried" if r is None else "mastered" if r >= mastered else "unsolved" if r == 0.0
                      else "learning")
    return groups


def teacher_prompt(descriptions: Sequence[str], success: np.ndarray | None, mastered: float = 0.8) -> str:
    """The prompt after which each description is scored: tasks grouped by rounded success, the
    tasks being learnt first with their rates; ``success=None`` leaves the results out (the
    calibration prompt)."""
    if success is None:
        return _INTRO + "\nNext practice task:"
    heads = {"learning": "Being learnt (success so far):", "untried": "Not tried yet:",
             "unsolved": "Never solved yet:", "mastered": f"Mastered (success {mastered:.0%} or more):"}
    lines: dict[str, list[str]] = {g: [] for g in GROUPS}
    for text, s, group in zip(descriptions, success, success_groups(success, mastered), strict=True):
        lines[group].append(f"- {text} (success {round(float(s), 1):.0%})" if group == "learning" else f"- {text}")
    parts = [_INTRO] + ["\n".join([heads[g], *lines[g]]) + "\n" for g in GROUPS if lines[g]]
    return "\n".join(parts) + "\nNext practice task:"


# --------------------------------------------------------------------------- the teacher
class LMTeacher(Curriculum):
    """A teacher over discrete tasks whose choices are an LM's scores (see the module docstring).

    Args:
        descriptions: one description in words per task (task i = index i).
        lm: a :class:`~llmrl.lm.base.LanguageModel` (only ``score`` is used).
        config: the teacher's settings.
        seed, stats_bins, success_window: as :class:`~llmrl.rl.curriculum.Curriculum`.
    """

    name = "lm"

    def __init__(self, descriptions: Sequence[str], lm: LanguageModel, config: LMTeacherConfig | None = None,
                 seed: int = 0, **kwargs: Any) -> None:
        descriptions = [str(d) for d in descriptions]
        if not descriptions or len(set(descriptions)) != len(descriptions) or not all(descriptions):
            raise ValueError("descriptions must be non-empty, distinct strings, one per task")
        super().__init__(len(descriptions), seed, **kwargs)
        self.descriptions = descriptions
        self.lm = lm
        self.config = config or LMTeacherConfig()
        self.probs: np.ndarray | None = None  # the LM's choice distribution since the last ask
        self.memo: dict[str, np.ndarray] = {}  # prompt -> choice distribution
        self.prior: np.ndarray | None = None  # log-likelihoods after the prompt without results
        self.groups = ["untried"] * len(descriptions)  # each task's group in the last prompt
        self.since_ask = 0
        self.counts = {"asks": 0, "lm_calls": 0, "memo_hits": 0, "uniform_draws": 0}
        self.lm_seconds = 0.0

    def ask(self) -> np.ndarray:
        """The LM's distribution over tasks for the student's current success rates."""
        success = self.task_stats.summary()["success_rate"]
        prompt = teacher_prompt(self.descriptions, success, self.config.mastered)
        self.groups = success_groups(success, self.config.mastered)
        self.counts["asks"] += 1
        if prompt in self.memo:
            self.counts["memo_hits"] += 1
            return self.memo[prompt]
        scores = self.log_likelihoods(prompt)
        if self.config.calibrate:
            if self.prior is None:
                self.prior = self.log_likelihoods(teacher_prompt(self.descriptions, None))
            scores = scores - self.prior
        self.memo[prompt] = self.choice_probs(scores)
        return self.memo[prompt]

    def log_likelihoods(self, prompt: str) -> np.ndarray:
        """Every task description's log-likelihood after ``prompt`` (one LM call)."""
        t0 = time.perf_counter()
        [scores] = self.lm.score([prompt], [" " + d for d in self.descriptions])
        self.lm_seconds += time.perf_counter() - t0
        self.counts["lm_calls"] += 1
        s = scores.mean_logprob if self.config.normalise_length else scores.logprob
        return np.asarray(s, dtype=np.float64)

    def choice_probs(self, scores: np.ndarray) -> np.ndarray:
        """softmax(scores / temperature); temperature 0 puts all mass on the top task."""
        if self.config.temperature == 0:
            probs = np.zeros(len(scores))
            probs[int(np.argmax(scores))] = 1.0
            return probs
        z = (scores - scores.max()) / self.config.temperature
        e = np.exp(z)
        return e / e.sum()

    def sample(self) -> Task:
        if self.probs is None or self.since_ask >= self.config.ask_every:
            self.probs, self.since_ask = self.ask(), 0
        self.since_ask += 1
        if self.rng.random() < self.config.epsilon:
            self.counts["uniform_draws"] += 1
            return self._uniform_task()
        return int(self.rng.choice(len(self.probs), p=self.probs))

    def stats(self) -> dict[str, Any]:
        probs = self.probs if self.probs is not None else np.full(len(self.descriptions), 1.0 / len(self.descriptions))
        entropy = float(-(probs[probs > 0] * np.log(probs[probs > 0])).sum())
        # Does the LM follow the prompt's rule? Its choice mass on each group of the last prompt.
        mass = {f"lm/mass_{g}": float(sum(p for p, h in zip(probs, self.groups) if h == g)) for g in GROUPS}
        return {**super().stats(), **{f"lm/{k}": v for k, v in self.counts.items()}, **mass,
                "lm/seconds": self.lm_seconds, "lm/choice_entropy": entropy, "lm/probs": probs.copy()}

    def _state(self) -> dict[str, Any]:
        return {"probs": None if self.probs is None else self.probs.copy(), "since_ask": self.since_ask,
                "memo": {k: v.copy() for k, v in self.memo.items()}, "counts": dict(self.counts),
                "prior": None if self.prior is None else self.prior.copy(),
                "lm_seconds": self.lm_seconds, "groups": list(self.groups), "descriptions": list(self.descriptions),
                "config": asdict(self.config)}

    def _load(self, state: dict[str, Any]) -> None:
        if list(state["descriptions"]) != self.descriptions:
            raise ValueError("state_dict describes other tasks than this LM teacher's: same task split?")
        self.probs = None if state["probs"] is None else np.array(state["probs"], dtype=np.float64)
        self.since_ask = int(state["since_ask"])
        self.memo = {k: np.array(v, dtype=np.float64) for k, v in state["memo"].items()}
        self.prior = None if state["prior"] is None else np.array(state["prior"], dtype=np.float64)
        self.counts = {k: int(v) for k, v in state["counts"].items()}
        self.lm_seconds = float(state["lm_seconds"])
        self.groups = list(state["groups"])
