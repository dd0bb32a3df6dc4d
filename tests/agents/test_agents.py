"""Agents, the GLAM prompt, and the evaluation harness on real BabyAI-Text levels."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import llmrl.envs  # noqa: F401
from llmrl.agents import BotAgent, RandomAgent
from llmrl.evaluation import evaluate, markdown_table, write_results
from llmrl.envs.babyai_text import ACTIONS as BABYAI_ACTIONS
from llmrl.roles import LLMPolicyAgent, glam_prompt
from llmrl.stats import mean_interval, wilson_interval

from fakes import FixedLM

GOTO = "BabyAI-Text-GoToLocal-v0"


def test_glam_prompt_layout():
    observations = [["You see a wall 2 steps forward"], ["You see a red ball 1 step left", "You carry a key"]]
    p = glam_prompt(BABYAI_ACTIONS, "go to the red ball", observations, ["turn left"])
    # GLAM's training prompt: " \n " separators, every description followed by ", ".
    assert p == (
        "Possible action of the agent: turn left, turn right, go forward, pick up, drop, toggle \n "
        "Goal of the agent: go to the red ball \n "
        "Observation 0: You see a wall 2 steps forward, \n "
        "Action 0: turn left \n "
        "Observation 1: You see a red ball 1 step left, You carry a key, \n "
        "Action 1: "
    )
    # Its hand-written test prompts join the descriptions instead.
    assert glam_prompt(BABYAI_ACTIONS, "go to the red ball", observations, ["turn left"], style="joined") == (
        "Possible action of the agent: turn left, turn right, go forward, pick up, drop, toggle \n "
        "Goal of the agent: go to the red ball \n "
        "Observation 0: You see a wall 2 steps forward \n "
        "Action 0: turn left \n "
        "Observation 1: You see a red ball 1 step left, You carry a key \n "
        "Action 1: "
    )
    assert glam_prompt(BABYAI_ACTIONS, "m", [[]], []).endswith("Observation 0: \n Action 0: ")
    with pytest.raises(ValueError, match="one past action"):
        glam_prompt(BABYAI_ACTIONS, "m", [["a"], ["b"]], [])
    with pytest.raises(ValueError, match="style"):
        glam_prompt(BABYAI_ACTIONS, "m", [["a"]], [], style="test")


def test_bot_solves_goto_and_results_do_not_depend_on_n_envs():
    one = evaluate(BotAgent(), lambda: gym.make(GOTO), 12, n_envs=1, seed=5)
    four = evaluate(BotAgent(), lambda: gym.make(GOTO), 12, n_envs=4, seed=5)
    assert [e.seed for e in one.episodes] == list(range(5, 17))
    assert [(e.success, e.length, e.episode_return) for e in one.episodes] == [
        (e.success, e.length, e.episode_return) for e in four.episodes
    ]
    assert one.summary()["success_rate"] == 1.0


def test_random_agent_is_seeded_and_much_worse_than_the_bot():
    a = evaluate(RandomAgent(seed=1), lambda: gym.make(GOTO), 30, n_envs=6, seed=0)
    b = evaluate(RandomAgent(seed=1), lambda: gym.make(GOTO), 30, n_envs=1, seed=0)
    # Each episode draws from its own generator: the same episodes whatever n_envs.
    assert [(e.length, e.success) for e in a.episodes] == [(e.length, e.success) for e in b.episodes]
    c = evaluate(RandomAgent(seed=2), lambda: gym.make(GOTO), 30, n_envs=6, seed=0)
    assert [e.length for e in c.episodes] != [e.length for e in a.episodes]
    assert a.summary()["success_rate"] < 0.7
    assert all(0 < e.episode_return <= 1 for e in a.episodes if e.success)


def test_llm_agent_keeps_three_observations_and_two_actions():
    lm = FixedLM("go forward")
    agent = LLMPolicyAgent(lm, BABYAI_ACTIONS, greedy=True)  # type: ignore[arg-type]
    res = evaluate(agent, lambda: gym.make(GOTO), 2, n_envs=2, seed=0)
    assert all(e.length >= 1 for e in res.episodes)
    last = lm.prompts[-1]
    assert "Observation 2:" in last and "Observation 3:" not in last
    assert last.count("Action 0: go forward") == 1 and last.endswith("Action 2: ")
    assert res.lm["lm_calls"] == lm.stats.score_calls


def test_sampled_llm_agent_follows_the_softmax():
    lm = FixedLM("pick up")
    agent = LLMPolicyAgent(lm, BABYAI_ACTIONS, greedy=False, seed=0)  # type: ignore[arg-type]
    env = gym.make(GOTO)
    obs, info = env.reset(seed=0)
    picks = []
    for i in range(200):
        agent.begin_episode(i, env, obs, info, seed=i)
        picks.append(int(agent.act([obs], [info], [i])[0]))
    # p(pick up) = 1 / (1 + 5 e^-5) ~ 0.967
    assert 0.9 < np.mean(np.array(picks) == BABYAI_ACTIONS.index("pick up")) < 1.0


def test_loop_breaking_samples_when_a_prompt_comes_back_a_third_time():
    env = gym.make(GOTO)
    turns = []
    for break_loops in (False, True):
        # Always "turn left", with a 1-observation prompt: the four views repeat forever.
        agent = LLMPolicyAgent(FixedLM("turn left"), BABYAI_ACTIONS, greedy=True, n_observations=1,  # type: ignore[arg-type]
                               break_loops=break_loops, seed=0)
        obs, info = env.reset(seed=0)
        agent.begin_episode(0, env, obs, info, seed=0)
        acts = []
        for _ in range(60):
            a = int(agent.act([obs], [info], [0])[0])
            acts.append(a)
            obs, _, term, trunc, info = env.step(a)
            if term or trunc:
                break
        turns.append(acts)
    assert set(turns[0]) == {BABYAI_ACTIONS.index("turn left")}  # greedy loops
    assert turns[1][:8] == turns[0][:8]  # each of the four views twice, greedily
    assert set(turns[1]) != {BABYAI_ACTIONS.index("turn left")}  # then π is sampled on repeats


def test_results_are_written_as_json_and_markdown(tmp_path):
    res = evaluate(BotAgent(), lambda: gym.make(GOTO), 3, n_envs=3, seed=0, env_id=GOTO)
    out = write_results([res], tmp_path, {"command": "test"})
    data = json.loads((out / "results.json").read_text())
    assert data["results"][0]["summary"]["episodes"] == 3
    assert len(data["results"][0]["episodes"]) == 3
    assert "| BabyAI-Text-GoToLocal-v0 | bot | 3 |" in (out / "results.md").read_text()
    assert "success rate" in markdown_table([res])


def test_intervals():
    lo, hi = wilson_interval(0, 100)
    assert lo == 0 and 0.03 < hi < 0.04
    lo, hi = wilson_interval(50, 100)
    assert lo < 0.5 < hi and abs((lo + hi) / 2 - 0.5) < 1e-9
    m, lo, hi = mean_interval([1.0, 2.0, 3.0])
    assert m == 2.0 and lo < 2.0 < hi


def test_results_round_trip_through_json(tmp_path):
    from llmrl.evaluation import load_results

    res = evaluate(RandomAgent(seed=3), lambda: gym.make(GOTO), 4, n_envs=2, seed=0, env_id=GOTO)
    write_results([res], tmp_path)
    back = load_results(tmp_path)
    assert back[0].summary() == res.summary()
    assert markdown_table(back) == markdown_table([res])


def test_sampled_llm_episodes_do_not_depend_on_n_envs():
    def run(n_envs):
        agent = LLMPolicyAgent(FixedLM("go forward"), BABYAI_ACTIONS, greedy=False, seed=4)  # type: ignore[arg-type]
        return [(e.length, e.success) for e in evaluate(agent, lambda: gym.make(GOTO), 6, n_envs, seed=0).episodes]

    assert run(1) == run(3)


def test_action_counts_add_up_to_episode_lengths():
    res = evaluate(RandomAgent(seed=0), lambda: gym.make(GOTO), 5, n_envs=2, seed=0)
    assert all(sum(e.action_counts) == e.length for e in res.episodes)
    shares = res.summary()["action_shares"]
    assert len(shares) == 6 and abs(sum(shares) - 1) < 1e-9
