"""RND: the bonus fades on what the predictor has seen and stays high on what it has not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmrl.rl.dqn import GridEncoder
from llmrl.rl.rnd import RND, RNDConfig, RunningMeanStd

torch.set_num_threads(1)


def grid_rnd(seed: int = 0, **config) -> RND:
    """RND over a 5x5 map of 6 classes plus 3 counts in 0..9, as a GridEncoder reads it."""
    torch.manual_seed(seed)
    return RND(lambda: GridEncoder((5, 5), 6, n_extra=3, extra_scale=9.0, hidden_sizes=(64,)), RNDConfig(**config))


def random_grids(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([rng.integers(0, 6, (n, 25)), rng.integers(0, 10, (n, 3))], axis=1).astype(np.uint8)


def test_bonus_falls_on_familiar_observations_and_stays_high_on_novel_ones():
    rng = np.random.default_rng(0)
    rnd = grid_rnd(learning_rate=1e-3)
    familiar, novel = random_grids(4, rng), random_grids(64, rng)
    rnd.intrinsic_reward(random_grids(64, rng))  # some statistics, so rewards are comparable below
    before = rnd.intrinsic_reward(familiar, update_stats=False)
    for _ in range(200):
        rnd.update(familiar[rng.integers(0, 4, 32)])  # the same four observations, over and over
    after = rnd.intrinsic_reward(familiar, update_stats=False)
    novel_after = rnd.intrinsic_reward(novel, update_stats=False)
    assert after.max() < 0.1 * before.min()
    assert np.median(novel_after) > 10 * after.max()


def test_update_proportion_trains_on_a_random_part_of_the_batch():
    rng = np.random.default_rng(0)
    obs = random_grids(64, rng)
    full, part = grid_rnd(seed=0), grid_rnd(seed=0, update_proportion=0.25)
    raw = full.raw_error(obs)
    torch.manual_seed(1)
    mask = (torch.rand(64) < 0.25).numpy()
    assert full.update(obs) == pytest.approx(raw.mean(), rel=1e-5)
    torch.manual_seed(1)
    assert part.update(obs) == pytest.approx(raw[mask].mean(), rel=1e-5)  # only the drawn rows count


def test_rewards_are_scaled_by_the_running_std_of_raw_errors():
    rng = np.random.default_rng(0)
    rnd = grid_rnd(reward_scale=2.0)
    for _ in range(20):
        rnd.intrinsic_reward(random_grids(32, rng))
    obs = random_grids(256, rng)
    raw = rnd.raw_error(obs)
    reward = rnd.intrinsic_reward(obs, update_stats=False)
    np.testing.assert_allclose(reward, 2.0 * raw / np.sqrt(rnd.reward_rms.var + 1e-8), rtol=1e-5)
    assert reward.dtype == np.float32 and (reward > 0).all()
    assert 1.0 < reward.std() < 4.0  # about reward_scale: the errors' std is divided out


def test_running_mean_std_matches_numpy_over_uneven_batches():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(1000, 2))
    rms = RunningMeanStd(shape=(2,))
    for chunk in np.split(x, [1, 7, 300, 301, 999]):
        rms.update(chunk)
    np.testing.assert_allclose(rms.mean, x.mean(axis=0))
    np.testing.assert_allclose(rms.var, x.var(axis=0))
    assert rms.count == 1000


def test_rnd_state_dict_round_trip_gives_identical_rewards_and_updates():
    rng = np.random.default_rng(0)
    obs = random_grids(32, rng)
    a = grid_rnd(seed=0)
    for _ in range(3):
        a.intrinsic_reward(obs)
        a.update(obs)
    b = grid_rnd(seed=1)
    assert not np.array_equal(a.intrinsic_reward(obs, False), b.intrinsic_reward(obs, False))
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.intrinsic_reward(obs, False), b.intrinsic_reward(obs, False))
    assert a.update(obs) == b.update(obs)  # the predictor's Adam moments came along
    np.testing.assert_array_equal(a.raw_error(obs), b.raw_error(obs))


def test_the_target_network_never_changes():
    rnd = grid_rnd()
    before = [p.clone() for p in rnd.target.parameters()]
    obs = random_grids(16, np.random.default_rng(0))
    for _ in range(5):
        rnd.update(obs)
    assert all(torch.equal(p, q) for p, q in zip(before, rnd.target.parameters()))


@pytest.mark.parametrize(
    "kwargs, field", [(dict(update_proportion=0), "update_proportion"), (dict(out_dim=0), "out_dim")]
)
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        RNDConfig(**kwargs)


def test_a_factory_returning_one_shared_encoder_is_refused():
    enc = GridEncoder((2, 2), 3, hidden_sizes=(8,))
    with pytest.raises(ValueError, match="new encoder"):
        RND(lambda: enc)
