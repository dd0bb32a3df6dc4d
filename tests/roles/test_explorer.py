"""ELLM's goal explorer: the prompt, the parser, the similarity reward rule and the wrappers."""

import numpy as np
import pytest
from fakes import ScriptedLM

from llmrl.envs import crafter_text as ct
from llmrl.roles.explorer import (
    ELLMVectorWrapper,
    ELLMWrapper,
    ExplorerConfig,
    GoalExplorer,
    goal_prompt,
    normalise_goal,
    parse_goals,
)

CAPTIONS = [ct.ACHIEVEMENT_CAPTIONS[a] for a in ct.ACHIEVEMENTS]


# ------------------------------------------------------------------------------ prompt and parser
def test_prompt_is_ellms_bullet_prompt_ending_in_the_question():
    p = goal_prompt("You see tree. You are targeting tree.")
    assert p.startswith("Valid actions: sleep, eat, attack, chop, drink, place, make, mine\nYou play a game")
    assert "You have in your inventory plant. What do you do?\n- Drink water\n- Chop grass\n- Attack cow\n- Place plant\n" in p
    assert p.count("What do you do?") == 3  # two worked examples, then this state
    assert p.endswith("You see tree. You are targeting tree. What do you do?\n")


def test_parser_reads_bullets_and_normalises_them():
    assert parse_goals("- Chop the tree.\n- Drink water\n* attack cow\n2) Place Table!") == [
        "chop tree", "drink water", "attack cow", "place table"]
    assert normalise_goal("  Eat a COW ") == "eat cow"


def test_parser_stops_at_prose_blank_lines_and_drops_duplicates():
    assert parse_goals("- chop tree\n- chop tree\nThe player should then rest.\n- eat cow") == ["chop tree"]
    assert parse_goals("\n- drink water\n\n- eat cow") == ["drink water"]
    long = "- walk all the way over to the big tree and chop it\n- eat cow"
    assert parse_goals(long) == ["eat cow"]


@pytest.mark.parametrize("text", ["", "   \n\n", "I think the player should chop a tree.", "- !!!\n- ...", "-"])
def test_malformed_replies_give_no_goals(text):
    assert parse_goals(text) is None


# ------------------------------------------------------------------------------ reward rule
def info(transition="", success=True, caption="You see tree.", achievements=None, feasible=None, oracle=(),
         action=None):
    n = len(ct.ACHIEVEMENTS)
    return {
        "caption": caption,
        "transition_caption": transition,
        "action_success": success,
        "action_name": transition if action is None else action,
        "oracle_goals": tuple(oracle),
        "achievements": np.zeros(n, bool) if achievements is None else achievements,
        "feasible": np.zeros(n, bool) if feasible is None else feasible,
    }


def feasible(*names):
    mask = np.zeros(len(ct.ACHIEVEMENTS), bool)
    for name in names:
        mask[ct.ACHIEVEMENTS.index(name)] = True
    return mask


@pytest.fixture(scope="module")
def oracle():
    return GoalExplorer("feasible-achievements", 2, goal_captions=CAPTIONS)


def test_matching_transition_pays_its_similarity_once_per_episode(oracle):
    for i in range(2):
        oracle.end_episode(i)
    oracle.suggest([info(feasible=feasible("collect_wood")), info(feasible=feasible("collect_drink"))])
    assert oracle.goals == [("chop tree",), ("drink water",)]
    r = oracle.reward([info("chop tree"), info("chop tree")])
    assert r[0] == pytest.approx(1.0, abs=1e-5) and r[1] == 0.0  # env 1's goal was to drink
    r = oracle.reward([info("chop tree"), info("drink water")])
    assert r[0] == 0.0 and r[1] == pytest.approx(1.0, abs=1e-5)  # a goal pays once per episode
    oracle.end_episode(0)
    assert oracle.reward([info("chop tree"), info("drink water")])[0] == pytest.approx(1.0, abs=1e-5)


def test_failed_or_silent_actions_pay_nothing(oracle):
    oracle.end_episode(0)
    oracle.suggest([info(feasible=feasible("collect_wood")), info()])
    assert oracle.reward([info("chop tree", success=False), info("")]).tolist() == [0.0, 0.0]


