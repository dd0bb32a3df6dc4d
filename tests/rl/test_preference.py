"""The Bradley–Terry loss, simulated raters, and PPO-KL's adaptive coefficient (no model needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from llmrl.rl.preference import bradley_terry_loss, sample_preferences
from llmrl.rl.text_ppo import KLPPOConfig, adapt_kl_coef


def test_bradley_terry_loss():
    assert float(bradley_terry_loss(torch.zeros(3), torch.zeros(3))) == pytest.approx(math.log(2))
    assert float(bradley_terry_loss(torch.tensor([5.0]), torch.tensor([-5.0]))) < 1e-4


def test_a_simulated_rater_prefers_the_better_reply_as_often_as_bradley_terry_says():
    gold = lambda prompts, replies: np.array([float(len(r)) for r in replies])  # noqa: E731
    rng = np.random.default_rng(0)
    n = 4000
    pairs = sample_preferences(["p"] * n, ["ab"] * n, ["a"] * n, gold, rng, temperature=1.0)
    share = np.mean([p.chosen == "ab" for p in pairs])
    assert share == pytest.approx(1 / (1 + math.exp(-1)), abs=0.02)
    assert sample_preferences(["p"], ["same"], ["same"], gold, rng) == []  # a tie has nothing to prefer
    sharp = sample_preferences(["p"] * 50, ["ab"] * 50, ["a"] * 50, gold, rng, temperature=0.01)
    assert all(p.chosen == "ab" for p in sharp)


def test_the_kl_controller_moves_beta_toward_the_target():
    cfg = KLPPOConfig(target_kl=2.0, batch_size=100, kl_horizon=1000)
    assert adapt_kl_coef(0.1, 4.0, cfg) > 0.1 > adapt_kl_coef(0.1, 0.5, cfg)
    assert adapt_kl_coef(0.1, 4.0, KLPPOConfig()) == 0.1  # no target: β is fixed
    with pytest.raises(ValueError, match="kl_coef"):
        KLPPOConfig(kl_coef=-1)
