"""Two-player matrix games as Kwon et al. (ICLR 2023) use them to test an LM reward judge.

Each game has four joint outcomes, A-D (P1's action 1 or 2 by P2's action 1 or 2), each a pair of
rewards. A user's objective in words (the greatest total welfare, equal rewards, Rawlsian fairness,
Pareto-optimality) says which outcomes are desirable; the truth is computed from the payoffs.
The agent picks a joint outcome and is paid 1 when the outcome is labelled desirable by whoever
labels it (the LM judge, or the truth). The payoffs are the paper's four games; a *scrambled*
game moves the payoff pairs to other outcomes (a seeded permutation), so a judge that recalls
the famous game instead of reading the payoffs is caught.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

OPTIONS = "ABCD"
JOINT = ("action1(P1) and action1(P2)", "action1(P1) and action2(P2)", "action2(P1) and action1(P2)",
         "action2(P1) and action2(P2)")  # fmt: skip

GAMES: dict[str, tuple[tuple[int, int], ...]] = {
    "battle": ((2, 1), (0, 0), (0, 0), (1, 2)),  # battle of the sexes
    "prisoners": ((3, 3), (0, 5), (5, 0), (1, 1)),  # prisoner's dilemma
    "stag": ((2, 2), (-3, 1), (1, -3), (1, 1)),  # stag hunt
    "chicken": ((2, 2), (1, 3), (3, 1), (0, 0)),
}

OBJECTIVES: dict[str, str] = {
    "welfare": "The players should choose the option(s) that result in the greatest total welfare.",
    "equality": "The players should choose the option(s) that result in equality of rewards.",
    "rawlsian": "The players should choose the option(s) that result in Rawlsian fair rewards.",
    "pareto": "The players should choose the option(s) that are Pareto-optimal.",
}
BLANK = "Which option(s) should the players choose?"
"""The baseline's objective: the question without the user's objective in it"""


def payoffs(game: str, scramble_seed: int | None = None) -> tuple[tuple[int, int], ...]:
    """The game's four payoff pairs; with ``scramble_seed``, moved to other outcomes (no pair stays)."""
    if game not in GAMES:
        raise ValueError(f"unknown matrix game {game!r}: choose from {', '.join(GAMES)}")
    pairs = GAMES[game]
    if scramble_seed is None:
        return pairs
    rng = np.random.default_rng(scramble_seed)
    while True:
        order = rng.permutation(4)
        moved = tuple(pairs[i] for i in order)
        if all(moved[k] != pairs[k] for k in range(4)):
            return moved


def desirable(objective: str, pairs: tuple[tuple[int, int], ...]) -> np.ndarray:
    """The true labels: which of the four outcomes meet the objective."""
    r = np.array(pairs, dtype=float)
    if objective == "welfare":
        total = r.sum(1)
        return total == total.max()
    if objective == "equality":
        return r[:, 0] == r[:, 1]
    if objective == "rawlsian":
        worst = r.min(1)
        return worst == worst.max()
    if objective == "pareto":
        dominated = [any((r[j] >= r[i]).all() and (r[j] > r[i]).any() for j in range(4)) for i in range(4)]
        return ~np.array(dominated)
    raise ValueError(f"unknown objective {objective!r}: choose from {', '.join(OBJECTIVES)}")


def game_text(pairs: tuple[tuple[int, int], ...]) -> str:
    """The game as the judge reads it: the four options and their rewards."""
    lines = ["We have a two-player game where P1 and P2 can choose one of these options.", "Options:"]
    lines += [f"{OPTIONS[k]}. if {JOINT[k]} => P1 gets reward of {a}, P2 gets reward of {b}."
              for k, (a, b) in enumerate(pairs)]  # fmt: skip
    return "\n".join(lines)


def outcome_text(pairs: tuple[tuple[int, int], ...], k: int) -> str:
    a, b = pairs[k]
    return f"The players chose option {OPTIONS[k]}: P1 gets reward of {a}, P2 gets reward of {b}."


class MatrixGame(gym.Env):
    """One decision per episode: choose a joint outcome (0-3 for A-D); paid 1 when it is labelled
    desirable. ``labels`` are the labels it trains with; ``info["desirable"]`` is the truth."""

    metadata: dict[str, Any] = {}

    def __init__(self, labels: np.ndarray, truth: np.ndarray) -> None:
        self.labels, self.truth = np.asarray(labels, dtype=bool), np.asarray(truth, dtype=bool)
        if self.labels.shape != (4,) or self.truth.shape != (4,):
            raise ValueError("a matrix game has four outcomes: give four labels and four true labels")
        self.observation_space = spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Discrete(4)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        k = int(action)
        return np.zeros(1, np.float32), float(self.labels[k]), True, False, {"desirable": bool(self.truth[k])}
