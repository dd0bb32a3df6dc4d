"""Kwon et al.'s matrix games: payoffs, the objectives' truth, scrambling, the one-step game."""

from __future__ import annotations

import numpy as np
import pytest

from llmrl.envs import matrix_games as MG

# The desirable joint outcomes (0-3 = A-D) listed in Kwon et al.'s code, which our rules must give.
PAPER_TRUTH = {
    ("battle", "welfare"): [0, 3], ("battle", "equality"): [1, 2], ("battle", "rawlsian"): [0, 3],
    ("battle", "pareto"): [0, 3], ("prisoners", "welfare"): [0], ("prisoners", "equality"): [0, 3],
    ("prisoners", "rawlsian"): [0], ("prisoners", "pareto"): [0, 1, 2], ("stag", "welfare"): [0],
    ("stag", "equality"): [0, 3], ("stag", "rawlsian"): [0], ("stag", "pareto"): [0],
    ("chicken", "welfare"): [0, 1, 2], ("chicken", "equality"): [0, 3], ("chicken", "rawlsian"): [0],
    ("chicken", "pareto"): [0, 1, 2],
}  # fmt: skip


@pytest.mark.parametrize("game,objective", list(PAPER_TRUTH))
def test_the_objectives_truth_is_the_papers(game, objective):
    assert np.flatnonzero(MG.desirable(objective, MG.payoffs(game))).tolist() == PAPER_TRUTH[(game, objective)]


def test_scrambling_moves_every_payoff_and_is_seeded():
    for game in MG.GAMES:
        moved = MG.payoffs(game, scramble_seed=3)
        assert sorted(moved) == sorted(MG.GAMES[game]) and moved == MG.payoffs(game, scramble_seed=3)
        assert all(a != b for a, b in zip(moved, MG.GAMES[game]))
    with pytest.raises(ValueError, match="unknown matrix game"):
        MG.payoffs("poker")


def test_the_game_pays_its_labels_and_reports_the_truth():
    env = MG.MatrixGame(labels=np.array([1, 0, 0, 1]), truth=np.array([1, 0, 0, 0]))
    env.reset(seed=0)
    _, r, terminated, _, info = env.step(3)
    assert r == 1.0 and terminated and info["desirable"] is False
    assert "C. if action2(P1) and action1(P2) => P1 gets reward of 5, P2 gets reward of 0." in MG.game_text(
        MG.payoffs("prisoners"))
    with pytest.raises(ValueError, match="four outcomes"):
        MG.MatrixGame(np.ones(3), np.ones(4))
