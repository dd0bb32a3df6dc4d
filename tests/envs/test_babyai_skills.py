"""BabyAI skills: their controllers do what the sentence says, and fail where the state forbids it."""

from __future__ import annotations

import gymnasium as gym
import minigrid  # noqa: F401
import numpy as np

from llmrl.envs import babyai_skills as S


def _unlock(seed=0):
    env = gym.make("BabyAI-UnlockLocal-v0")
    env.reset(seed=seed)
    skills = {s.text: s for s in S.skills_of(env.unwrapped)}
    return env, skills


def test_skills_name_every_object_and_end_with_done():
    _, skills = _unlock()
    texts = list(skills)
    assert texts[-1] == S.DONE
    assert any(t.startswith("pick up the") and t.endswith("key") for t in texts)
    assert any(t.startswith("open the") and t.endswith("door") for t in texts)


def test_a_locked_door_opens_only_after_its_key_is_picked_up():
    env, skills = _unlock()
    door = next(s for t, s in skills.items() if t.startswith("open"))
    key = next(s for t, s in skills.items() if t.startswith("pick up") and t.endswith("key"))
    assert not S.run_skill(env, door)["ok"]  # locked, no key
    got = S.run_skill(env, key)
    assert got["ok"] and got["steps"] > 0
    assert not S.run_skill(env, key)["ok"]  # hands are full
    opened = S.run_skill(env, door)
    assert opened["ok"] and opened["ended"] and opened["reward"] > 0  # the mission: open the door


def test_put_next_to_drops_the_held_object_beside_the_other():
    env = gym.make("BabyAI-PutNextLocal-v0")
    env.reset(seed=1)
    level = env.unwrapped
    mission = level.mission  # "put the X next to the Y"
    skills = {s.text: s for s in S.skills_of(level)}
    held = mission.split(" next to ")[0].removeprefix("put ")
    assert S.run_skill(env, skills[f"pick up {held}"])["ok"]
    out = S.run_skill(env, skills[mission])
    assert out["ok"] and out["ended"] and out["reward"] > 0


def test_features_are_a_fixed_width_vector_that_sees_what_is_carried():
    env, skills = _unlock()
    key = next(s for t, s in skills.items() if t.startswith("pick up"))
    before = S.features(env, key)
    S.run_skill(env, key)
    after = S.features(env, key)
    assert before.shape == after.shape and before.dtype == np.float32
    assert after[-1] == 1.0 and before[-1] == 0.0  # carrying the skill's own target
