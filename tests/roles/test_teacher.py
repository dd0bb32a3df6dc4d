"""The LM teacher: its choices follow the LM's scores, it asks the LM only every ask_every draws
(memoised by prompt), its prompt carries the learner's success rates, and it resumes exactly."""

from __future__ import annotations

import numpy as np
import pytest

from llmrl.roles.teacher import LMTeacher, LMTeacherConfig, describe_babyai_task, success_groups, teacher_prompt
from fakes import FixedLM, WordLM

TASKS = [{"family": "goto", "room_size": 5, "num_dists": 0, "door": "none"},
         {"family": "pickup", "room_size": 6, "num_dists": 4, "door": "locked"},
         {"family": "open", "room_size": 8, "num_dists": 2, "door": "closed"}]  # fmt: skip
WORDS = [describe_babyai_task(t) for t in TASKS]


def test_tasks_are_described_in_words():
    assert WORDS == ["go to an object in a 5x5 room with no distractors",
                     "pick up an object in a 6x6 room with 4 distractors, behind a locked door",
                     "open a door in a 8x8 room with 2 distractors"]  # fmt: skip


def test_the_greedy_teacher_takes_the_task_the_lm_scores_highest():
    lm = FixedLM(" " + WORDS[1])
    teacher = LMTeacher(WORDS, lm, LMTeacherConfig(epsilon=0.0, temperature=0.0))
    assert {teacher.sample() for _ in range(50)} == {1}


def test_choices_are_drawn_from_the_softmax_of_the_lm_scores():
    lm = WordLM()
    teacher = LMTeacher(WORDS, lm, LMTeacherConfig(epsilon=0.0, ask_every=10_000), seed=3)
    draws = np.bincount([teacher.sample() for _ in range(4000)], minlength=3) / 4000
    [scores] = lm.score([teacher_prompt(WORDS, np.full(3, np.nan))], [" " + w for w in WORDS])
    expected = np.exp(scores.logprob - scores.logprob.max())
    expected /= expected.sum()
    np.testing.assert_allclose(teacher.probs, expected)
    np.testing.assert_allclose(draws, expected, atol=0.03)


def test_the_lm_is_asked_every_ask_every_draws_and_a_repeated_prompt_is_not_rescored():
    lm = FixedLM(" " + WORDS[0])
    teacher = LMTeacher(WORDS, lm, LMTeacherConfig(ask_every=5))
    for _ in range(20):
        teacher.sample()
    stats = teacher.stats()
    assert (stats["lm/asks"], stats["lm/lm_calls"], stats["lm/memo_hits"]) == (4, 1, 3)
    teacher.update(2, 1.0)  # a result changes the prompt: the next ask calls the LM
    for _ in range(5):
        teacher.sample()
    assert teacher.stats()["lm/lm_calls"] == 2 and lm.stats.score_calls == 2


def test_the_prompt_groups_tasks_by_success_and_shows_the_rates_being_learnt():
    success = np.array([1.0, 0.42, np.nan])
    prompt = teacher_prompt(WORDS, success)
    assert success_groups(success) == ["mastered", "learning", "untried"]
    assert f"- {WORDS[1]} (success 40%)" in prompt
    assert prompt.index("Being learnt") < prompt.index("Not tried yet") < prompt.index("Mastered")
    assert "Never solved" not in prompt and prompt.endswith("Next practice task:")


def test_stats_report_the_choice_mass_on_each_group():
    teacher = LMTeacher(WORDS, FixedLM(" " + WORDS[0]), LMTeacherConfig(epsilon=0.0, temperature=0.0, ask_every=1))
    for _ in range(3):
        teacher.update(0, 1.0)
    teacher.sample()
    stats = teacher.stats()
    assert stats["lm/mass_mastered"] == 1.0 and stats["lm/mass_untried"] == 0.0


def test_a_state_dict_round_trip_continues_with_the_same_draws_and_no_new_lm_call():
    config = LMTeacherConfig(ask_every=3, epsilon=0.3)
    a = LMTeacher(WORDS, WordLM(), config, seed=7)
    for k in range(10):
        a.update(a.sample(), float(k % 2))
    lm_b = FixedLM("never")
    b = LMTeacher(WORDS, lm_b, config, seed=0)
    b.load_state_dict(a.state_dict())
    assert [a.sample() for _ in range(2)] == [b.sample() for _ in range(2)]  # within the memoised ask
    assert lm_b.stats.score_calls == 0
    with pytest.raises(ValueError, match="other tasks"):
        LMTeacher(WORDS[::-1], WordLM()).load_state_dict(a.state_dict())


def test_bad_settings_name_the_field():
    with pytest.raises(ValueError, match="ask_every"):
        LMTeacherConfig(ask_every=0)
    with pytest.raises(ValueError, match="epsilon"):
        LMTeacherConfig(epsilon=1.5)
    with pytest.raises(ValueError, match="distinct"):
        LMTeacher(["a", "a"], WordLM())


def test_the_real_model_scores_every_task_after_the_prompt(smollm2_fp32):
    teacher = LMTeacher(WORDS, smollm2_fp32, LMTeacherConfig(epsilon=0.0))
    teacher.update(0, 1.0)
    task = teacher.sample()
    [scores] = smollm2_fp32.score([teacher_prompt(WORDS, teacher.task_stats.summary()["success_rate"])],
                                  [" " + w for w in WORDS])
    expected = np.exp(scores.logprob - scores.logprob.max())
    np.testing.assert_allclose(teacher.probs, expected / expected.sum(), rtol=1e-5)
    assert task in (0, 1, 2) and teacher.stats()["lm/lm_calls"] == 1
