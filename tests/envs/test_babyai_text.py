"""BabyAI-Text: GLAM's description sentences, the gymnasium env, the registered levels."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from minigrid.core.grid import Grid
from minigrid.core.mission import MissionSpace
from minigrid.core.world_object import Ball, Box, Door, Key, Wall, WorldObj
from minigrid.minigrid_env import MiniGridEnv
from minigrid.utils.baby_ai_bot import BabyAIBot

import llmrl.envs
from llmrl.envs import ACTIONS, HELD_OUT_PAIRS, MIXED_TASKS, TEXT_ENV_IDS, BabyAITextEnv, describe_env

UP, RIGHT = 3, 0  # MiniGrid headings


class _Scene(MiniGridEnv):
    """An empty walled room; each test places the agent and objects by hand."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__(mission_space=MissionSpace(mission_func=lambda: "look"), width=width, height=height)

    def _gen_grid(self, width: int, height: int) -> None:
        self.grid = Grid(width, height)
        self.grid.wall_rect(0, 0, width, height)
        self.agent_pos, self.agent_dir = (1, 1), RIGHT


def see(
    objects: dict[tuple[int, int], WorldObj],
    agent: tuple[int, int],
    heading: int = UP,
    size: tuple[int, int] = (7, 7),
    carrying: WorldObj | None = None,
    articles: str = "english",
) -> list[str]:
    """Sentences for a walled room of ``size`` with ``objects`` at world (x, y); up is -y."""
    env = _Scene(*size)
    env.reset(seed=0)
    for (x, y), obj in objects.items():
        env.grid.set(x, y, obj)
    env.agent_pos, env.agent_dir, env.carrying = agent, heading, carrying
    return describe_env(env, articles)


# -- description sentences -------------------------------------------------------------------


def test_walls_ahead_left_and_right_are_described_with_their_distance() -> None:
    assert see({}, agent=(3, 5)) == [
        "You see a wall 5 steps forward",
        "You see a wall 3 steps left",
        "You see a wall 3 steps right",
    ]


def test_one_step_is_singular() -> None:
    assert see({(2, 4): Box("green")}, agent=(1, 5)) == [
        "You see a wall 5 steps forward",
        "You see a wall 1 step left",  # the right wall lies outside the 7x7 view
        "You see a green box 1 step right and 1 step forward",
    ]


def test_a_wall_is_not_described_when_something_stands_between() -> None:
    text = see({(3, 3): Ball("red"), (1, 5): Key("blue")}, agent=(3, 5))
    assert text == ["You see a wall 3 steps right", "You see a blue key 2 steps left", "You see a red ball 2 steps forward"]


def test_aligned_objects_use_one_axis_and_others_both() -> None:
    text = see({(3, 2): Key("purple"), (4, 5): Ball("red"), (1, 2): Box("grey")}, agent=(3, 5))
    assert "You see a purple key 3 steps forward" in text
    assert "You see a red ball 1 step right" in text
    assert "You see a grey box 2 steps left and 3 steps forward" in text


def test_objects_come_left_to_right_then_far_to_near() -> None:
    objects = {(4, 4): Ball("red"), (2, 4): Key("blue"), (2, 1): Box("green"), (4, 1): Ball("purple")}
    text = [s for s in see(objects, agent=(3, 5)) if "wall" not in s]
    assert [s.split(" ")[3:5] for s in text] == [["green", "box"], ["blue", "key"], ["purple", "ball"], ["red", "ball"]]


@pytest.mark.parametrize(
    ("door", "sentence"),
    [
        (Door("purple", is_locked=True), "You see a locked purple door 5 steps forward"),
        (Door("yellow"), "You see a closed yellow door 5 steps forward"),
        (Door("red", is_open=True), "You see an open red door 5 steps forward"),
    ],
)
def test_doors_say_their_state_with_the_right_article(door: Door, sentence: str) -> None:
    text = see({(3, 0): door}, agent=(3, 5))
    assert sentence in text
    assert not any("forward" in s and "wall" in s for s in text)  # the door, not a wall, is ahead


def test_glam_articles_write_a_open_door_as_glams_code_did() -> None:
    assert "You see a open red door 5 steps forward" in see({(3, 0): Door("red", is_open=True)}, agent=(3, 5),
                                                            articles="glam")
    with pytest.raises(ValueError, match="articles"):
        see({}, agent=(3, 5), articles="french")
    env = BabyAITextEnv("BabyAI-GoToLocal-v0", articles="glam")
    assert env.articles == "glam"


