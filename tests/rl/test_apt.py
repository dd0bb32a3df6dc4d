"""APT: a state far from its neighbours in the batch is paid more; its rewards replace a batch's
returns; the ICM-style representation learns."""

from __future__ import annotations

import pytest
import torch

from llmrl.rl.apt import APT, APTBonus, APTConfig

torch.set_num_threads(1)


def small_apt(seed: int = 0, **config) -> APT:
    torch.manual_seed(seed)
    return APT(lambda obs: obs.float(), feature_dim=8, n_actions=4,
               config=APTConfig(**{"rep_dim": 16, "hidden": 32, "k": 4, **config}))


def clustered_batch(n: int = 32) -> torch.Tensor:
    """n - 1 states around one point and one state far away."""
    g = torch.Generator().manual_seed(1)
    batch = 0.01 * torch.randn(n, 8, generator=g)
    batch[-1] += 50.0
    return batch


def test_the_isolated_state_gets_the_largest_reward():
    apt = small_apt()
    rewards = apt.reward(clustered_batch())
    assert rewards.shape == (32,) and torch.isfinite(rewards).all() and (rewards >= 0).all()
    assert int(rewards.argmax()) == 31
    assert rewards[31] > 3 * rewards[:31].max()


def test_distances_are_normalised_by_their_running_mean():
    batch = clustered_batch()
    one, ten = small_apt(), small_apt()
    # A fresh APT normalises by the batch's own mean neighbour distance: scale does not matter.
    torch.testing.assert_close(one.reward(batch), ten.reward(10 * batch), rtol=1e-3, atol=1e-3)
    assert ten.mean_distance == pytest.approx(10 * one.mean_distance, rel=0.01)  # ReLU net: nearly linear here
    # Later batches move the running mean by their share of all distances seen.
    before = one.mean_distance
    one.reward(10 * batch)
    assert one.mean_distance == pytest.approx((before + ten.mean_distance) / 2, rel=1e-4)


def test_relabel_replaces_the_returns_and_keeps_the_rest():
    apt = small_apt()
    bonus = APTBonus(apt)
    batch = {"obs": clustered_batch(), "next_obs": clustered_batch(), "actions": torch.zeros(32, dtype=torch.long),
             "returns": torch.full((32,), 7.0), "dones": torch.zeros(32)}
    out = bonus.relabel(batch)
    assert out["returns"].dtype == batch["returns"].dtype and out["returns"].shape == (32,)
    assert not torch.equal(out["returns"], batch["returns"]) and int(out["returns"].argmax()) == 31
    assert out["obs"] is batch["obs"] and out["dones"] is batch["dones"]
    assert bonus.reward(type("Step", (), {"actions": [0, 1, 2]})()).tolist() == [0.0, 0.0, 0.0]  # nothing at collection


def test_forward_and_inverse_losses_fall_on_a_fixed_batch():
    apt = small_apt(learning_rate=1e-3)
    g = torch.Generator().manual_seed(2)
    obs = torch.randn(64, 8, generator=g)
    actions = torch.randint(0, 4, (64,), generator=g)
    next_obs = obs + torch.nn.functional.one_hot(actions, 8).float()  # the action decides the next state
    batch = {"obs": obs, "next_obs": next_obs, "actions": actions}
    first = apt.update(batch)
    for _ in range(200):
        last = apt.update(batch)
    assert last < 0.2 * first


def test_state_dict_round_trip_gives_the_same_rewards():
    apt = small_apt()
    apt.update({"obs": clustered_batch(), "next_obs": clustered_batch(), "actions": torch.zeros(32, dtype=torch.long)})
    apt.reward(clustered_batch())
    copy = small_apt(seed=5)
    copy.load_state_dict(apt.state_dict())
    assert copy.mean_distance == apt.mean_distance
    torch.testing.assert_close(copy.reward(clustered_batch()), apt.reward(clustered_batch()))


@pytest.mark.parametrize("field", [{"k": 0}, {"rep_dim": 0}, {"learning_rate": 0.0}, {"clip": -1.0}])
def test_bad_settings_are_refused(field):
    with pytest.raises(ValueError, match="APT needs"):
        APTConfig(**field)
