"""The off-policy loop over a Gymnasium vector env: it learns CartPole; a bonus paid late (batched,
as ELLM's LM labelling does) pays what it would have paid at once, and only delays the updates."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from llmrl.rl.dqn import DQN, DQNConfig, MLPEncoder, NStepReplay, QNetwork
from llmrl.rl.offpolicy import OffPolicyLoop, VectorStep

torch.set_num_threads(1)


def cartpole(n_envs: int) -> gym.vector.VectorEnv:
    return gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(n_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def loop_on_cartpole(config: DQNConfig, n_envs: int, seed: int = 0, **kwargs) -> OffPolicyLoop:
    torch.manual_seed(seed)
    agent = DQN(QNetwork(MLPEncoder(4, config.hidden_sizes), 2, head_hidden=config.hidden_sizes[-1]), config)
    replay = NStepReplay(config.buffer_size, (4,), np.float32, n_envs, config.n_step, config.gamma)
    loop = OffPolicyLoop(cartpole(n_envs), agent, replay, config, np.random.default_rng(seed), **kwargs)
    loop.reset([seed + i for i in range(n_envs)])
    return loop


@pytest.mark.slow
def test_dqn_learns_cartpole():
    """4 vectorised envs, 20k env transitions: the greedy policy balances far longer than random (~22)."""
    config = DQNConfig(learning_rate=1e-3, target_update=500, eps_decay=10_000, learning_starts=1_000,
                       buffer_size=20_000, hidden_sizes=(64, 64))  # fmt: skip
    episodes = []
    loop = loop_on_cartpole(config, 4, on_episode=lambda record, info: episodes.append(record))
    while loop.t < 20_000:
        loop.step()
    loop.envs.close()
    # One update per 4 transitions once the replay holds learning_starts (n-step windows lag a little).
    assert abs(loop.updates - 19_000 / 4) < 60 and episodes and episodes[-1]["env_steps"] <= 20_000

    env, rng, returns = gym.make("CartPole-v1"), np.random.default_rng(1), []
    for episode in range(10):
        o, _ = env.reset(seed=1000 + episode)
        ret, done = 0.0, False
        while not done:
            o, r, term, trunc, _ = env.step(int(loop.agent.act(o[None], rng, 0.0)[0]))
            ret, done = ret + r, term or trunc
        returns.append(ret)
    assert np.mean(returns) > 100, returns


class PoleBonus:
    """A bonus for keeping the pole upright, computed only in ``prepare`` (like an LM call) and
    ready once ``every`` steps wait."""

    def __init__(self, every: int) -> None:
        self.every, self.waiting, self.paid, self.prepared = every, [], {}, 0

    def begin(self, infos):
        pass

    def observe(self, step: VectorStep, next_infos) -> None:
        self.waiting.append(step)

    def ready(self) -> bool:
        return len(self.waiting) >= self.every

    def prepare(self) -> None:
        for step in self.waiting:
            self.paid[step.t] = (0.2 - np.abs(step.next_obs[:, 2])).astype(np.float32)
        self.waiting, self.prepared = [], self.prepared + 1

    def reward(self, step: VectorStep) -> np.ndarray:
        return self.paid.pop(step.t)

    def end_episode(self, i: int) -> None:
        pass

    def learn(self, batch) -> None:
        pass


def run_with_bonus(every: int, learning_starts: int) -> tuple[OffPolicyLoop, list[dict], list[tuple[int, int]]]:
    """600 env steps on 3 CartPoles; returns the loop, its episodes, and (t, updates) after each step."""
    config = DQNConfig(learning_rate=1e-3, learning_starts=learning_starts, batch_size=16, target_update=100,
                       eps_decay=400, buffer_size=1_000, hidden_sizes=(16,))  # fmt: skip
    records, updates = [], []
    loop = loop_on_cartpole(config, 3, bonus=PoleBonus(every), intrinsic_weight=0.5, max_lag=10,
                            on_episode=lambda record, info: records.append(record))
    while loop.t < 600:
        loop.step()
        updates.append((loop.t, loop.updates))
    loop.flush()
    return loop, records, updates


def test_a_bonus_paid_late_pays_what_it_would_pay_at_once():
    # With the policy fixed (no updates yet), waiting changes nothing: same episodes, same replay.
    (eager, eager_eps, _), (lazy, lazy_eps, _) = run_with_bonus(1, 10_000), run_with_bonus(7, 10_000)
    assert lazy.bonus.prepared < eager.bonus.prepared / 5  # far fewer batched calls
    assert eager_eps == lazy_eps and any(r["intrinsic"] != 0 for r in eager_eps)
    np.testing.assert_array_equal(eager.replay.returns, lazy.replay.returns)
    np.testing.assert_array_equal(eager.replay.obs, lazy.replay.obs)


def test_while_learning_a_late_bonus_only_delays_updates_by_at_most_max_lag_steps():
    # The agent acts with the network it has: updates owed by waiting steps come when they are
    # stored, so the policy lags the eager one by at most max_lag vector steps (here 7 < 10).
    _, _, eager = run_with_bonus(1, 64)
    lazy_loop, _, lazy = run_with_bonus(7, 64)
    owed = dict(eager)  # env steps -> updates made by then when every step is paid at once
    for t, n in lazy:
        caught_up_with = max(s for s in owed if s <= t and owed[s] <= n)
        assert n <= owed[t] and t - caught_up_with <= 7 * 3  # 7 vector steps of 3 envs
    assert lazy_loop.updates > 0


def test_a_checkpoint_needs_the_waiting_steps_stored_first():
    config = DQNConfig(learning_starts=10_000, buffer_size=100, hidden_sizes=(8,))
    loop = loop_on_cartpole(config, 2, bonus=PoleBonus(5), max_lag=5)
    loop.step()
    with pytest.raises(RuntimeError, match="flush"):
        loop.state_dict()
    loop.flush()
    state = loop.state_dict()
    assert state["t"] == 2 and len(loop.replay) == 0  # one step of 3-step windows: nothing emitted yet
