"""Goal judges of CLEVR-Robot on hand-made states."""

import numpy as np
import pytest

from llmrl.envs.clevr_goals import (
    CONFIGURATIONS,
    LEVELS,
    Conjunction,
    Gather,
    LineUp,
    Move,
    Relation,
    goal_from_spec,
    rephrasings,
    relation_holds,
    sample_goal,
    training_sentences,
)

RED, BLUE, GREEN, PURPLE, CYAN = range(5)
FAR = [(-0.45, -0.15), (0.45, -0.15), (-0.45, 0.55), (0.45, 0.55), (0.0, 0.55)]


def state(**balls):
    """A 10-d state: balls named by colour at the given (x, y); the rest parked in far corners."""
    names = ("red", "blue", "green", "purple", "cyan")
    s = np.array(FAR, dtype=np.float64)
    for name, xy in balls.items():
        s[names.index(name)] = xy
    return s.reshape(-1)


@pytest.mark.parametrize(
    "direction, offset",
    [(0, (0.0, 0.3)), (1, (-0.3, 0.0)), (2, (0.0, -0.3)), (3, (0.3, 0.0))],
)
def test_relation_holds_only_in_its_own_direction(direction, offset):
    s = state(red=offset, blue=(0.0, 0.0))
    assert relation_holds(s, RED, BLUE, direction)
    for other in set(range(4)) - {direction}:
        assert not relation_holds(s, RED, BLUE, other)


def test_relation_needs_closeness_and_the_45_degree_cone():
    assert not relation_holds(state(red=(0.0, 0.40), blue=(0.0, 0.0)), RED, BLUE, 0)  # too far
    assert relation_holds(state(red=(0.2, 0.21), blue=(0.0, 0.0)), RED, BLUE, 0)  # inside the cone
    assert not relation_holds(state(red=(0.22, 0.2), blue=(0.0, 0.0)), RED, BLUE, 0)  # just outside


def test_relation_reward_pays_progress_towards_the_spot_and_100_on_success():
    g = Relation(text="", level="seen", ball=RED, ref=BLUE, direction=3)
    far, nearer, there = state(red=(-0.4, 0.0)), state(red=(-0.1, 0.0)), state(red=(0.27, 0.0))
    for s in (far, nearer, there):
        s[2:4] = (0.0, 0.0)
    assert g.reward(far, nearer, far) == pytest.approx(3.0)
    assert g.reward(nearer, far, far) == pytest.approx(-3.0)
    assert g.reward(nearer, there, far) == pytest.approx(10 * 0.37 + 100)
    assert g.success(there, far) and not g.success(nearer, far)


def test_move_is_judged_on_displacement_from_the_start():
    g = Move(text="", level="easy", ball=GREEN, direction=1)
    start = state(green=(0.0, 0.2))
    assert g.success(state(green=(-0.2, 0.2)), start)
    assert not g.success(state(green=(-0.1, 0.2)), start)
    assert not g.success(state(green=(0.2, 0.2)), start)
    assert g.max_steps == 1 and g.reward(start, state(green=(-0.2, 0.2)), start) == 1.0


def test_conjunction_needs_every_relation_at_once_and_pays_per_new_subgoal():
    a = Relation(text="", level="hard", ball=RED, ref=GREEN, direction=1)
    b = Relation(text="", level="hard", ball=BLUE, ref=GREEN, direction=3)
    g = Conjunction(text="", level="hard", relations=(a, b))
    only_a = state(green=(0.0, 0.2), red=(-0.3, 0.2))
    both = state(green=(0.0, 0.2), red=(-0.3, 0.2), blue=(0.3, 0.2))
    assert not g.success(only_a, only_a) and g.success(both, both)
    assert g.reward(only_a, both, only_a) == 110.0
    assert g.reward(both, only_a, only_a) == 0.0


def test_line_up_and_gather():
    row = state(red=(-0.4, 0.2), blue=(-0.2, 0.25), green=(0.0, 0.2), purple=(0.2, 0.15), cyan=(0.4, 0.2))
    assert LineUp(text="", level="hard").success(row, row)
    swapped = row.copy()
    swapped[[0, 1, 2, 3]] = row[[2, 3, 0, 1]]
    assert not LineUp(text="", level="hard").success(swapped, swapped)
    ring = state(green=(0.0, 0.2), red=(0.3, 0.2), blue=(-0.3, 0.2), purple=(0.0, 0.5), cyan=(0.0, -0.1))
    assert Gather(text="", level="hard").success(ring, ring)
    assert Gather(text="", level="hard").subgoals(row, row).tolist() == [False, True, True, False]


def test_phrasings_cover_the_80_configurations_and_rephrasings_are_held_out():
    train = {s for c in CONFIGURATIONS for s in training_sentences(*c)}
    held_out = {s for c in CONFIGURATIONS for s in rephrasings(*c)}
    assert len(CONFIGURATIONS) == 80 and len(train) == 80 * 54
    assert not train & held_out


@pytest.mark.parametrize("level", LEVELS)
def test_sampled_goals_round_trip_through_their_spec(level):
    rng = np.random.default_rng(0)
    for _ in range(50):
        g = sample_goal(level, rng)
        assert g.level == level and g.text
        assert goal_from_spec(g.spec()) == g


def test_unknown_level_or_kind_names_the_valid_ones():
    with pytest.raises(ValueError, match="seen"):
        sample_goal("medium", np.random.default_rng(0))
    with pytest.raises(ValueError, match="relation"):
        goal_from_spec({"kind": "teleport"})
