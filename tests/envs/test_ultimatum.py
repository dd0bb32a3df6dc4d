"""The Ultimatum game of Kwon et al.: offers, true labels, the responder env, the judge's text."""

from __future__ import annotations

import numpy as np
import pytest

from llmrl.envs.ultimatum import ACCEPT, OBJECTIVES, REJECT, UltimatumResponder, get_objective, make_offers, outcome_text


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_offers_are_distinct_labelled_and_reproducible(name):
    data = make_offers(name, seed=3)
    assert data["train"].shape == (10, 3) and data["test"].shape == (50, 3)
    rows = np.concatenate([data["train"], data["test"]])
    assert len({(a, b) for a, b, _ in rows}) == 60
    objective = get_objective(name)
    assert all(objective.label(a, b) == int(y) for a, b, y in rows)
    assert np.array_equal(make_offers(name, seed=3)["test"], data["test"])
    assert not np.array_equal(make_offers(name, seed=4)["test"], data["test"])


def test_the_objectives_rules():
    assert get_objective("percentage-0.3").label(8.0, 2.0) == REJECT
    assert get_objective("percentage-0.3").label(6.0, 4.0) == ACCEPT
    assert get_objective("payoff-10").label(990.0, 10.0) == ACCEPT and get_objective("payoff-10").label(5.1, 4.9) == REJECT
    assert get_objective("inequity-aversion").label(5.0, 5.0) == ACCEPT
    assert get_objective("inequity-aversion").label(2.3, 7.7) == REJECT  # even a generous split is rejected
    with pytest.raises(ValueError, match="unknown Ultimatum objective"):
        get_objective("fairness")


def test_the_responder_is_paid_for_matching_its_labels_not_the_truth():
    offers = np.array([[8.0, 2.0, REJECT]])
    env = UltimatumResponder(offers, labels=np.array([ACCEPT]))  # a wrong labeller
    obs, _ = env.reset(seed=0)
    assert obs.tolist() == [8.0, 2.0]
    _, reward, terminated, _, info = env.step(ACCEPT)
    assert reward == 1.0 and terminated and info == {"true_label": REJECT, "label": ACCEPT}
    with pytest.raises(ValueError, match="one label per offer"):
        UltimatumResponder(offers, labels=np.array([0, 1]))


def test_outcome_text():
    assert outcome_text(9.78, 0.22) == "P1 proposes a split of $9.78 for P1 and $0.22 for P2. P2 rejected this offer."
