"""CLEVR-Robot: physics of a push, walls, chain pushes, the gymnasium contract, rendering, the expert."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from llmrl.envs.clevr_expert import ClevrExpert
from llmrl.envs.clevr_goals import Move, Relation, sample_goal
from llmrl.envs.clevr_robot import (
    BALL_COLOURS_RGB,
    ENV_ID,
    N_ACTIONS,
    PUSH_DIRECTIONS,
    X_BOUNDS,
    Y_BOUNDS,
    ClevrRobotEnv,
    PushSimulator,
    push,
    render_positions,
    sample_positions,
    world_to_pixel,
)

# Ball 0 (red) in the middle, the others in the corners, far from any push of ball 0.
ISOLATED = np.array([0.0, 0.2, -0.47, 0.57, 0.47, 0.57, -0.47, -0.17, 0.47, -0.17])


def relation(ball: int, ref: int, direction: int) -> Relation:
    return Relation(text="test relation", level="seen", ball=ball, ref=ref, direction=direction)


def test_push_moves_the_named_ball_along_each_direction_and_nothing_else():
    for k, direction in enumerate(PUSH_DIRECTIONS):
        new = push(ISOLATED, k)  # ball 0, direction k
        moved = new[:2] - ISOLATED[:2]
        unit = direction / np.linalg.norm(direction)
        along, sideways = moved @ unit, abs(moved[0] * unit[1] - moved[1] * unit[0])
        expected = (0.2, 0.3) if k < 4 else (0.25, 0.36)  # KALM's data: 0.25 cardinal, 0.29-0.33 diagonal
        assert expected[0] < along < expected[1], (k, along)
        assert sideways < 0.01, (k, sideways)
        np.testing.assert_allclose(new[2:], ISOLATED[2:], atol=1e-9)


def test_action_index_selects_ball_then_direction():
    # Action 8 * b + 0 pushes ball b towards +x.
    for b in range(5):
        state = sample_positions(np.random.default_rng(b))
        new = push(state, 8 * b + 0)
        assert new[2 * b] > state[2 * b] or np.isclose(state[2 * b], X_BOUNDS[1])


def raw_centres_on_table(sim: PushSimulator, tolerance: float = 1e-3) -> bool:
    """The physics' own ball centres (before ``push`` clips them) within the wall bounds."""
    xy = sim.data.qpos[:10].reshape(5, 2)
    x_ok = (xy[:, 0] >= X_BOUNDS[0] - tolerance) & (xy[:, 0] <= X_BOUNDS[1] + tolerance)
    y_ok = (xy[:, 1] >= Y_BOUNDS[0] - tolerance) & (xy[:, 1] <= Y_BOUNDS[1] + tolerance)
    return bool(np.all(x_ok & y_ok))


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_walls_stop_a_ball_pushed_into_them_again_and_again(k):
    sim, state = PushSimulator(), ISOLATED.copy()
    for _ in range(6):
        state = sim.push(state, k)  # red, towards one wall
        assert raw_centres_on_table(sim)
    axis, bound = {0: (0, X_BOUNDS[1]), 1: (1, Y_BOUNDS[1]), 2: (0, X_BOUNDS[0]), 3: (1, Y_BOUNDS[0])}[k]
    assert abs(state[axis] - bound) < 0.02  # it got there and stopped


def test_walls_hold_under_random_pushes():
    sim, rng = PushSimulator(), np.random.default_rng(0)
    state = sample_positions(rng)
    for a in rng.integers(N_ACTIONS, size=100):
        state = sim.push(state, a)
        assert raw_centres_on_table(sim)


def test_pushing_a_ball_into_another_moves_the_other_one():
    # Red at (-0.2, 0.2), blue just right of it at (0.1, 0.2); push red towards +x.
    state = ISOLATED.copy()
    state[0:2] = (-0.2, 0.2)
    state[2:4] = (0.1, 0.2)
    new = push(state, 0)
    assert new[2] - state[2] > 0.05  # blue was pushed on along +x
    assert abs(new[3] - state[3]) < 0.02
    assert new[2] - new[0] > 0.25  # the balls do not overlap


def test_push_is_a_pure_function_of_positions_and_action():
    rng = np.random.default_rng(3)
    state = sample_positions(rng)
    first = push(state, 17)
    for a in (5, 33, 17):
        again = push(state, a)
    np.testing.assert_array_equal(first, again)


def test_sample_positions_keeps_balls_apart_and_on_the_table():
    rng = np.random.default_rng(0)
    for _ in range(50):
        xy = sample_positions(rng).reshape(5, 2)
        d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)[np.triu_indices(5, 1)]
        assert d.min() >= 0.36 - 1e-12
        assert np.all((xy[:, 0] >= X_BOUNDS[0]) & (xy[:, 0] <= X_BOUNDS[1]))
        assert np.all((xy[:, 1] >= Y_BOUNDS[0]) & (xy[:, 1] <= Y_BOUNDS[1]))


def test_passes_gymnasium_env_checker():
    check_env(gym.make(ENV_ID, render_mode="rgb_array").unwrapped, skip_render_check=False)