def test_threshold_decides_whether_a_near_match_pays():
    near = GoalExplorer("feasible-achievements", 1, ExplorerConfig(threshold=0.5), goal_captions=CAPTIONS)
    strict = GoalExplorer("feasible-achievements", 1, ExplorerConfig(threshold=0.99), goal_captions=CAPTIONS)
    sim = float(near.embed(["chop trees"])[0] @ near.embed(["chop tree"])[0])
    assert 0.5 < sim < 0.99
    for explorer in (near, strict):
        explorer.suggest([info(feasible=feasible("collect_wood"))])
    assert near.reward([info("chop trees")])[0] == pytest.approx(sim, abs=1e-5)
    assert strict.reward([info("chop trees")])[0] == 0.0


def test_achievement_novelty_proposes_every_achievement_not_yet_unlocked():
    explorer = GoalExplorer("achievement-novelty", 1, goal_captions=CAPTIONS)
    (goals,) = explorer.suggest([info(achievements=feasible("collect_wood", "wake_up"))])
    assert "chop tree" not in goals and "sleep" not in goals
    assert "place crafting table" in goals and len(goals) == len(set(CAPTIONS)) - 2


def test_ellm_novelty_proposes_every_action_and_pays_the_attempt():
    explorer = GoalExplorer("novelty", 1, all_goals=ct.VERB_NOUN_ACTIONS)
    (goals,) = explorer.suggest([info()])
    assert goals == ct.VERB_NOUN_ACTIONS
    # ELLM's novelty baseline matches the action's name whether or not it did anything ...
    assert explorer.reward([info("", success=False, action="mine diamond")])[0] == pytest.approx(1.0, abs=1e-5)
    # ... once per episode: the paid goal is no longer suggested.
    (goals,) = explorer.suggest([info()])
    assert "mine diamond" not in goals and len(goals) == len(ct.VERB_NOUN_ACTIONS) - 1
    assert explorer.reward([info("", success=False, action="mine diamond")])[0] == 0.0
    explorer.end_episode(0)
    assert "mine diamond" in explorer.suggest([info()])[0]


def test_oracle_source_reads_the_environments_oracle_goals():
    explorer = GoalExplorer("oracle", 2)
    goals = explorer.suggest([info(oracle=("chop tree", "sleep")), info()])
    assert goals == [("chop tree", "sleep"), ()]
    r = explorer.reward([info("chop tree"), info("chop tree")])
    assert r[0] == pytest.approx(1.0, abs=1e-5) and r[1] == 0.0


def test_an_equivalent_goal_is_paid_with_the_goal():
    explorer = GoalExplorer("oracle", 1, equivalents=ct.EQUIVALENT_GOALS)
    explorer.suggest([info(oracle=("attack cow", "eat cow"))])
    assert explorer.reward([info("eat cow")])[0] == pytest.approx(1.0, abs=1e-5)
    (goals,) = explorer.suggest([info(oracle=("attack cow", "eat cow"))])
    assert goals == ()  # ELLM: eating the cow achieves "attack cow" too


def test_suggestions_are_judged_against_the_oracle():
    lm = ScriptedLM({"A. What do you do?\n": "- chop tree\n- make iron sword\n- mine zombie\n- fly away"})
    explorer = GoalExplorer("llm", 1, lm=lm, all_goals=ct.VERB_NOUN_ACTIONS, valid_goals=ct.VALID_GOALS)
    explorer.suggest([info(caption="A.", oracle=("chop tree",))])
    assert explorer.stats.quality == {"good": 1, "poorly_timed": 1, "bad": 1, "invalid": 1}


def test_none_source_suggests_nothing_and_pays_nothing():
    explorer = GoalExplorer("none", 1)
    assert explorer.suggest([info()]) == [()]
    assert explorer.reward([info("chop tree")]).tolist() == [0.0]


def test_goal_vectors_are_mean_embeddings_and_zero_without_goals(oracle):
    oracle.suggest([info(feasible=feasible("collect_wood", "collect_drink")), info()])
    vectors = oracle.goal_vectors()
    expected = oracle.embed(["chop tree", "drink water"]).mean(0)
    np.testing.assert_allclose(vectors[0], expected, rtol=1e-5)
    assert not vectors[1].any()


