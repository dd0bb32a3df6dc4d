"""teachDeepRL's ToyEnv: the corner cell learns from the start, others only after a previous
neighbour is mastered, and competence is the reward."""

from __future__ import annotations

import pytest

from llmrl.envs.toy_env import ToyEnv


def test_the_corner_cell_learns_from_the_start_and_pays_its_competence():
    env = ToyEnv()
    assert [env.episode([0.05, 0.05]) for _ in range(3)] == [0.01, 0.02, 0.03]
    assert env.episode([0.95, 0.95]) == 0.0  # locked: practice does nothing


def test_a_cell_unlocks_once_a_previous_neighbour_reaches_75():
    env = ToyEnv()
    for _ in range(74):
        env.episode([0.0, 0.0])
    assert env.episode([0.15, 0.15]) == 0.0  # the diagonal neighbour is at 74
    env.episode([0.0, 0.0])
    assert env.episode([0.15, 0.15]) == 0.01  # (0, 0) reached 75: (1, 1) learns
    assert env.episode([0.25, 0.05]) == 0.0  # (2, 0): its previous neighbours (1, 0) and (1, -) are not mastered
    assert env.mastered_percent() == 0.0  # mastered means above 75
    env.episode([0.0, 0.0])
    assert env.mastered_percent() == 1.0


def test_competence_stops_at_100_and_the_top_edge_belongs_to_the_last_cell():
    env = ToyEnv(n_cells=2)
    for _ in range(120):
        env.episode([0.0, 0.0])
    assert env.episode([0.1, 0.1]) == 1.0
    assert env.cell([1.0, 1.0]) == (1, 1)
    with pytest.raises(ValueError, match=r"point of \[0, 1\]\^2"):
        env.episode([-0.1, 0.5])
