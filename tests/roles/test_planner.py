"""SayCan's planner: the prompt, the affordance model, and how the modes combine Say and Can."""

from __future__ import annotations

import numpy as np
import pytest

from llmrl.roles.planner import AffordanceModel, SayCanPlanner, saycan_prompt


def test_the_prompt_numbers_the_steps_done_and_asks_for_the_next():
    p = saycan_prompt("open the door", ["pick up the red key"])
    assert p.endswith("Task: open the door\n1. pick up the red key\n2.")
    assert "Task: go to the green ball\n1. go to the green ball\n2. done" in p


def test_the_affordance_model_learns_a_rule_from_outcomes():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=(400, 4)).astype(np.float32)
    y = (x[:, 0] * (1 - x[:, 1])).astype(np.float32)  # works when holding the key and the hands are free
    model = AffordanceModel(4, hidden=16)
    model.fit(x[:300], y[:300], epochs=300)
    assert np.mean((model.probability(x[300:]) > 0.5) == y[300:]) > 0.95


def test_affordance_mode_needs_no_lm_and_never_says_done():
    planner = SayCanPlanner(None, AffordanceModel(2), mode="affordance")
    _, info = planner.choose("open the door", [], ["go to the key", "done"], np.array([0.3, 1.0]))
    assert info["skill"] == "go to the key"


def test_modes_check_what_they_need():
    with pytest.raises(ValueError, match="needs an LM"):
        SayCanPlanner(None, AffordanceModel(2), mode="saycan")
    with pytest.raises(ValueError, match="mode must be"):
        SayCanPlanner(None, None, mode="oracle")


def test_saycan_takes_the_affordable_skill_the_lm_ranks_lower(gemma_fp32):
    skills = ["open the red door", "pick up the red key", "done"]
    lm_only = SayCanPlanner(gemma_fp32, None, mode="lm")
    say = lm_only.say("open the red door", [], skills)
    assert say.shape == (3,) and abs(say.sum() - 1) < 1e-9 and lm_only.lm_calls == 1
    lm_only.say("open the red door", [], skills)
    assert lm_only.lm_calls == 1  # memoised
    can = np.array([0.0, 0.9, 1.0])  # the door is locked: it cannot open now
    saycan = SayCanPlanner(gemma_fp32, AffordanceModel(2), mode="saycan", memo=lm_only.memo)
    _, info = saycan.choose("open the red door", [], skills, can)
    assert info["skill"] != "open the red door"
    assert np.isclose(info["say"] * info["can"], max(say * can))