def test_bad_settings_name_the_fix():
    with pytest.raises(ValueError, match="source"):
        GoalExplorer("curiosity", 1)
    with pytest.raises(ValueError, match="language model"):
        GoalExplorer("llm", 1)
    with pytest.raises(ValueError, match="goal_captions"):
        GoalExplorer("feasible-achievements", 1)
    with pytest.raises(ValueError, match="all_goals"):
        GoalExplorer("novelty", 1)


# ------------------------------------------------------------------------------ the LM path
def test_malformed_lm_output_is_counted_never_raised():
    lm = ScriptedLM({"A. What do you do?\n": "- chop tree\n- eat cow",
                     "B. What do you do?\n": "Sure! Here is what I would do:"})
    explorer = GoalExplorer("llm", 2, lm=lm)
    assert explorer.suggest([info(caption="A."), info(caption="B.")]) == [("chop tree", "eat cow"), ()]
    assert explorer.stats.malformed == 1
    explorer.suggest([info(caption="A."), info(caption="A.")])
    assert len(lm.prompts) == 2  # each caption is asked once


@pytest.mark.slow
def test_real_lm_suggests_goals_through_the_cache(tmp_path):
    from llmrl.lm import load_model
    from llmrl.lm.cache import CachedLM

    lm = CachedLM(load_model("gemma-3-270m"), tmp_path / "cache.sqlite")
    captions = ["You see grass and tree. You are targeting tree. You feel hungry.",
                "You see sand and water. You are targeting water. You feel thirsty."]
    explorer = GoalExplorer("llm", 2, ExplorerConfig(max_new_tokens=24), lm=lm)
    explorer.prefetch(captions)
    goals = explorer.suggest([info(caption=c) for c in captions])
    assert all(goals) and all(1 <= len(g.split()) <= 6 for gs in goals for g in gs)
    assert explorer.stats.lm_new_prompts == 2 and explorer.stats.lm_seconds > 0
    again = GoalExplorer("llm", 2, ExplorerConfig(max_new_tokens=24), lm=lm)
    assert again.suggest([info(caption=c) for c in captions]) == goals
    assert again.stats.lm_new_prompts == 0  # answered by the persistent cache
    assert again.stats.as_dict()["lm_cache_hit_rate"] == 1.0


# ------------------------------------------------------------------------------ wrappers
def test_wrapper_adds_the_oracle_reward_to_a_crafter_step(scene):
    env = ELLMWrapper(ct.CrafterTextEnv(reward="none"),
                      GoalExplorer("feasible-achievements", 1, goal_captions=CAPTIONS))
    env.reset(seed=5)
    base = env.unwrapped
    scene.clear(base)
    base.world[scene.facing(base)] = "tree"
    env.explorer.suggest([{**info(), "feasible": base.feasible()}])
    _, reward, _, _, step_info = env.step(ct.STANDARD_ACTIONS.index("do"))
    assert step_info["goals"] == ("chop tree",)
    assert reward == pytest.approx(1.0, abs=1e-5) and step_info["intrinsic"] == reward


@pytest.mark.slow
def test_vector_wrapper_rewards_every_env_and_resets_goals_per_episode():
    envs = ct.make_vec(2, asynchronous=False, length=6, reward="none")
    explorer = GoalExplorer("achievement-novelty", 2, goal_captions=CAPTIONS)
    wrapped = ELLMVectorWrapper(envs, explorer)
    _, infos = wrapped.reset(seed=[0, 1])
    assert len(infos["goals"][0]) == len(set(CAPTIONS))
    total = np.zeros(2)
    for _ in range(12):  # two episodes each
        _, reward, _, _, infos = wrapped.step(np.array([ct.STANDARD_ACTIONS.index("sleep")] * 2))
        np.testing.assert_allclose(reward, infos["intrinsic"])
        total += reward
    # "sleep" only succeeds once energy is below its maximum, which takes far more than 6 steps
    assert total.tolist() == [0.0, 0.0] and explorer.stats.steps == 24
    wrapped.close()
