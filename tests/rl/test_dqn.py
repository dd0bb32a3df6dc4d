"""DQN: n-step replay folding, the (double) TD target, encoders, checkpoints, and learning CartPole."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmrl.rl.dqn import (
    DQN,
    ConvEncoder,
    DQNConfig,
    GridEncoder,
    MLPEncoder,
    NStepReplay,
    QNetwork,
    epsilon,
    gradient_steps,
    target_sync_due,
)

torch.set_num_threads(1)

NO = np.array([False])
YES = np.array([True])


def one_env_replay(n_step: int = 3, gamma: float = 0.5) -> NStepReplay:
    return NStepReplay(100, (1,), np.float32, n_envs=1, n_step=n_step, gamma=gamma)


def step(replay: NStepReplay, s: float, a: int, r: float, s_next: float, term=NO, trunc=NO) -> None:
    """One step of a single env whose observation is the number s."""
    replay.add(np.array([[s]], np.float32), np.array([a]), np.array([r]), np.array([[s_next]], np.float32), term, trunc)


def stored(replay: NStepReplay) -> list[tuple]:
    """(s, a, R, s', done, discount) of every stored transition, oldest first."""
    return [
        (replay.obs[i, 0], replay.actions[i], replay.returns[i], replay.next_obs[i, 0], replay.dones[i],
         replay.discounts[i])  # fmt: skip
        for i in range(len(replay))
    ]


# --------------------------------------------------------------------------- n-step replay
def test_nstep_return_sums_n_discounted_rewards_and_stores_the_state_n_steps_later():
    replay = one_env_replay(n_step=3, gamma=0.5)
    step(replay, 0, 0, 1.0, 1)
    step(replay, 1, 1, 2.0, 2)
    assert len(replay) == 0  # nothing leaves before the window holds n steps
    step(replay, 2, 0, 3.0, 3)
    step(replay, 3, 1, 4.0, 4)
    assert stored(replay) == [
        (0, 0, 1 + 0.5 * 2 + 0.25 * 3, 3, 0.0, 0.125),
        (1, 1, 2 + 0.5 * 3 + 0.25 * 4, 4, 0.0, 0.125),
    ]


def test_termination_flushes_shorter_returns_with_done_set():
    replay = one_env_replay(n_step=3, gamma=0.5)
    step(replay, 0, 0, 1.0, 1)
    step(replay, 1, 1, 2.0, 99, term=YES)  # 99: the final observation of the episode
    assert stored(replay) == [
        (0, 0, 1 + 0.5 * 2, 99, 1.0, 0.25),
        (1, 1, 2, 99, 1.0, 0.5),
    ]
    # The next episode starts with an empty window: its rewards never mix with the last one's.
    step(replay, 10, 0, 5.0, 11)
    step(replay, 11, 0, 5.0, 12)
    step(replay, 12, 0, 5.0, 13)
    assert stored(replay)[-1] == (10, 0, 5 + 2.5 + 1.25, 13, 0.0, 0.125)


def test_truncation_flushes_without_done_and_bootstraps_from_the_given_final_obs():
    replay = one_env_replay(n_step=3, gamma=0.5)
    step(replay, 0, 0, 1.0, 1)
    step(replay, 1, 0, 1.0, 2)
    step(replay, 2, 0, 1.0, 77, trunc=YES)
    assert stored(replay) == [
        (0, 0, 1.75, 77, 0.0, 0.125),
        (1, 0, 1.5, 77, 0.0, 0.25),
        (2, 0, 1.0, 77, 0.0, 0.5),
    ]


def test_each_env_folds_its_own_rewards():
    replay = NStepReplay(100, (1,), np.float32, n_envs=2, n_step=2, gamma=0.5)

    def add(s, r, s_next, term):
        replay.add(np.array(s, np.float32)[:, None], np.array([0, 1]), np.array(r, np.float32),
                   np.array(s_next, np.float32)[:, None], np.array(term), np.array([False, False]))  # fmt: skip

    add([0, 100], [1.0, 10.0], [1, 101], [False, False])
    add([1, 101], [2.0, 20.0], [-1, 102], [True, False])  # env 0 ends, env 1 goes on
    add([50, 102], [3.0, 30.0], [51, 103], [False, False])  # env 0 restarted at 50
    rows = stored(replay)
    env1 = [row for row in rows if row[1] == 1]
    env0 = [row for row in rows if row[1] == 0]
    assert env0 == [(0, 0, 2.0, -1, 1.0, 0.25), (1, 0, 2.0, -1, 1.0, 0.5)]
    assert env1 == [(100, 1, 20.0, 102, 0.0, 0.25), (101, 1, 35.0, 103, 0.0, 0.25)]
    assert len(replay.windows[0]) == 1  # env 0's new episode has one pending step


def test_replay_overwrites_the_oldest_transitions_when_full():
    replay = NStepReplay(3, (1,), np.float32, n_envs=1, n_step=1, gamma=0.9)
    for s in range(5):
        step(replay, s, 0, float(s), s + 1)
    assert len(replay) == 3
    assert sorted(replay.obs[:, 0].tolist()) == [2, 3, 4]


def test_replay_state_dict_round_trip_keeps_arrays_and_pending_windows():
    rng = np.random.default_rng(0)
    a = NStepReplay(50, (4,), np.uint8, n_envs=2, n_step=3, gamma=0.9, goal_dim=3)

    def add(buf, data):
        buf.add(*data)

    def random_step():
        obs = rng.integers(0, 9, (2, 4), dtype=np.uint8)
        return (obs, rng.integers(0, 5, 2), rng.normal(size=2), obs + 1, rng.random(2) < 0.2, rng.random(2) < 0.1,
                rng.normal(size=(2, 3)), rng.normal(size=(2, 3)))  # fmt: skip

    for _ in range(20):
        add(a, random_step())
    assert any(a.windows)  # some steps are pending when the state is saved
    b = NStepReplay(50, (4,), np.uint8, n_envs=2, n_step=3, gamma=0.9, goal_dim=3)
    b.load_state_dict(a.state_dict())
    for _ in range(10):  # both continue identically, pending windows included
        data = random_step()
        add(a, data)
        add(b, data)
    assert len(a) == len(b)
    for k in ("obs", "next_obs", "actions", "returns", "dones", "discounts", "goals", "next_goals"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    batch_a, batch_b = a.sample(8, np.random.default_rng(1)), b.sample(8, np.random.default_rng(1))
    assert batch_a["goals"].dtype == torch.float32 and batch_a["obs"].dtype == torch.uint8
    for k in batch_a:
        assert torch.equal(batch_a[k], batch_b[k])
    wrong = NStepReplay(40, (4,), np.uint8, n_envs=2, n_step=3, gamma=0.9, goal_dim=3)
    with pytest.raises(ValueError, match="capacity"):
        wrong.load_state_dict(a.state_dict())


# --------------------------------------------------------------------------- schedules and config
def test_epsilon_decays_linearly_then_stays_at_eps_end():
    c = DQNConfig(eps_start=1.0, eps_end=0.1, eps_decay=1000)
    assert epsilon(c, 0) == 1.0
    assert epsilon(c, 500) == pytest.approx(0.55)
    assert epsilon(c, 1000) == pytest.approx(0.1)
    assert epsilon(c, 10**9) == pytest.approx(0.1)


def test_gradient_steps_carry_the_remainder_between_vector_steps():
    c = DQNConfig(train_frequency=4)
    carry, owed = 0, []
    for _ in range(4):
        n, carry = gradient_steps(c, 6, carry)
        owed.append(n)
    assert owed == [1, 2, 1, 2]  # 24 transitions, 6 steps
    assert gradient_steps(DQNConfig(train_frequency=1), 8) == (8, 0)


def test_target_sync_is_due_once_per_crossed_multiple():
    c = DQNConfig(target_update=100)
    due = [t for t in range(8, 1000, 8) if target_sync_due(c, t - 8, t)]
    assert due == [104, 200, 304, 400, 504, 600, 704, 800, 904]


@pytest.mark.parametrize(
    "kwargs, field",
    [(dict(n_step=0), "n_step"), (dict(gamma=1.5), "gamma"), (dict(eps_end=0.5, eps_start=0.1), "eps_end"),
     (dict(buffer_size=10), "buffer_size"), (dict(max_grad_norm=0), "max_grad_norm")],
)  # fmt: skip
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DQNConfig(**kwargs)


# --------------------------------------------------------------------------- networks
def test_grid_encoder_one_hots_the_map_and_scales_the_extras():
    enc = GridEncoder((9, 7), n_classes=19, n_extra=16, extra_scale=9.0, hidden_sizes=(32,))
    rng = np.random.default_rng(0)
    obs = np.concatenate([rng.integers(0, 19, (5, 63)), rng.integers(0, 10, (5, 16))], axis=1).astype(np.uint8)
    x = enc.one_hot(torch.from_numpy(obs))
    assert x.shape == (5, 63 * 19 + 16)
    ids = x[:, : 63 * 19].reshape(5, 63, 19)
    assert torch.equal(ids.sum(-1), torch.ones(5, 63))
    assert torch.equal(ids.argmax(-1), torch.from_numpy(obs[:, :63]).long())
    assert torch.allclose(x[:, 63 * 19 :], torch.from_numpy(obs[:, 63:]).float() / 9)
    assert enc(torch.from_numpy(obs)).shape == (5, enc.out_dim) == (5, 32)
    with pytest.raises(ValueError, match="79"):
        enc(torch.from_numpy(obs[:, :63]))


def test_conv_encoder_maps_64x64_images_to_256_features():
    enc = ConvEncoder((64, 64, 3))
    obs = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    assert enc(obs).shape == (2, 256) == (2, enc.out_dim)
    assert torch.equal(enc(obs), enc(obs.reshape(2, -1)))  # flat images are reshaped to HWC


def test_goal_conditioned_q_values_depend_on_the_goal():
    torch.manual_seed(0)
    q = QNetwork(GridEncoder((3, 3), 4, n_extra=2, hidden_sizes=(16,)), n_actions=5, goal_dim=384)
    obs = torch.zeros(2, 11, dtype=torch.uint8)
    goals = torch.randn(2, 384)
    out = q(obs, goals)
    assert out.shape == (2, 5)
    assert not torch.allclose(out[0], out[1])  # same observation, different goals
    with pytest.raises(ValueError, match="goal"):
        q(obs)


def test_dueling_heads_give_q_as_value_plus_centred_advantage():
    torch.manual_seed(0)
    config = DQNConfig(dueling=True, head_hidden=16, head_layers=2)
    q = QNetwork.from_config(GridEncoder((3, 3), 4, n_extra=2, hidden_sizes=(16,)), 5, config)
    assert sum(isinstance(m, torch.nn.Linear) for m in q.value.modules()) == 3  # two hidden layers, then V
    obs = torch.randint(0, 4, (3, 11), dtype=torch.uint8)
    features = q.encoder(obs)
    torch.testing.assert_close(q(obs).mean(dim=1), q.value(features).squeeze(1))  # mean A is removed
    advantage = q.head(features)
    torch.testing.assert_close(q(obs) - q(obs).mean(1, keepdim=True), advantage - advantage.mean(1, keepdim=True))


def test_goal_conditioned_dqn_updates_from_goal_replay():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    config = DQNConfig(batch_size=4, buffer_size=16)
    agent = DQN(QNetwork(GridEncoder((3, 3), 4, hidden_sizes=(16,)), 3, goal_dim=8), config)
    replay = NStepReplay(16, (9,), np.uint8, n_envs=2, n_step=3, gamma=0.99, goal_dim=8)
    goals = rng.normal(size=(2, 8))
    for _ in range(6):
        obs = rng.integers(0, 4, (2, 9), dtype=np.uint8)
        a = agent.act(obs, rng, 0.5, goals)
        replay.add(obs, a, np.ones(2), obs, np.zeros(2, bool), np.zeros(2, bool), goals, goals)
    stats = agent.update(replay.sample(4, rng))
    assert set(stats) == {"loss", "q_mean", "td_abs"} and all(np.isfinite(list(stats.values())))
    with pytest.raises(ValueError, match="goal-conditioned"):
        agent.act(obs, rng, 0.0)  # the network reads goals: acting without them is refused


# --------------------------------------------------------------------------- the learner
def hand_set_dqn(double: bool) -> DQN:
    """Observation s (one number). Online Q(s) = (s, 2s), target Q(s) = (3s, s) for s > 0, so the
    online argmax (action 1) and the target argmax (action 0) differ."""
    q = QNetwork(MLPEncoder(1, ()), n_actions=2, head_hidden=2)
    with torch.no_grad():
        q.head[0].weight.copy_(torch.ones(2, 1))
        q.head[0].bias.zero_()
        q.head[2].bias.zero_()
        q.head[2].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    agent = DQN(q, DQNConfig(double=double))
    with torch.no_grad():
        agent.target.head[2].weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 1.0]]))
    return agent


