"""Continuous-action offline RL (BC, TD3+BC, IQL, CQL) on small datasets whose right answer is known."""

from __future__ import annotations

import csv
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch

from llmrl.data import Episode, EpisodeDataset, Transitions
from llmrl.rl.offline_continuous import (
    PRESETS,
    OfflineContinuousAgent,
    OfflineContinuousConfig,
    evaluate_returns,
    train_offline_continuous,
)

torch.set_num_threads(1)

PENDULUM = dict(action_low=(-2.0,), action_high=(2.0,))
SMALL = dict(hidden_sizes=(64, 64), log_every=50, checkpoint_every=10_000)


def pd_controller(obs: np.ndarray) -> np.ndarray:
    """Pendulum: torque against the angle (sin θ) and the angular velocity, saturated at ±2."""
    cos, sin, theta_dot = obs
    return np.clip([-3.0 * sin - 1.0 * theta_dot], -2.0, 2.0).astype(np.float32)


def swing_up(obs: np.ndarray) -> np.ndarray:
    """Pendulum: pump energy until near the top, then balance with PD (a return of about -150 or better)."""
    cos, sin, theta_dot = obs
    theta = np.arctan2(sin, cos)
    if cos > 0.8:
        return np.clip([-10.0 * theta - 2.0 * theta_dot], -2.0, 2.0).astype(np.float32)
    energy = 0.5 * theta_dot**2 + 10.0 * (cos - 1.0)  # 0 for the pendulum at rest upright
    return np.array([-2.0 * np.sign(theta_dot * energy) if theta_dot else 2.0], np.float32)


class Scripted:
    def __init__(self, controller) -> None:
        self.controller = controller

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.controller(obs)


@pytest.fixture(scope="module")
def pendulum_data() -> Transitions:
    """10 Pendulum episodes (2,000 steps) of the PD controller plus Gaussian noise (σ 0.2), clipped."""
    rng = np.random.default_rng(0)
    env = gym.make("Pendulum-v1")
    episodes = []
    for i in range(10):
        obs, _ = env.reset(seed=i)
        observations, actions, rewards = [obs], [], []
        for _ in range(200):
            a = np.clip(pd_controller(obs) + 0.2 * rng.normal(size=1), -2.0, 2.0).astype(np.float32)
            obs, r, *_ = env.step(a)
            observations.append(obs)
            actions.append(a)
            rewards.append(r)
        episodes.append(Episode(np.array(observations), np.array(actions), rewards, [False] * 200,
                                [False] * 199 + [True], goal=""))  # fmt: skip
    return EpisodeDataset(episodes).transitions()


def one_step_bandit(n: int = 4000, seed: int = 0) -> Transitions:
    """One-step episodes: s ~ U(-1, 1)², reward -(a - s₀)², actions uniform in [-1, 1].

    The best action is s₀; the behaviour's mean action is 0, which is all that BC can learn.
    """
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    actions = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    return Transitions(
        observations=obs, actions=actions, rewards=-((actions[:, 0] - obs[:, 0]) ** 2),
        next_observations=obs.copy(), terminals=np.ones(n, bool), timeouts=np.zeros(n, bool),
        goal_ids=np.zeros(n, np.int64), goals=[""],
    )  # fmt: skip


def train(algo: str, data: Transitions, steps: int, **overrides) -> tuple[OfflineContinuousAgent, list[dict]]:
    rows: list[dict] = []
    config = replace(PRESETS[algo], gradient_steps=steps, **{**SMALL, **overrides})
    agent = train_offline_continuous(config, data, progress=lambda step, row: rows.append(row))
    return agent, rows


# --------------------------------------------------------------------------- learning
def test_bc_imitates_the_data_actions(pendulum_data):
    agent, rows = train("bc", pendulum_data, 300, **PENDULUM)
    mse = float(((agent.act(pendulum_data.observations) - pendulum_data.actions) ** 2).mean())
    assert mse < 0.25 * float(pendulum_data.actions.var())
    assert rows[-1]["actor_loss"] < 0.5 * rows[0]["actor_loss"]


