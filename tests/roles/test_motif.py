"""Motif: the LM's pairwise preferences (both orders), the caption reward model, the bonus."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from llmrl.lm.base import CandidateScores, LanguageModel
from llmrl.roles.motif import CaptionRewardModel, MotifBonus, PairwiseJudge, caption_pairs

RANK = {"": 0, "move left": 1, "collect wood": 2, "place table": 3, "make wood pickaxe": 4}


class RankingLM(LanguageModel):
    """Prefers the event ranked higher in RANK; ``bias`` adds a pull toward answering "1"."""

    name = "ranking"

    def __init__(self, bias: float = 0.0, fail: bool = False, only_bias: bool = False) -> None:
        super().__init__()
        self.bias, self.fail, self.only_bias = bias, fail, only_bias

    def score(self, contexts, candidates):
        if self.fail:
            raise RuntimeError("down")
        out = []
        for c in contexts:
            one = c.split("Event 1: ")[1].split("\n")[0].replace("(nothing happened)", "")
            two = c.split("Event 2: ")[1].split("\n")[0].replace("(nothing happened)", "")
            logit = self.bias + (0.0 if self.only_bias else RANK[one] - RANK[two])
            p = 1 / (1 + np.exp(-logit))
            out.append(CandidateScores.from_sums(candidates, [np.log(p), np.log(1 - p)], [1, 1]))
        return out

    def generate(self, *a, **k):
        raise NotImplementedError


def one_hot(texts):
    names = ["(nothing happened)", *list(RANK)[1:]]
    return np.array([[float(t == n) for n in names] for t in texts])


def test_asking_in_both_orders_cancels_a_judge_that_always_says_one():
    pairs = caption_pairs(list(RANK) * 3, max_pairs=100, rng=np.random.default_rng(0))
    assert len(pairs) == 10
    biased = PairwiseJudge(RankingLM(bias=1.5, only_bias=True)).prefer_first(pairs)
    assert np.allclose(biased, 0.5)
    p = PairwiseJudge(RankingLM(bias=1.5)).prefer_first(pairs)
    assert all((p_ > 0.5) == (RANK[a] > RANK[b]) for (a, b), p_ in zip(pairs, p))
    broken = PairwiseJudge(RankingLM(fail=True))
    assert np.isnan(broken.prefer_first(pairs)).all() and broken.abstained == 10


def test_the_reward_model_learns_the_ranking_and_the_bonus_fades_with_repeats():
    captions = list(RANK) * 5
    pairs = caption_pairs(captions, 100, np.random.default_rng(0))
    model = CaptionRewardModel(one_hot, hidden=8, seed=0)
    fit = model.fit(pairs, PairwiseJudge(RankingLM()).prefer_first(pairs), margin=0.1, epochs=300, lr=1e-2)
    assert fit["decided"] == 10 and fit["train_agreement"] == 1.0
    model.calibrate(captions, threshold_quantile=0.3)
    r = model.normalised(list(RANK))
    assert r[0] == 0.0 and r[1] == 0.0 and 0 < r[2] < r[3] < r[4]  # at or below the 30th percentile pays nothing
    bonus = MotifBonus(model, n_envs=1, count_exponent=3.0)
    step = SimpleNamespace(infos=[{"transition_caption": "make wood pickaxe"}])
    first, second = bonus.reward(step)[0], bonus.reward(step)[0]
    assert second == pytest.approx(first / 8, rel=1e-5)
    bonus.end_episode(0)
    assert bonus.reward(step)[0] == pytest.approx(first, rel=1e-5)
    with pytest.raises(ValueError, match="nothing to train"):
        CaptionRewardModel(one_hot).fit(pairs, np.full(len(pairs), 0.5), margin=0.1, epochs=1)
