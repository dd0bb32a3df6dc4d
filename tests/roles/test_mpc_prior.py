"""The LM's proposed start for PETS's planner: parsing, fallbacks, batching, and the planner taking it."""

from __future__ import annotations

import numpy as np
import pytest

from llmrl.envs import CARTPOLE_SWINGUP_ID
from llmrl.lm.base import Generation, LanguageModel, LMError
from llmrl.rl.mbrl import PRESETS, REWARD_FNS, TRUE_DYNAMICS, ActionPrior, PETSAgent
from llmrl.roles.mpc_prior import LMActionPrior, parse_actions

HANGING = np.array([-1.0, 0.0, 0.0])  # Pendulum-v1: cos θ, sin θ, θ̇ — straight down, still


class ScriptedLM(LanguageModel):
    """Answers every prompt with the next of ``answers`` (or raises ``LMError`` for an exception)."""

    name = "scripted"

    def __init__(self, *answers: str | Exception) -> None:
        super().__init__()
        self.answers, self.prompts = list(answers), []

    def generate(self, prompts, max_new_tokens=64, temperature=0.0, top_p=1.0, stop=(), n=1, seed=None):
        self.stats.generate_calls += 1
        self.prompts += list(prompts)
        out = []
        for p in prompts:
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            out.append(Generation(p, (answer,)))
        return out

    def score(self, contexts, candidates):
        raise NotImplementedError


def pendulum_prior(lm: LanguageModel, **kw) -> LMActionPrior:
    return LMActionPrior(lm, "Pendulum-v1", action_low=[-2.0], action_high=[2.0], steps=8, hold=2, **kw)


@pytest.mark.parametrize("text, values, clipped", [
    (" 0.5, -0.25, 1", [0.5, -0.25, 1.0], 0),
    ("[0.2; −0.4] then push", [0.2, -0.4], 0),
    (" 1. -1 pushes the cart left, +1 pushes it right", [1.0, -1.0], 0),  # echoed prose is not read
    ("3, -7, 0.5, 0.5, 0.5, 0.5", [1.0, -1.0, 0.5, 0.5], 2),  # at most n, out-of-range clipped and counted
    ("I would push left", [], 0),
])  # fmt: skip
def test_the_leading_list_of_numbers_is_read_and_clipped(text, values, clipped):
    got, n_clipped = parse_actions(text, 4)
    assert got.tolist() == values and n_clipped == clipped


def test_a_full_answer_becomes_a_prior_in_the_envs_units_each_number_held():
    lm = ScriptedLM(" 1, -0.5, 0, 0.25")
    prior = pendulum_prior(lm, std=0.5)(HANGING)
    assert isinstance(prior, ActionPrior)
    assert prior.mean[:, 0].tolist() == [2.0, 2.0, -1.0, -1.0, 0.0, 0.0, 0.5, 0.5]  # ×2: Pendulum's torque bound
    assert prior.std is not None and np.allclose(prior.std, 1.0)  # half of half the range [-2, 2]
    assert "180 degrees from upright" in lm.prompts[0] and "4 numbers between -1 and 1" in lm.prompts[0]


def test_unusable_answers_and_failing_calls_fall_back_to_no_prior_and_are_counted():
    lm = ScriptedLM(" 0.5, 0.5", "no idea", LMError("server down"), " 0, 0, 0, 0")
    prior = pendulum_prior(lm)
    short = prior(HANGING)
    assert short is not None and len(short.mean) == 4  # two numbers held twice; the planner's default after
    assert prior(np.array([0.0, 1.0, 0.0])) is None  # prose
    assert prior(np.array([1.0, 0.0, 0.0])) is None  # the LM raised: no prior, and nothing memoised
    assert prior(np.array([1.0, 0.0, 0.0])) is not None  # so the same state is asked again
    s = prior.stats
    assert (s.lm_calls, s.proposals, s.usable, s.short, s.unusable, s.errors) == (4, 4, 1, 1, 2, 1)


def test_one_call_answers_a_batch_and_repeated_states_are_memoised():
    lm = ScriptedLM(" 1, 1, 1, 1", " -1, -1, -1, -1")
    prior = pendulum_prior(lm)
    first = prior.propose([HANGING, np.array([0.0, 1.0, 2.0]), HANGING])
    again = prior.propose([HANGING])
    assert lm.stats.generate_calls == 1 and prior.stats.memo_hits == 2
    assert first[0].mean[0, 0] == first[2].mean[0, 0] == again[0].mean[0, 0] == 2.0 and first[1].mean[0, 0] == -2.0


def test_the_planner_starts_from_the_proposal():
    config = PRESETS["cpu"]
    agent = PETSAgent(TRUE_DYNAMICS["Pendulum-v1"], REWARD_FNS["Pendulum-v1"], config, [-2.0], [2.0])
    agent.reset(pendulum_prior(ScriptedLM(" 1, -1, 1, -1"))(HANGING))
    mean, _ = agent.initial()
    assert mean[:8, 0].tolist() == [2.0, 2.0, -2.0, -2.0, 2.0, 2.0, -2.0, -2.0]
    assert mean[8:, 0].abs().max() == 0  # past the proposal: the planner's mid-range default


def test_an_unknown_task_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="no task description for 'CartPole-v1'.*task=TaskText"):
        LMActionPrior(ScriptedLM(), "CartPole-v1", action_low=[-1.0], action_high=[1.0])


def test_the_small_real_model_answers_both_tasks_in_one_call(smollm2_fp32):
    for env_id, obs, high in (("Pendulum-v1", HANGING, 2.0), (CARTPOLE_SWINGUP_ID, np.array([0, 0, -1, 0, 0.0]), 1.0)):
        prior = LMActionPrior(smollm2_fp32, env_id, action_low=[-high], action_high=[high], steps=12, hold=3)
        got = prior.propose([obs, obs * 0.9])
        s = prior.stats
        assert s.lm_calls == 1 and s.proposals == 2 and s.usable + s.short + s.unusable == 2 and s.errors == 0
        for p in got:
            assert p is None or (len(p.mean) <= 12 and np.abs(p.mean).max() <= high)
