"""The LM world model's scoring, and lookahead planning with a simulator."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import llmrl.envs  # noqa: F401
from llmrl.roles.world_model import (
    LMWorldModel,
    LookaheadPlanner,
    distance_to,
    parse_view,
    transition_scores,
    wm_prompt,
)

BEFORE = ["You see a wall 2 steps forward", "You see a red ball 1 step left and 1 step forward"]
AFTER = ["You see a wall 1 step right", "You see a red ball 1 step right and 1 step forward",
         "You see a blue key 2 steps forward"]


def test_scores_split_what_was_seen_from_what_the_move_revealed():
    s = transition_scores(BEFORE, ["You see a red ball 1 step right and 1 step forward", "You see a wall 1 step left"],
                          AFTER)
    assert not s["exact"]
    assert (s["known"], s["known_hits"]) == (1, 1)  # the ball was seen before; the right wall was not
    assert (s["new"], s["new_hits"]) == (2, 0)
    assert s["predicted"] == 2 and s["correct"] == 1
    assert transition_scores(BEFORE, AFTER, AFTER)["exact"]


def test_views_parse_back_from_prompts_and_distances_read_offsets():
    assert parse_view(" You see a wall 1 step right. You see a blue key 2 steps forward.") == [AFTER[0], AFTER[2]]
    assert parse_view("You see nothing.") == []
    assert distance_to(AFTER, "red ball") == 2 and distance_to(AFTER, "green box") == np.inf
    assert wm_prompt(BEFORE, "turn left").endswith("Action: turn left\nNext view:")


def test_lookahead_with_the_true_simulator_beats_random_actions():
    env = gym.make("BabyAI-Text-GoToLocalS5N2-v0")
    wins = {}
    for sim in ("true", "none"):
        planner = LookaheadPlanner(sim, rng=np.random.default_rng(0))
        won = 0
        for seed in range(8):
            _, info = env.reset(seed=seed)
            target = info["mission"].removeprefix("go to the ")
            for _ in range(15):
                _, _, term, trunc, info = env.step(planner.act(env, info["descriptions"], target))
                if term or trunc:
                    break
            won += bool(info["success"])
        wins[sim] = won
    assert wins["true"] >= 6 and wins["true"] > wins["none"]


def test_the_lm_world_model_writes_a_view_and_memoises(gemma_fp32):
    wm = LMWorldModel(gemma_fp32, examples=[(BEFORE, "turn right", AFTER)], max_new_tokens=24)
    out = wm.predict([BEFORE, BEFORE], ["go forward", "go forward"])
    assert wm.calls == 1 and out[0] == out[1] and all(isinstance(s, str) for s in out[0])
