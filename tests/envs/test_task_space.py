"""The BabyAI task space: every task builds, resets reproducibly and is solvable (BabyAI's bot),
a curriculum switches tasks between episodes, and the held-out split keeps each family."""

from __future__ import annotations

import numpy as np
import pytest
from minigrid.utils.baby_ai_bot import BabyAIBot

from llmrl.envs.task_space import (
    FAMILIES,
    TaskGrid,
    TaskLevel,
    check_task,
    feasible,
    held_out_split,
    make_task_env,
    task_name,
)

TASKS = TaskGrid().tasks()


def test_the_default_grid_holds_every_family_size_and_door():
    assert 100 <= len(TASKS) <= 130
    assert {t["family"] for t in TASKS} == set(FAMILIES)
    assert {t["door"] for t in TASKS} == {"none", "closed", "locked"}
    assert {t["room_size"] for t in TASKS} == {5, 6, 8}
    assert not any(t["family"] == "open" and t["door"] == "none" for t in TASKS)
    assert len({task_name(t) for t in TASKS}) == len(TASKS)


def test_every_task_builds_and_the_babyai_bot_solves_it():
    env = TaskLevel(TASKS[0])
    for i, task in enumerate(TASKS):
        obs, _ = env.reset(seed=i, options={"task": task})
        assert obs["image"].shape == (7, 7, 3)
        assert env.width == (task["room_size"] - 1) * (1 if task["door"] == "none" else 2) + 1
        assert env.task == task["family"] and env.mission.split()[0] in ("go", "pick", "open", "put")
        bot, ret = BabyAIBot(env), 0.0
        for _ in range(env.max_steps):
            obs, reward, terminated, truncated, _ = env.step(bot.replan())
            ret += reward
            if terminated or truncated:
                break
        assert ret > 0, f"the bot failed {task_name(task)}: {env.mission}"


def test_a_locked_door_task_puts_the_key_with_the_agent_and_the_target_behind_the_door():
    env = make_task_env({"family": "pickup", "room_size": 6, "num_dists": 0, "door": "locked"})
    env.reset(seed=0)
    door = next(d for d in env.get_room(0, 0).doors if d is not None)
    assert door.is_locked
    assert [(o.type, o.color) for o in env.get_room(0, 0).objs] == [("key", door.color)]
    assert env.instrs.desc.obj_set[0] in env.get_room(1, 0).objs
    assert env.max_steps == 2 * 6**2 * 2  # BabyAI's 1 navigation x size^2 x rooms, + 1 for the key


def test_set_task_takes_effect_at_the_next_reset_only():
    env = make_task_env({"family": "goto", "room_size": 5, "num_dists": 0, "door": "none"})
    env.reset(seed=0)
    env.set_task({"family": "open", "room_size": 8, "num_dists": 2, "door": "closed"})
    assert env.width == 5 and env.task == "goto"  # the episode under way keeps its level
    env.step(2)
    env.reset(seed=0)
    assert (env.width, env.height, env.task) == (15, 8, "open") and env.mission.startswith("open the")


def test_resets_are_seeded_and_the_text_view_wraps_the_same_level():
    task = {"family": "putnext", "room_size": 8, "num_dists": 4, "door": "none"}
    a, b = make_task_env(task), make_task_env(task)
    obs_a, _ = a.reset(seed=7)
    obs_b, _ = b.reset(seed=7)
    assert obs_a["mission"] == obs_b["mission"] and np.array_equal(obs_a["image"], obs_b["image"])
    text = make_task_env(task, text=True)
    obs, info = text.reset(seed=7)
    assert obs["mission"] == obs_a["mission"] and info["task"] == "putnext" and info["descriptions"]


def test_held_out_split_is_seeded_and_keeps_each_family_in_training():
    train, test = held_out_split(TASKS, fraction=0.25, seed=0)
    assert len(train) + len(test) == len(TASKS)
    assert not {task_name(t) for t in train} & {task_name(t) for t in test}
    assert {t["family"] for t in train} == {t["family"] for t in test} == set(FAMILIES)
    assert held_out_split(TASKS, 0.25, seed=0) == (train, test) != held_out_split(TASKS, 0.25, seed=1)


@pytest.mark.parametrize("task,message", [
    ({"family": "fetch", "room_size": 6, "num_dists": 0, "door": "none"}, "family"),
    ({"family": "open", "room_size": 6, "num_dists": 0, "door": "none"}, "needs a door"),
    ({"family": "goto", "room_size": 5, "num_dists": 8, "door": "none"}, "too many objects"),
    ({"family": "goto", "room_size": 3, "num_dists": 0, "door": "none"}, "room_size"),
    ({"family": "goto", "room_size": 6, "door": "none"}, "keys"),
    ({"family": "goto", "room_size": 6, "num_dists": 0, "door": "ajar"}, "door"),
])
def test_a_bad_task_raises_a_clear_value_error(task, message):
    with pytest.raises(ValueError, match=message):
        check_task(task)


def test_feasibility_counts_what_each_room_holds():
    # One 5-room holds 9 interior cells, half of it 4: agent + target + 2 distractors fits, 3 do not.
    assert feasible({"family": "goto", "room_size": 5, "num_dists": 2, "door": "none"})
    assert not feasible({"family": "goto", "room_size": 5, "num_dists": 3, "door": "none"})
    # Behind a door the distractors split between the rooms, so more fit.
    assert feasible({"family": "goto", "room_size": 5, "num_dists": 4, "door": "locked"})


def test_bad_grid_or_split_settings_raise_value_errors():
    with pytest.raises(ValueError, match="families"):
        TaskGrid(families=("goto", "fetch"))
    with pytest.raises(ValueError, match="fraction"):
        held_out_split(TASKS, fraction=1.0)
    with pytest.raises(TypeError, match="text=True"):
        make_task_env(TASKS[0], articles="glam")
