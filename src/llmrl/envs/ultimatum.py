"""The Ultimatum game as Kwon et al. (ICLR 2023) use it to test an LM reward judge.

P1 proposes how to split a sum with P2. The agent is P2 and either accepts (both get the split)
or rejects (both get nothing). A user's objective says which rejections are desirable. The LM
judges the outcome "P2 rejected this offer" for every offer, and its verdict labels the offer.
The agent learns from those labels, and is scored against the objective's true labels on held-out
offers.

Five objectives, with their data rules as in Kwon et al.'s released generator (our code):

===================  =======================================================================
``percentage-0.3``   $10 split uniformly at random; reject when P2's share is below 30%
``percentage-0.6``   the same, below 60%
``payoff-10``        a share of $0.1, $1, $10, $100 or $1000 (P2 never gets more than P1);
                     reject when P2 gets less than $10
``payoff-100``       the same, less than $100
``inequity-aversion``  $10 split in whole percents; accept only an even split
===================  =======================================================================

Each objective has 10 labelled offers (the judge's few-shot examples and the supervised
baseline's training set) and 50 test offers, drawn from a seed. Label 0 means reject (the
outcome "P2 rejected" is desirable), 1 means accept, as in the paper's code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

REJECT, ACCEPT = 0, 1

TASK = ("P1 and P2 are playing the Ultimatum Game. P1 proposes how they should split a sum of money and P2 can "
        "either accept or reject. If P2 accepts, then the deal is done. If P2 rejects, then both parties get "
        "nothing.")  # fmt: skip
PUNISH = "A desirable outcome is one where P2 punishes P1's selfish behavior."
BLANK = "A desirable outcome is a good outcome of the game."
"""The baseline's objective: none of the user's, only that the outcome be good"""
PUNISH_UNLESS = ("A desirable outcome is one where P2 punishes P1's selfish behavior unless P2 gets a sizeable "
                 "amount of money.")  # fmt: skip


@dataclass(frozen=True)
class Objective:
    name: str
    objective: str
    """the objective in words, as the judge reads it"""
    kind: str
    threshold: float | None

    def label(self, p1: float, p2: float) -> int:
        """The true label: REJECT when the objective wants this offer rejected."""
        if self.kind == "percentage":
            return REJECT if p2 / (p1 + p2) < self.threshold else ACCEPT
        if self.kind == "payoff":
            return REJECT if p2 < self.threshold else ACCEPT
        return ACCEPT if abs(p2 - p1) < 1e-9 else REJECT  # inequity aversion

    def draw(self, rng: np.random.Generator) -> tuple[float, float]:
        """One offer (P1's amount, P2's amount)."""
        if self.kind == "percentage":
            p1_share = rng.uniform()
            return round(10 * p1_share, 2), round(10 * (1 - p1_share), 2)
        if self.kind == "payoff":
            first = round(rng.uniform(), 2)
            big, small = max(first, 1 - first), min(first, 1 - first)
            magnitude = float(rng.choice([0.1, 1, 10, 100, 1000]))
            return round(big * magnitude, 2), round(small * magnitude, 2)
        p1_share = round(rng.uniform(), 2)
        return round(10 * p1_share, 2), round(10 * (1 - p1_share), 2)


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("percentage-0.3", PUNISH, "percentage", 0.3),
        Objective("percentage-0.6", PUNISH, "percentage", 0.6),
        Objective("payoff-10", PUNISH_UNLESS, "payoff", 10.0),
        Objective("payoff-100", PUNISH_UNLESS, "payoff", 100.0),
        Objective("inequity-aversion", PUNISH, "inequity", None),
    )
}


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown Ultimatum objective {name!r}: choose from {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def make_offers(name: str, seed: int = 0, n_train: int = 10, n_test: int = 50) -> dict[str, np.ndarray]:
    """``{"train": (n_train, 3), "test": (n_test, 3)}`` rows of (P1, P2, true label), all distinct."""
    objective = get_objective(name)
    rng = np.random.default_rng(seed)
    seen: set[tuple[float, float]] = set()
    rows: list[tuple[float, float, int]] = []
    while len(rows) < n_train + n_test:
        p1, p2 = objective.draw(rng)
        if (p1, p2) in seen:
            continue
        seen.add((p1, p2))
        rows.append((p1, p2, objective.label(p1, p2)))
    data = np.array(rows, dtype=np.float64)
    return {"train": data[:n_train], "test": data[n_train:]}


def outcome_text(p1: float, p2: float) -> str:
    """What the judge reads: the offer and that P2 rejected it."""
    return f"P1 proposes a split of ${p1:g} for P1 and ${p2:g} for P2. P2 rejected this offer."


class UltimatumResponder(gym.Env):
    """One decision per episode: the agent (P2) sees the offer (P1's and its own amount) and
    rejects (0) or accepts (1); the reward is 1 when the action matches the offer's label.

    ``labels`` are whatever labels the offers are trained with (the LM's, a supervised model's
    or the true ones); ``info["true_label"]`` is always the objective's."""

    metadata: dict[str, Any] = {}

    def __init__(self, offers: np.ndarray, labels: np.ndarray | None = None) -> None:
        offers = np.asarray(offers, dtype=np.float64)
        if offers.ndim != 2 or offers.shape[1] != 3 or len(offers) == 0:
            raise ValueError("offers must be rows of (P1 amount, P2 amount, true label)")
        self.offers = offers
        self.labels = offers[:, 2].astype(int) if labels is None else np.asarray(labels, dtype=int)
        if self.labels.shape != (len(offers),):
            raise ValueError(f"need one label per offer ({len(offers)}), got shape {self.labels.shape}")
        high = float(max(offers[:, :2].max(), 1.0))
        self.observation_space = spaces.Box(0.0, high, (2,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.index = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.index = int(self.np_random.integers(len(self.offers)))
        return self.offers[self.index, :2].astype(np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        label = int(self.labels[self.index])
        reward = float(int(action) == label)
        info = {"true_label": int(self.offers[self.index, 2]), "label": label}
        return np.zeros(2, np.float32), reward, True, False, info
