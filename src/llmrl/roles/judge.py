"""The LM as reward judge (Kwon et al., ICLR 2023): does this outcome meet the objective?

The frozen LM reads a task description, either an objective in words (zero-shot) or a few
labelled outcomes (few-shot), then one outcome and a question. Its answer is the verdict. We do
not parse generated text. We read the probability the LM puts on " Yes" against " No" after the
question, so the score is calibrated and every backend that returns log-likelihoods gives it.

- :class:`LMJudge` judges a batch of outcome texts in one scoring call. Verdicts are memoised per
  outcome (and persist across runs when the LM is a :class:`llmrl.lm.cache.CachedLM`).
- With ``reasoning_tokens`` the judge thinks first (Kwon et al.'s one-example "Let's think step by
  step" prompt): the LM writes a short reasoning greedily, and the verdict is read after it. An
  example may carry its own reasoning, shown before its answer.
- When the LM puts almost no mass on either answer (``min_mass``), or a prompt is malformed, the
  judge abstains: a NaN probability, counted in ``stats.abstained``. It never raises.
- :class:`JudgeReward` is a Gymnasium wrapper: at the end of each episode (or at each step) the
  judge's verdict on ``describe(...)`` of the outcome becomes the reward.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from llmrl.lm.base import LanguageModel

OUTPUTS = ("binary", "probability")


@dataclass(frozen=True)
class JudgeConfig:
    """What the judge is told and how its answer becomes a number."""

    task: str
    """what is going on, e.g. the game's rules and who the agent is"""
    objective: str = ""
    """the desired outcome in words (zero-shot); empty when ``examples`` carry it"""
    examples: tuple[tuple[str, bool] | tuple[str, bool, str], ...] = ()
    """labelled outcomes shown before the one judged (few-shot): (outcome text, desirable?) or
    (outcome text, desirable?, the reasoning that leads to the answer)"""
    question: str = "Is the outcome desirable?"
    answers: tuple[str, str] = (" Yes", " No")
    """the continuations scored after ``Answer:`` (positive first)"""
    output: str = "binary"
    """binary: 1 when p(yes) >= threshold, else 0; probability: p(yes) itself"""
    threshold: float = 0.5
    min_mass: float = 1e-4
    """abstain when p(yes) + p(no) under the LM is below this (it wanted to say something else)"""
    reasoning_tokens: int = 0
    """> 0: the LM first writes up to this many tokens of reasoning (greedy, one line), then answers"""

    def __post_init__(self) -> None:
        if not self.task.strip():
            raise ValueError("the judge needs a task description")
        if not self.objective.strip() and not self.examples:
            raise ValueError("give the judge an objective (zero-shot) or labelled examples (few-shot), or both")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")
        if not 0.0 < self.threshold < 1.0 or not 0.0 <= self.min_mass < 1.0:
            raise ValueError("threshold must be in (0, 1) and min_mass in [0, 1)")
        if len(self.answers) != 2 or self.answers[0] == self.answers[1]:
            raise ValueError("answers must be two different strings, positive first")
        if self.reasoning_tokens < 0:
            raise ValueError(f"reasoning_tokens must be >= 0, got {self.reasoning_tokens}")
        object.__setattr__(self, "examples", tuple(tuple(e) for e in self.examples))  # JSON gives lists
        for e in self.examples:
            if len(e) not in (2, 3) or not isinstance(e[0], str):
                raise ValueError(f"an example is (outcome text, desirable?) or (outcome text, desirable?, reasoning), "
                                 f"got {e!r}")


@dataclass
class JudgeStats:
    calls: int = 0
    """scoring calls to the LM"""
    judged: int = 0
    """outcomes asked about (memo hits included)"""
    new: int = 0
    """outcomes the LM was asked about for the first time in this process"""
    abstained: int = 0
    seconds: float = 0.0