def test_carried_object_comes_first_and_its_cell_is_not_described_again() -> None:
    text = see({(3, 3): Ball("red")}, agent=(3, 5), carrying=Key("yellow"))
    assert text[0] == "You carry a yellow key"
    assert sum("yellow key" in s for s in text) == 1


def test_objects_behind_a_wall_or_closed_door_are_not_described() -> None:
    objects: dict[tuple[int, int], WorldObj] = {(x, 3): Wall() for x in range(1, 6)}
    objects |= {(3, 1): Ball("red"), (4, 3): Door("blue"), (4, 1): Key("green")}
    text = see(objects, agent=(3, 5), size=(7, 7))
    assert "You see a wall 2 steps forward" in text
    assert "You see a closed blue door 1 step right and 2 steps forward" in text
    assert not any("red ball" in s or "green key" in s for s in text)


def test_objects_behind_an_open_door_are_described() -> None:
    objects: dict[tuple[int, int], WorldObj] = {(x, 3): Wall() for x in range(1, 6)}
    objects |= {(3, 3): Door("blue", is_open=True), (3, 1): Ball("red")}
    assert "You see a red ball 4 steps forward" in see(objects, agent=(3, 5))


def test_left_and_right_follow_the_agents_heading() -> None:
    # Facing east (+x), north (-y) is on the agent's left.
    text = see({(1, 1): Ball("red"), (3, 3): Key("blue")}, agent=(1, 3), heading=RIGHT)
    assert "You see a red ball 2 steps left" in text
    assert "You see a blue key 2 steps forward" in text


# -- the gymnasium env -------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", TEXT_ENV_IDS)
def test_every_registered_id_passes_check_env(env_id: str) -> None:
    env = gym.make(env_id, render_mode="rgb_array")
    check_env(env.unwrapped, skip_render_check=True)  # "human" mode would open a window
    env.close()


def test_text_view_is_in_obs_and_info_on_reset_and_step() -> None:
    env = gym.make("BabyAI-Text-GoToLocal-v0")
    obs, info = env.reset(seed=0)
    for _ in range(2):
        assert isinstance(info["descriptions"], list) and all(isinstance(s, str) for s in info["descriptions"])
        assert info["mission"] == obs["mission"] and info["mission"].startswith("go to")
        assert obs["text"] == ". ".join(info["descriptions"])
        assert obs["image"].shape == (7, 7, 3) and obs["image"].dtype == np.uint8
        obs, _, _, _, info = env.step(2)


def test_actions_are_glams_six_mapped_to_minigrid_0_to_5() -> None:
    env = gym.make("BabyAI-Text-GoToLocal-v0")
    assert ACTIONS == ("turn left", "turn right", "go forward", "pick up", "drop", "toggle")
    assert env.action_space == gym.spaces.Discrete(6)
    obs, _ = env.reset(seed=0)
    heading = obs["direction"]
    obs, *_ = env.step(ACTIONS.index("turn left"))
    assert obs["direction"] == (heading - 1) % 4
    obs, *_ = env.step(ACTIONS.index("turn right"))
    assert obs["direction"] == heading


def _run_bot(env: gym.Env, seed: int) -> tuple[float, int, dict]:
    env.reset(seed=seed)
    bot = BabyAIBot(env.unwrapped.level)
    steps, done = 0, False
    while not done:
        _, reward, terminated, truncated, info = env.step(bot.replan())
        steps, done = steps + 1, terminated or truncated
    return float(reward), steps, info


@pytest.mark.parametrize("env_id", ["BabyAI-Text-GoToLocal-v0", "BabyAI-Text-MixedTrainLocal-v0"])
def test_success_pays_one_minus_point_nine_t_over_max_steps(env_id: str) -> None:
    env = gym.make(env_id)
    for seed in range(3):
        reward, steps, info = _run_bot(env, seed)
        assert info["success"]
        assert reward == pytest.approx(1 - 0.9 * steps / env.unwrapped.level.max_steps)


def test_failure_pays_zero_and_truncates_at_max_steps() -> None:
    env = gym.make("BabyAI-Text-GoToLocal-v0")
    env.reset(seed=0)
    max_steps = env.unwrapped.level.max_steps
    for t in range(1, max_steps + 1):
        _, reward, terminated, truncated, info = env.step(ACTIONS.index("turn left"))
        assert reward == 0 and not terminated and truncated == (t == max_steps)
    assert max_steps == 64 and not info["success"]


def test_same_seed_gives_the_same_episode() -> None:
    env = gym.make("BabyAI-Text-MixedTrainLocal-v0")
    first = [env.reset(seed=s)[1] for s in range(5)]
    again = [env.reset(seed=s)[1] for s in range(5)]
    assert first == again
    assert len({i["mission"] for i in first}) > 1