VARIANTS = {  # CORL's options off the default path
    "iql-deterministic": dict(iql_deterministic=True),
    "cql-lagrange": dict(cql_lagrange=True, cql_importance_sample=False, auto_entropy=False, backup_entropy=True),
}


@pytest.mark.parametrize("algo", ["td3_bc", "iql", "cql", "iql-deterministic", "cql-lagrange"])
def test_value_based_losses_are_finite_and_logged(pendulum_data, algo):
    overrides = VARIANTS.get(algo, {})
    agent, rows = train(algo.split("-")[0], pendulum_data, 100, **PENDULUM, batch_size=64, **overrides)
    assert [r["step"] for r in rows] == [50, 100]
    for key in ("actor_loss", "q_data"):
        assert all(np.isfinite(r[key]) for r in rows), (key, rows)
    actions = agent.act(pendulum_data.observations[:50])
    assert actions.shape == (50, 1) and np.all(np.abs(actions) <= 2.0)


@pytest.mark.parametrize("algo", ["td3_bc", "iql"])
def test_value_based_methods_beat_bc_on_random_behaviour(algo):
    """With uniformly random data, BC learns the mean action (0); a learnt Q points to a = s₀."""
    data = one_step_bandit()
    test_obs = np.random.default_rng(1).uniform(-1, 1, (500, 2)).astype(np.float32)

    def mean_reward(agent: OfflineContinuousAgent) -> float:
        return float(-((agent.act(test_obs)[:, 0] - test_obs[:, 0]) ** 2).mean())

    bc, _ = train("bc", data, 300, actor_lr=1e-3)
    agent, _ = train(algo, data, 300, actor_lr=1e-3, critic_lr=1e-3)
    assert mean_reward(agent) > mean_reward(bc) + 0.15, (mean_reward(agent), mean_reward(bc))


def test_cql_values_data_actions_above_random_ones(pendulum_data):
    obs = pendulum_data.observations[::4]
    random_actions = np.random.default_rng(0).uniform(-2, 2, (len(obs), 1)).astype(np.float32)

    def gap(agent: OfflineContinuousAgent) -> float:
        return float((agent.q_values(obs, pendulum_data.actions[::4]) - agent.q_values(obs, random_actions)).mean())

    small = dict(**PENDULUM, hidden_sizes=(32, 32), batch_size=32, critic_lr=1e-3)
    conservative, rows = train("cql", pendulum_data, 300, **small)
    plain, _ = train("cql", pendulum_data, 300, **small, cql_alpha=0.0)
    assert rows[-1]["q_data"] > rows[-1]["q_random"]
    assert gap(conservative) > gap(plain) + 1.0, (gap(conservative), gap(plain))