def test_double_dqn_target_values_the_online_argmax_with_the_target_net():
    batch = {
        "returns": torch.tensor([0.5, 0.5]),
        "next_obs": torch.tensor([[1.0], [1.0]]),
        "discounts": torch.tensor([0.9, 0.9]),
        "dones": torch.tensor([0.0, 1.0]),
    }
    # Double: a' = argmax online = 1, Q_target(s', 1) = 1.  Vanilla: max target = 3.
    assert torch.allclose(hand_set_dqn(double=True).td_targets(batch), torch.tensor([0.5 + 0.9 * 1, 0.5]))
    assert torch.allclose(hand_set_dqn(double=False).td_targets(batch), torch.tensor([0.5 + 0.9 * 3, 0.5]))


def test_act_is_greedy_at_epsilon_zero_and_uniform_at_one():
    agent = hand_set_dqn(double=True)
    rng = np.random.default_rng(0)
    obs = np.ones((1000, 1), np.float32)
    assert (agent.act(obs, rng, 0.0) == 1).all()
    assert abs((agent.act(obs, rng, 1.0) == 1).mean() - 0.5) < 0.06


def test_updates_on_a_fixed_batch_shrink_the_td_error():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    agent = DQN(QNetwork(MLPEncoder(4, (32,)), 2, head_hidden=32), DQNConfig(learning_rate=1e-3))
    batch = {
        "obs": torch.randn(32, 4), "actions": torch.randint(0, 2, (32,)),
        "returns": torch.from_numpy(rng.normal(size=32)).float(),
        "next_obs": torch.randn(32, 4), "dones": torch.ones(32), "discounts": torch.full((32,), 0.99),
    }  # fmt: skip
    first = agent.update(batch)["td_abs"]
    for _ in range(200):
        last = agent.update(batch)["td_abs"]
    assert last < 0.3 * first


def test_dqn_state_dict_round_trip_restores_nets_and_optimiser():
    def make(seed):
        torch.manual_seed(seed)
        return DQN(QNetwork(MLPEncoder(4, (16,)), 3, head_hidden=16), DQNConfig(learning_rate=1e-2))

    torch.manual_seed(0)
    batch = {
        "obs": torch.randn(8, 4), "actions": torch.randint(0, 3, (8,)), "returns": torch.randn(8),
        "next_obs": torch.randn(8, 4), "dones": torch.zeros(8), "discounts": torch.full((8,), 0.9),
    }  # fmt: skip
    a = make(0)
    for _ in range(5):
        a.update(batch)
    b = make(1)
    obs = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    assert not np.array_equal(a.q_values(obs), b.q_values(obs))
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.q_values(obs), b.q_values(obs))
    # Adam's moments came along: the next update is the same in both.
    assert a.update(batch) == b.update(batch)
    np.testing.assert_array_equal(a.q_values(obs), b.q_values(obs))