def test_registered_id_makes_the_env():
    env = gym.make(ENV_ID, goal_level="easy")
    obs, info = env.reset(seed=0)
    assert obs.shape == (10,) and info["level"] == "easy" and info["goal"].max_steps == 1
    _, _, terminated, truncated, _ = env.step(0)
    assert terminated or truncated  # easy goals are judged after one step


def test_same_seed_gives_the_same_trajectory():
    def rollout(seed: int) -> tuple[list, str]:
        env = ClevrRobotEnv(goal_level="seen")
        obs, info = env.reset(seed=seed)
        actions = np.random.default_rng(seed).integers(N_ACTIONS, size=15)
        trace = [obs]
        for a in actions:
            obs, reward, *_ = env.step(a)
            trace += [obs, reward]
        return trace, info["goal_text"]

    (a, text_a), (b, text_b) = rollout(7), rollout(7)
    assert text_a == text_b
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(rollout(8)[0][0], a[0])


def test_reset_starts_where_the_goal_does_not_hold_and_step_reports_success():
    env = ClevrRobotEnv(goal_level="seen")
    for seed in range(20):
        obs, info = env.reset(seed=seed)
        assert not info["goal"].success(env.positions, env.positions)
    # Red right of blue but too far away (0.5); one push left brings it within 0.39.
    goal = relation(0, 1, 3)  # red right of blue
    start = ISOLATED.copy()
    start[2:4] = (-0.2, 0.2)
    start[0:2] = (0.3, 0.2)  # 0.5 right of blue: not within 0.39
    obs, info = env.reset(options={"goal": goal, "positions": start})
    np.testing.assert_allclose(obs, start, atol=1e-6)
    obs, reward, terminated, truncated, info = env.step(2)  # red towards -x
    assert terminated and info["success"] and not truncated
    assert reward > 100  # shaped progress plus the success bonus


def test_episode_truncates_at_max_steps():
    env = ClevrRobotEnv(goal_level="seen", max_steps=3)
    env.reset(seed=0, options={"goal": relation(0, 1, 0), "positions": ISOLATED})
    flags = [env.step(12)[2:4] for _ in range(3)]  # push blue (not red) around: never succeeds here
    assert flags[-1] == (False, True) and flags[0] == (False, False)


def test_render_shows_each_ball_colour_at_its_position():
    env = ClevrRobotEnv(render_mode="rgb_array")
    env.reset(seed=0)
    image = env.render()
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8
    for i, (x, y) in enumerate(env.positions.reshape(5, 2)):
        row, col = world_to_pixel(x, y)
        np.testing.assert_array_equal(image[row, col], BALL_COLOURS_RGB[i])
    # Moving a ball moves its colour.
    moved = env.positions
    moved[0:2] = (0.0, 0.2) if np.linalg.norm(moved[0:2] - (0.0, 0.2)) > 0.3 else (0.4, 0.5)
    image2 = render_positions(moved)
    assert not np.array_equal(image, image2)


def test_expert_reaches_a_relation_goal():
    env = ClevrRobotEnv()
    expert = ClevrExpert(epsilon=0.0)
    rng = np.random.default_rng(0)
    goal = relation(0, 1, 0)  # red behind blue
    start = ISOLATED.copy()
    start[2:4] = (0.2, 0.1)  # blue below-right of red
    env.reset(options={"goal": goal, "positions": start})
    for _ in range(50):
        *_, terminated, truncated, info = env.step(expert.act(env.positions, goal, env.start, rng))
        if terminated or truncated:
            break
    assert info["success"]


def test_expert_succeeds_on_most_sampled_seen_goals():
    env, expert, rng = ClevrRobotEnv(goal_level="seen"), ClevrExpert(), np.random.default_rng(0)
    successes = 0
    for seed in range(10):
        env.reset(seed=seed)
        done = False
        while not done:
            *_, terminated, truncated, info = env.step(expert.act(env.positions, env.goal, env.start, rng))
            done = terminated or truncated
        successes += info["success"]
    assert successes >= 8


def test_expert_pushes_the_named_ball_the_named_way_on_easy_goals():
    expert, state = ClevrExpert(), ISOLATED.copy()
    state[[0, 1, 6, 7]] = state[[6, 7, 0, 1]]  # purple (3) in the middle, red in a corner
    for direction, push_index in enumerate((1, 2, 3, 0)):
        goal = Move(text="t", level="easy", ball=3, direction=direction)
        action = expert.act(state, goal, state, np.random.default_rng(0))
        assert action == 3 * 8 + push_index
        assert goal.success(push(state, action), state)


def test_expert_acts_on_every_goal_level():
    expert, rng = ClevrExpert(), np.random.default_rng(0)
    state = sample_positions(rng)
    for level in ("seen", "rephrase", "easy", "hard"):
        a = expert.act(state, sample_goal(level, rng), state, rng)
        assert 0 <= a < N_ACTIONS


def test_expert_epsilon_one_acts_at_random():
    expert, rng = ClevrExpert(epsilon=1.0), np.random.default_rng(0)
    actions = {expert.act(ISOLATED, relation(0, 1, 0), ISOLATED, rng) for _ in range(100)}
    assert len(actions) > 20