# --------------------------------------------------------------------------- run folder
def progress_rows(run_dir) -> list[dict]:
    with open(run_dir / "progress.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in ("wall_s", "steps_per_s")} for r in csv.DictReader(f)]


@pytest.mark.parametrize("algo", ["td3_bc", "cql"])
def test_a_killed_run_resumes_bit_exactly(pendulum_data, tmp_path, algo):
    config = replace(PRESETS[algo], **PENDULUM, hidden_sizes=(16, 16), batch_size=32, cql_n_actions=4,
                     gradient_steps=30, log_every=5, checkpoint_every=10)  # fmt: skip
    whole = train_offline_continuous(config, pendulum_data, out_dir=tmp_path / "whole")

    class Killed(Exception):
        pass

    def kill_at_25(step: int, row: dict) -> None:
        if step == 25:  # after the checkpoint at 20 and the rows up to 25
            raise Killed

    with pytest.raises(Killed):
        train_offline_continuous(config, pendulum_data, out_dir=tmp_path / "killed", progress=kill_at_25)
    resumed = train_offline_continuous(config, pendulum_data, out_dir=tmp_path / "killed", resume=True)
    for (k, a), b in zip(whole.nets.state_dict().items(), resumed.nets.state_dict().values()):
        assert torch.equal(a, b), k
    assert progress_rows(tmp_path / "killed") == progress_rows(tmp_path / "whole")
    assert [r["step"] for r in progress_rows(tmp_path / "whole")] == [str(s) for s in range(5, 31, 5)]
    assert (tmp_path / "killed" / "checkpoints" / "latest.pt").exists()

    with pytest.raises(ValueError, match="other data"):
        other = replace(pendulum_data, rewards=pendulum_data.rewards + 1.0)
        train_offline_continuous(config, other, out_dir=tmp_path / "killed", resume=True)


def test_saved_agent_acts_the_same_within_bounds(pendulum_data, tmp_path):
    agent = train_offline_continuous(
        replace(PRESETS["iql"], **{**SMALL, **PENDULUM, "gradient_steps": 20, "log_every": 10}), pendulum_data,
        out_dir=tmp_path / "run", eval_fn=lambda a: np.mean(evaluate_returns(a, "Pendulum-v1", 1, 0)), eval_every=10)
    loaded = OfflineContinuousAgent.load(tmp_path / "run" / "agent.pt")
    obs = pendulum_data.observations[:100]
    assert np.array_equal(agent.act(obs), loaded.act(obs))
    assert agent.act(obs[0]).shape == (1,) and np.all(np.abs(loaded.act(obs * 100)) <= 2.0)
    actions = pendulum_data.actions[:100]
    assert np.array_equal(agent.q_values(obs, actions), loaded.q_values(obs, actions))
    rows = csv.DictReader((tmp_path / "run" / "progress.csv").read_text().splitlines())
    returns = [float(r["eval_return"]) for r in rows]
    assert len(returns) == 2 and all(-2000 < r <= 0 for r in returns)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(algo="sac"), "unknown offline RL algorithm"),
        (dict(action_low=(-1.0, -1.0), action_high=(1.0,)), "one value each per action dimension"),
        (dict(action_low=(1.0,), action_high=(-1.0,)), "low < high"),
        (dict(action_high=(np.inf,)), "finite"),
        (dict(tau=0.0), "tau must lie in"),
        (dict(iql_expectile=1.0), "iql_expectile"),
        (dict(batch_size=0), "batch_size must be at least 1"),
        (dict(actor_lr=-1e-3), "actor_lr must be positive"),
    ],
)
def test_bad_config_says_what_to_fix(overrides, message):
    with pytest.raises(ValueError, match=message):
        OfflineContinuousConfig(**overrides)


def test_bad_data_says_what_to_fix(pendulum_data):
    with pytest.raises(ValueError, match="outside the config's bounds"):
        train_offline_continuous(replace(PRESETS["bc"], gradient_steps=1), pendulum_data)  # default bounds ±1
    with pytest.raises(ValueError, match="3 action bounds but the actions have 1"):
        train_offline_continuous(replace(PRESETS["bc"], action_low=(-2,) * 3, action_high=(2,) * 3), pendulum_data)
    discrete = replace(pendulum_data, actions=np.zeros(len(pendulum_data), np.int64))
    with pytest.raises(ValueError, match="llmrl.rl.offline"):
        train_offline_continuous(replace(PRESETS["bc"], **PENDULUM), discrete)


# --------------------------------------------------------------------------- evaluation
def test_evaluate_returns_ranks_scripted_controllers():
    good = evaluate_returns(Scripted(swing_up), "Pendulum-v1", n_episodes=3, seed=0)
    idle = evaluate_returns(Scripted(lambda obs: np.zeros(1, np.float32)), "Pendulum-v1", n_episodes=3, seed=0)
    assert len(good) == len(idle) == 3
    assert good == evaluate_returns(Scripted(swing_up), "Pendulum-v1", n_episodes=3, seed=0)  # seeded resets
    assert np.mean(good) > -300 and np.mean(good) > np.mean(idle) + 300