class LMJudge:
    """Judges outcome texts against an objective with a frozen LM's p(yes) vs p(no)."""

    def __init__(self, lm: LanguageModel, config: JudgeConfig) -> None:
        self.lm, self.config = lm, config
        self.stats = JudgeStats()
        self._memo: dict[str, float] = {}
        self.reasoning: dict[str, str] = {}
        """the reasoning written per outcome (``reasoning_tokens`` > 0)"""

    def prompt(self, outcome: str) -> str:
        """Task, objective, labelled examples, the outcome and the question, ending in ``Answer:``
        (or in ``Reasoning:`` when the judge thinks first)."""
        c = self.config
        yes, no = (a.strip() for a in c.answers)
        parts = [c.task.strip()]
        if c.objective.strip():
            parts.append(f"Objective: {c.objective.strip()}")
        for text, good, *reason in c.examples:
            why = f"Reasoning: {reason[0].strip()}\n" if reason and c.reasoning_tokens else ""
            parts.append(f"Outcome: {text.strip()}\nQuestion: {c.question}\n{why}Answer: {yes if good else no}")
        last = "Reasoning:" if c.reasoning_tokens else "Answer:"
        parts.append(f"Outcome: {outcome.strip()}\nQuestion: {c.question}\n{last}")
        return "\n\n".join(parts)

    def _prompts(self, outcomes: list[str]) -> list[str | None]:
        """The prompts the answers are scored after; None where the reasoning could not be had."""
        prompts = [self.prompt(o) for o in outcomes]
        if not self.config.reasoning_tokens:
            return list(prompts)
        try:
            gens = self.lm.generate(prompts, max_new_tokens=self.config.reasoning_tokens, stop=("\n",))
        except Exception:  # noqa: BLE001 - a judge that cannot think abstains
            return [None] * len(prompts)
        self.reasoning.update({o: g.texts[0].strip() for o, g in zip(outcomes, gens)})
        return [f"{p} {g.texts[0].strip()}\nAnswer:" for p, g in zip(prompts, gens)]

    def probabilities(self, outcomes: Sequence[str]) -> np.ndarray:
        """p(yes) / (p(yes) + p(no)) per outcome; NaN where the judge abstains."""
        self.stats.judged += len(outcomes)
        todo = [o for o in dict.fromkeys(outcomes) if o not in self._memo]
        if todo:
            start = time.perf_counter()
            self.stats.calls += 1
            self.stats.new += len(todo)
            prompts = self._prompts(todo)
            ready = [i for i, p in enumerate(prompts) if p is not None]
            scores: list[Any] = [None] * len(todo)
            try:
                got = self.lm.score([prompts[i] for i in ready], list(self.config.answers)) if ready else []
                for i, s in zip(ready, got):
                    scores[i] = s
            except Exception:  # noqa: BLE001 - a judge that cannot answer abstains; the run goes on
                pass
            for outcome, s in zip(todo, scores):
                self._memo[outcome] = self.p_yes_of(s)
            self.stats.seconds += time.perf_counter() - start
        p = np.array([self._memo[o] for o in outcomes], dtype=np.float64)
        self.stats.abstained += int(np.isnan(p).sum())
        return p

    def p_yes_of(self, scores: Any) -> float:
        """p(yes) / (p(yes) + p(no)) from one prompt's answer scores; NaN when it cannot be read."""
        if scores is None:
            return math.nan
        lp = np.asarray(scores.logprob, dtype=np.float64)
        if lp.shape != (2,) or not np.all(np.isfinite(lp) | (lp == -np.inf)):
            return math.nan
        mass = float(np.exp(lp).sum())
        if mass < self.config.min_mass or mass == 0.0:
            return math.nan
        top = lp.max()
        e = np.exp(lp - top)
        return float(e[0] / e.sum())

    def rewards(self, outcomes: Sequence[str], abstain: float = 0.0) -> np.ndarray:
        """The verdicts as rewards: 0/1 (binary) or p(yes); ``abstain`` where the judge abstains."""
        return self.verdicts(self.probabilities(outcomes), abstain)

    def verdicts(self, p: np.ndarray, abstain: float = 0.0) -> np.ndarray:
        r = (p >= self.config.threshold).astype(np.float64) if self.config.output == "binary" else p.copy()
        r[np.isnan(p)] = abstain
        return r


class JudgeReward(gym.Wrapper):
    """The judge's verdict as the reward, for any environment whose outcome can be told in words.

    ``describe(episode)`` turns what happened into the outcome text; ``episode`` is a list of
    ``{"action", "reward", "info"}`` per step so far. With ``per_step=False`` (Kwon et al.) the
    episode's last step is paid the verdict and every other step 0; with ``per_step=True`` every
    step is judged. The environment's own reward goes to ``info["env_reward"]``, the verdict to
    ``info["judge_reward"]``, and ``info["judge_abstained"]`` flags an abstention (paid
    ``abstain_reward``).
    """

    def __init__(self, env: gym.Env, judge: LMJudge, describe: Callable[[list[dict[str, Any]]], str], *,
                 per_step: bool = False, abstain_reward: float = 0.0) -> None:  # fmt: skip
        super().__init__(env)
        self.judge, self.describe = judge, describe
        self.per_step, self.abstain_reward = per_step, abstain_reward
        self.steps: list[dict[str, Any]] = []

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self.steps = []
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps.append({"action": action, "reward": float(reward), "info": info})
        info["env_reward"] = float(reward)
        paid = 0.0
        if self.per_step or terminated or truncated:
            p = self.judge.probabilities([self.describe(self.steps)])
            paid = float(self.judge.verdicts(p, self.abstain_reward)[0])
            info["judge_abstained"] = bool(np.isnan(p[0]))
            info["judge_reward"] = paid
        return obs, paid, terminated, truncated, info
