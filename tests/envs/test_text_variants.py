"""GLAM's generalisation tests: rewrites of BabyAI-Text's text that leave the level itself unchanged."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
from minigrid.utils.baby_ai_bot import BabyAIBot

import llmrl.envs  # noqa: F401  (registers the BabyAI-Text ids)
from llmrl.envs import ACTIONS
from llmrl.envs.text_variants import (
    FRENCH_ACTIONS,
    GOAL_INTROS,
    INVENTED_COLOURS,
    INVENTED_OBJECTS,
    NEW_ACTIONS,
    RENAMED_OBJECTS,
    SUITE_NAMES,
    TextVariant,
    WordSubstitution,
    french_description,
    french_mission,
    glam_generalisation_suite,
    make_variant_env,
    rephrase_goal,
)

MIXED = "BabyAI-Text-MixedTrainLocal-v0"  # every task kind: goto, pickup, putnext, open, sequences
SEEDS = range(12)
ENGLISH_WORDS = re.compile(
    r"\b(you|see|carry|step|steps|left|right|forward|and|wall|go|to|pick|up|put|next|open|then|after|the|a|an|"
    r"key|ball|box|door|red|green|blue|purple|yellow|grey|locked|closed)\b",
    re.IGNORECASE,
)
OBJECT_PHRASE = re.compile(r"\b(?:the|a) (?:(?:red|green|blue|purple|yellow|grey) )?(?:key|ball|box|door)\b")


def variants(env_id: str = MIXED) -> dict[str, TextVariant]:
    return {v.name: v for v in glam_generalisation_suite(env_id)}


def texts(env: gym.Env, seed: int, n_steps: int = 8) -> list[tuple[str, list[str]]]:
    """(mission, descriptions) after reset(seed) and after each of a few seeded random steps."""
    _, info = env.reset(seed=seed)
    out = [(info["mission"], info["descriptions"])]
    rng = np.random.default_rng(seed)
    for _ in range(n_steps):
        _, _, terminated, truncated, info = env.step(int(rng.integers(3)))  # turn/forward: the view changes
        out.append((info["mission"], info["descriptions"]))
        if terminated or truncated:
            break
    return out


def paired_texts(variant: TextVariant, seeds=SEEDS):
    """(base text, variant text) for every mission and description sentence seen on ``seeds``."""
    base, wrapped = gym.make(variant.env_id), make_variant_env(variant)
    for seed in seeds:
        for (m0, d0), (m1, d1) in zip(texts(base, seed), texts(wrapped, seed), strict=True):
            assert len(d0) == len(d1)
            yield m0, m1
            yield from zip(d0, d1)


def tokens(text: str) -> list[str]:
    return re.findall(r"\w+|\W", text)


# -- the suite -------------------------------------------------------------------------------------


def test_suite_has_glams_seven_tests_and_only_mixed_test_local_changes_the_level() -> None:
    suite = glam_generalisation_suite()
    assert [v.name for v in suite] == list(SUITE_NAMES) == [
        "original", "mixed-test-local", "renamed-objects", "invented-words", "rephrased-goals", "new-actions", "french",
    ]
    ids = {v.name: v.env_id for v in suite}
    assert ids.pop("mixed-test-local") == "BabyAI-Text-MixedTestLocal-v0"
    assert set(ids.values()) == {"BabyAI-Text-GoToLocal-v0"}
    assert {v.env_id for v in glam_generalisation_suite(MIXED) if v.name != "mixed-test-local"} == {MIXED}


def test_new_actions_and_french_offer_six_distinct_strings_others_keep_glams() -> None:
    suite = variants()
    assert suite["new-actions"].actions == NEW_ACTIONS == (
        "rotate left", "rotate right", "move ahead", "take", "release", "switch",
    )
    assert suite["french"].actions == FRENCH_ACTIONS
    for name in ("new-actions", "french"):
        actions = suite[name].actions
        assert len(actions) == len(set(actions)) == len(ACTIONS) == 6
        assert not set(actions) & set(ACTIONS)
    for name in ("original", "mixed-test-local", "renamed-objects", "invented-words", "rephrased-goals"):
        assert suite[name].actions == ACTIONS


def test_wrapper_exposes_the_variant_actions_for_the_policy() -> None:
    env = make_variant_env(variants()["french"])
    assert env.get_wrapper_attr("actions") == FRENCH_ACTIONS
    assert env.action_space == gym.make(MIXED).action_space


@pytest.mark.parametrize("name", ["original", "new-actions"])
def test_variants_without_rewrites_leave_the_text_untouched(name: str) -> None:
    pairs = list(paired_texts(variants()[name], seeds=range(4)))
    assert pairs and all(a == b for a, b in pairs)


# -- renamed objects and invented words --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "mapping"), [("renamed-objects", RENAMED_OBJECTS), ("invented-words", INVENTED_OBJECTS)]
)
def test_object_nouns_are_replaced_everywhere_and_nothing_else_changes(name: str, mapping: dict[str, str]) -> None:
    seen = set()
    for before, after in paired_texts(variants()[name]):
        assert not re.search(r"\b(key|ball|box)\b", after), after
        assert tokens(after) == [mapping.get(t, t) for t in tokens(before)]
        seen |= set(tokens(after)) & set(mapping.values())
    assert seen == set(mapping.values())  # every new noun showed up in a real episode


def test_invented_words_can_replace_colours_too() -> None:
    variant = next(v for v in glam_generalisation_suite(MIXED, invented_colours=True) if v.name == "invented-words")
    mapping = {**INVENTED_OBJECTS, **INVENTED_COLOURS}
    for before, after in paired_texts(variant, seeds=range(4)):
        assert not re.search(r"\b(key|ball|box|red|green|blue|purple|yellow|grey)\b", after), after
        assert tokens(after) == [mapping.get(t, t) for t in tokens(before)]


def test_substitution_respects_word_boundaries_and_fixes_articles() -> None:
    nonce, renamed = WordSubstitution(INVENTED_OBJECTS), WordSubstitution(RENAMED_OBJECTS)
    assert nonce("pick up a box") == "pick up an afze"  # afze starts with a vowel
    assert nonce("A box, then a key") == "An afze, then a dax"
    assert nonce("put a red box next to the ball") == "put a red afze next to the xolo"  # article is before the colour
    assert nonce("inbox boxes keyring sandbox") == "inbox boxes keyring sandbox"
    assert renamed("You carry a purple key") == "You carry a purple chair"
    assert renamed("go to a key") == "go to a chair"
    assert WordSubstitution({"apple": "key"})("an apple") == "a key"  # "an" becomes "a" as well
    assert WordSubstitution({"red": "ochre"})("You see a red ball, an open red door") == (
        "You see an ochre ball, an open ochre door"
    )


# -- rephrased goals ------------------------------------------------------------------------------------


def test_rephrased_goal_keeps_every_object_and_reads_differently() -> None:
    intros = set()
    for before, after in paired_texts(variants()["rephrased-goals"], seeds=range(30)):
        if before.startswith("You "):  # a description sentence: left as it was
            assert after == before
            continue
        assert after != before
        assert OBJECT_PHRASE.findall(after) == OBJECT_PHRASE.findall(before)  # same objects, same order
        intro = next(i for i in GOAL_INTROS if after.startswith(i.format("")))
        intros.add(intro)
    assert len(intros) >= 3  # drawn per episode, not fixed


def test_glams_intros_prefix_the_mission() -> None:
    outs = {rephrase_goal("go to the red ball", np.random.default_rng(s)) for s in range(200)}
    assert "I would like the agent to go to the red ball" in outs
    assert "You have to go to the red ball" in outs
    assert all(o.endswith(" the red ball") for o in outs)
    put = {rephrase_goal("put the red ball next to a blue box", np.random.default_rng(s)) for s in range(200)}
    assert any("place the red ball next to a blue box" in o for o in put)
    assert all("the red ball" in o and "a blue box" in o for o in put)


def test_rephrasing_is_fixed_within_an_episode_and_deterministic_per_seed() -> None:
    variant = variants()["rephrased-goals"]
    a, b = make_variant_env(variant), make_variant_env(variant)
    missions = []
    for seed in range(6):
        run_a, run_b = texts(a, seed), texts(b, seed)
        assert run_a == run_b
        assert len({m for m, _ in run_a}) == 1  # the same paraphrase on every step
        missions.append(run_a[0][0])
    # an unseeded reset continues the last seeded generator, so it is reproducible too
    assert a.reset()[1]["mission"] == b.reset()[1]["mission"]
    assert [texts(a, s)[0][0] for s in range(6)] == missions


# -- French -------------------------------------------------------------------------------------------------


def test_french_descriptions_agree_in_gender_and_give_both_axes() -> None:
    cases = {
        "You see a wall 3 steps forward": "Tu vois un mur à 3 pas devant",
        "You see a wall 1 step left": "Tu vois un mur à 1 pas à gauche",
        "You see a wall 2 steps right": "Tu vois un mur à 2 pas à droite",
        "You see a red ball 2 steps left and 3 steps forward": (
            "Tu vois une balle rouge à 2 pas à gauche et 3 pas devant"
        ),
        "You see a green key 1 step right and 1 step forward": (
            "Tu vois une clé verte à 1 pas à droite et 1 pas devant"
        ),
        "You see a grey box 4 steps forward": "Tu vois une boîte grise à 4 pas devant",
        "You see a purple ball 1 step right": "Tu vois une balle violette à 1 pas à droite",
        "You see a locked green door 2 steps forward": "Tu vois une porte verte verrouillée à 2 pas devant",
        "You see an open blue door 1 step left": "Tu vois une porte bleue ouverte à 1 pas à gauche",
        "You see a closed yellow door 3 steps right and 2 steps forward": (
            "Tu vois une porte jaune fermée à 3 pas à droite et 2 pas devant"
        ),
        "You see a green goal 1 step forward": "Tu vois un but vert à 1 pas devant",
        "You carry a red key": "Tu portes une clé rouge",
    }
    assert {en: french_description(en) for en in cases} == cases


def test_french_missions_cover_glams_tasks() -> None:
    cases = {
        "go to the red ball": "va à la balle rouge",
        "go to a green key": "va à une clé verte",
        "pick up the green key": "ramasse la clé verte",
        "put the red ball next to the blue box": "mets la balle rouge à côté de la boîte bleue",
        "put a grey key next to a yellow ball": "mets une clé grise à côté d'une balle jaune",
        "open the red door": "ouvre la porte rouge",
        "open the door": "ouvre la porte",
        "pick up a purple box, then go to the grey key": "ramasse une boîte violette, puis va à la clé grise",
        "go to the blue ball after you pick up a yellow box": (
            "va à la balle bleue après avoir ramassé une boîte jaune"
        ),
        "open the door on your left and go to the red object": "ouvre la porte à ta gauche et va à l'objet rouge",
        "go to a green object behind you": "va à un objet vert derrière toi",
    }
    assert {en: french_mission(en) for en in cases} == cases


def test_french_variant_leaves_no_english_in_real_episodes() -> None:
    pairs = list(paired_texts(variants()["french"], seeds=range(20)))
    starts = set()
    for before, after in pairs:
        assert not ENGLISH_WORDS.search(after), (before, after)
        starts.add(after.split()[0])
    assert {"Tu", "va", "ramasse", "mets", "ouvre"} <= starts
    assert any("après avoir" in a for _, a in pairs) or any(", puis" in a for _, a in pairs)


def test_french_refuses_text_it_cannot_translate() -> None:
    with pytest.raises(ValueError, match="BabyAI's instruction grammar"):
        french_mission("get to the green goal square")
    with pytest.raises(ValueError, match="cannot translate description"):
        french_description("You smell lava")


# -- the level itself -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_rewriting_changes_no_reward_termination_or_observation(name: str) -> None:
    variant = variants()[name]
    wrapped, base = make_variant_env(variant), gym.make(variant.env_id)
    successes = 0
    for seed in range(3):
        obs_w, _ = wrapped.reset(seed=seed)
        obs_b, _ = base.reset(seed=seed)
        bot = BabyAIBot(wrapped.unwrapped.level)
        done = False
        while not done:
            action = bot.replan()
            obs_w, r_w, term_w, trunc_w, info_w = wrapped.step(action)
            obs_b, r_b, term_b, trunc_b, info_b = base.step(action)
            assert (r_w, term_w, trunc_w, info_w["success"]) == (r_b, term_b, trunc_b, info_b["success"])
            assert np.array_equal(obs_w["image"], obs_b["image"])
            assert (obs_w["mission"], obs_w["text"]) == (obs_b["mission"], obs_b["text"])  # Dict obs untouched
            done = term_w or trunc_w
        successes += r_w > 0
    assert successes == 3
