"""The LM judge: p(yes) vs p(no) as a calibrated verdict, abstaining instead of crashing."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from llmrl.lm.base import CandidateScores, LanguageModel
from llmrl.roles.judge import JudgeConfig, JudgeReward, LMJudge

TASK = "Alice proposes how to split $10 with Bob; Bob accepts or rejects."


class AnswerLM(LanguageModel):
    """Says yes to outcomes where Bob rejects; 'mute' outcomes get almost no yes/no mass."""

    name = "answer-lm"

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fail, self.contexts = fail, []

    def score(self, contexts, candidates):
        if self.fail:
            raise RuntimeError("server down")
        self.contexts += list(contexts)
        out = []
        for c in contexts:
            last = c.rsplit("Outcome:", 1)[-1]
            if "mute" in last:
                lp = [-20.0, -21.0]
            else:
                lp = [np.log(0.8), np.log(0.1)] if "rejects" in last else [np.log(0.2), np.log(0.7)]
            out.append(CandidateScores.from_sums(candidates, lp, [1, 1]))
        return out

    def generate(self, *a, **k):
        raise NotImplementedError


def test_probability_is_yes_against_no_and_memoised():
    lm = AnswerLM()
    judge = LMJudge(lm, JudgeConfig(TASK, objective="Bob should reject unfair offers."))
    p = judge.probabilities(["Bob rejects $2.", "Bob accepts $5.", "Bob rejects $2."])
    assert p == pytest.approx([0.8 / 0.9, 0.2 / 0.9, 0.8 / 0.9])
    assert len(lm.contexts) == 2 and judge.stats.new == 2 and judge.stats.judged == 3
    judge.probabilities(["Bob rejects $2."])
    assert len(lm.contexts) == 2  # memoised
    assert judge.rewards(["Bob rejects $2.", "Bob accepts $5."]).tolist() == [1.0, 0.0]


def test_prompt_holds_the_objective_and_labelled_examples():
    cfg = JudgeConfig(TASK, examples=(("Bob rejects $1.", True), ("Bob accepts $6.", False)))
    prompt = LMJudge(AnswerLM(), cfg).prompt("Bob accepts $3.")
    assert prompt.startswith(TASK) and "Objective" not in prompt
    assert "Outcome: Bob rejects $1.\nQuestion: Is the outcome desirable?\nAnswer: Yes" in prompt
    assert "Answer: No" in prompt and prompt.endswith("Outcome: Bob accepts $3.\nQuestion: Is the outcome desirable?\nAnswer:")


def test_no_yes_no_mass_or_a_failing_lm_abstains():
    judge = LMJudge(AnswerLM(), JudgeConfig(TASK, objective="x", output="probability"))
    p = judge.probabilities(["the mute outcome", "Bob rejects $1."])
    assert np.isnan(p[0]) and p[1] == pytest.approx(0.8 / 0.9)
    assert judge.rewards(["the mute outcome"], abstain=-1.0).tolist() == [-1.0]
    assert judge.stats.abstained == 2
    broken = LMJudge(AnswerLM(fail=True), JudgeConfig(TASK, objective="x"))
    assert np.isnan(broken.probabilities(["Bob rejects $1."])).all()


def test_bad_configs_are_named():
    with pytest.raises(ValueError, match="objective .* or labelled examples"):
        JudgeConfig(TASK)
    with pytest.raises(ValueError, match="output"):
        JudgeConfig(TASK, objective="x", output="text")


def test_the_wrapper_pays_the_verdict_at_the_episode_end():
    judge = LMJudge(AnswerLM(), JudgeConfig(TASK, objective="Bob should reject unfair offers."))
    # CartPole stands in for any env: the outcome text says how long the pole stayed up.
    env = JudgeReward(gym.make("CartPole-v1"), judge,
                      lambda steps: f"Bob rejects after {len(steps)} steps." if len(steps) < 30 else "Bob accepts.")
    env.reset(seed=0)
    rewards, done, info = [], False, {}
    while not done:
        _, r, terminated, truncated, info = env.step(0)
        rewards.append(r)
        done = terminated or truncated
    assert rewards[:-1] == [0.0] * (len(rewards) - 1) and rewards[-1] == 1.0
    assert info["env_reward"] == 1.0 and info["judge_abstained"] is False


def test_a_real_model_gives_a_probability_or_abstains(smollm2_fp32):
    judge = LMJudge(smollm2_fp32, JudgeConfig(TASK, objective="Bob should reject offers below $3."))
    p = judge.probabilities(["Alice offers Bob $1. Bob rejects.", "Alice offers Bob $5. Bob accepts."])
    assert all(np.isnan(x) or 0.0 <= x <= 1.0 for x in p)


class ThinkingLM(AnswerLM):
    """Writes a reasoning line, then answers yes when its reasoning says 'punish'."""

    def generate(self, prompts, max_new_tokens=64, temperature=0.0, top_p=1.0, stop=(), n=1, seed=None):
        from llmrl.lm.base import Generation

        if self.fail:
            raise RuntimeError("server down")
        return [Generation(p, ("P2 should punish this." if "$1" in p.rsplit("Outcome:", 1)[-1] else "Fine.",))
                for p in prompts]

    def score(self, contexts, candidates):
        return [CandidateScores.from_sums(candidates, [np.log(0.9), np.log(0.1)] if "punish this" in c
                                          else [np.log(0.1), np.log(0.9)], [1, 1]) for c in contexts]


def test_a_thinking_judge_reads_its_verdict_after_its_reasoning():
    cfg = JudgeConfig(TASK, objective="Bob punishes selfish offers.", reasoning_tokens=24,
                      examples=(("Bob rejects $2.", True, "$2 is selfish, so rejecting punishes it."),))
    judge = LMJudge(ThinkingLM(), cfg)
    assert judge.prompt("Bob rejects $1.").endswith("Reasoning:")
    assert "Reasoning: $2 is selfish, so rejecting punishes it.\nAnswer: Yes" in judge.prompt("x")
    assert judge.rewards(["Bob rejects $1.", "Bob rejects $5."]).tolist() == [1.0, 0.0]
    assert judge.reasoning["Bob rejects $1."] == "P2 should punish this."
    broken = LMJudge(ThinkingLM(fail=True), cfg)
    assert np.isnan(broken.probabilities(["Bob rejects $1."])).all() and broken.stats.abstained == 1
    with pytest.raises(ValueError, match="an example is"):
        JudgeConfig(TASK, examples=(("a",),))