def test_render_returns_an_rgb_frame_sized_to_the_episodes_rooms() -> None:
    env = gym.make("BabyAI-Text-MixedTrainLocal-v0", render_mode="rgb_array")
    shapes = {}
    for seed in range(12):
        _, info = env.reset(seed=seed)
        frame = env.render()
        assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8
        shapes[info["task"] == "open"] = frame.shape
    assert shapes[False][1] == shapes[False][0]  # one square room
    assert shapes[True][1] > shapes[True][0]  # open: two rooms side by side


def test_resets_do_not_print_minigrids_rejections(capsys: pytest.CaptureFixture[str]) -> None:
    env = gym.make("BabyAI-Text-GoToLocal-v0")
    for seed in range(30):
        env.reset(seed=seed)
    assert capsys.readouterr().out == ""


def test_vector_env_batches_the_text_view() -> None:
    envs = gym.make_vec("BabyAI-Text-MixedTrainLocal-v0", num_envs=2, vectorization_mode="sync")
    obs, infos = envs.reset(seed=0)
    assert obs["image"].shape == (2, 7, 7, 3) and len(obs["text"]) == 2
    obs, _, _, _, infos = envs.step(np.array([2, 0]))
    assert all(isinstance(d, list) for d in infos["descriptions"]) and len(infos["mission"]) == 2
    envs.close()


def test_async_make_vec_keeps_text_fields_fresh() -> None:
    envs = llmrl.envs.make_vec("BabyAI-Text-GoToLocal-v0", num_envs=2, vectorization_mode="async")
    obs, _ = envs.reset(seed=0)
    obs, _, _, _, infos = envs.step(np.array([2, 1]))
    assert list(obs["text"]) == [". ".join(d) for d in infos["descriptions"]]
    assert all(m.startswith("go to") for m in obs["mission"])
    envs.close()


def test_make_names_the_registered_ids_on_a_typo() -> None:
    with pytest.raises(gym.error.Error, match="BabyAI-Text-GoToLocal-v0"):
        llmrl.envs.make("BabyAI-Text-GoToLokal-v0")


def test_any_minigrid_level_can_be_wrapped() -> None:
    env = BabyAITextEnv(level="BabyAI-GoToObj-v0")
    obs, info = env.reset(seed=0)
    assert info["task"] == "goto" and obs["mission"].startswith("go to")


# -- GLAM's Mixed levels ---------------------------------------------------------------------

_PAIR = re.compile(r"\b(red|green|blue|purple|yellow|grey) (ball|box|key|door)\b")


def _missions(env_id: str, n: int = 50) -> list[tuple[str, str, int]]:
    env = gym.make(env_id)
    out = []
    for seed in range(n):
        _, info = env.reset(seed=seed)
        out.append((info["task"], info["mission"], env.unwrapped.level.max_steps))
    return out


def test_mixed_train_never_names_a_held_out_pair() -> None:
    missions = _missions("BabyAI-Text-MixedTrainLocal-v0")
    assert {task for task, _, _ in missions} == set(MIXED_TASKS)
    for _, mission, _ in missions:
        assert not any(pair in HELD_OUT_PAIRS for pair in _PAIR.findall(mission)), mission


def test_mixed_test_names_only_held_out_pairs() -> None:
    missions = _missions("BabyAI-Text-MixedTestLocal-v0")
    assert {task for task, _, _ in missions} == set(MIXED_TASKS)
    for task, mission, _ in missions:
        pairs = _PAIR.findall(mission)
        assert pairs and all(pair in HELD_OUT_PAIRS for pair in pairs), mission
        if task == "open":
            assert pairs[0] in {("red", "door"), ("grey", "door")}


def test_mixed_max_steps_follow_glam() -> None:
    expected = {"goto": 64, "pickup": 64, "putnext": 128, "open": 128, "pickup_seq_goto": 128}
    for task, mission, max_steps in _missions("BabyAI-Text-MixedTrainLocal-v0", n=30):
        assert max_steps == expected[task], mission


def test_sequence_task_uses_both_glam_phrasings() -> None:
    missions = {m for _, m, _ in _missions("BabyAI-Text-PickUpSeqGoToLocal-v0", n=20)}
    assert any(", then go to" in m for m in missions) and any(" after you pick up " in m for m in missions)


@pytest.mark.parametrize("env_id", TEXT_ENV_IDS)
def test_babyai_bot_solves_the_level(env_id: str) -> None:
    env = gym.make(env_id)
    wins = sum(_run_bot(env, seed)[2]["success"] for seed in range(20))
    assert wins >= 18
