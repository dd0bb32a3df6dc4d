"""PETS (llmrl.rl.mbrl): the ensemble learns known dynamics, the planners find known optima, the
swing-up env is a valid Gymnasium env, and a killed run resumes exactly."""

from __future__ import annotations

import csv
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from llmrl.envs import CARTPOLE_SWINGUP_ID
from llmrl.rl.mbrl import (
    PRESETS,
    ActionPrior,
    CEMPlanner,
    PETSAgent,
    PETSConfig,
    ProbabilisticEnsemble,
    RandomShootingPlanner,
    assign_members,
    cartpole_swingup_reward,
    cartpole_swingup_step,
    fit_ensemble,
    imagine,
    pendulum_reward,
    pendulum_step,
    reacher_reward,
    train_pets,
)

torch.set_num_threads(1)


def ensemble_and_optimiser(obs_dim: int, act_dim: int, seed: int = 0, **kwargs) -> tuple:
    g = torch.Generator().manual_seed(seed)
    model = ProbabilisticEnsemble(obs_dim, act_dim, generator=g, **kwargs)
    return model, torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=3e-5), g


@pytest.fixture(scope="module")
def pendulum_transitions() -> tuple[torch.Tensor, ...]:
    """600 Pendulum-v1 transitions under uniform random torques: (obs, action, next_obs, reward)."""
    env = gym.make("Pendulum-v1")
    env.action_space.seed(0)
    rows = []
    for episode in range(3):
        obs, _ = env.reset(seed=episode)
        for _ in range(200):
            action = env.action_space.sample()
            next_obs, reward, *_ = env.step(action)
            rows.append((obs, action, next_obs, reward))
            obs = next_obs
    return tuple(torch.tensor(np.array(x), dtype=torch.float32) for x in zip(*rows))


def test_nll_and_held_out_error_fall_on_pendulum_transitions(pendulum_transitions):
    obs, action, next_obs, reward = pendulum_transitions
    model, optimiser, g = ensemble_and_optimiser(3, 1, ensemble_size=3, hidden_sizes=(32, 32))
    model.fit_normaliser(torch.cat([obs, action], -1))
    before = model.member_mse(torch.cat([obs, action], -1), next_obs - obs).mean().item()
    fit = fit_ensemble(model, optimiser, obs, action, next_obs, epochs=15, batch_size=64, patience=15,
                       validation_ratio=0.2, generator=g)
    assert fit["epochs"] == 15
    assert fit["train_nll"][-1] < fit["train_nll"][0] - 2.0  # NLL in nats per output, without constants
    assert fit["elite_mse"] < 0.05 * before


def test_ensemble_recovers_a_linear_system_from_deltas_on_normalised_inputs():
    """s' − s = M s + B a (+ a learned reward r = c·a), with state dimensions 1000× apart in scale."""
    g = torch.Generator().manual_seed(1)
    n = 2000
    obs = torch.randn(n, 2, generator=g) * torch.tensor([50.0, 0.05])
    action = torch.rand(n, 1, generator=g) * 2 - 1
    m, b = torch.tensor([[0.02, 20.0], [-0.01, 0.0]]), torch.tensor([[0.5], [1.0]])
    delta = obs @ m.T + action @ b.T
    next_obs, reward = obs + delta, 0.3 * action[:, 0]
    model, optimiser, g = ensemble_and_optimiser(2, 1, ensemble_size=2, hidden_sizes=(32, 32), learned_reward=True)
    fit_ensemble(model, optimiser, obs, action, next_obs, reward, epochs=40, batch_size=128, patience=40,
                 validation_ratio=0.1, generator=g)

    inputs = torch.cat([obs, action], -1)
    assert torch.allclose(model.input_mean, inputs.mean(0, keepdim=True))
    assert torch.allclose(model.input_std, inputs.std(0, keepdim=True))
    test_obs = torch.randn(200, 2, generator=g) * torch.tensor([50.0, 0.05])
    test_action = torch.rand(200, 1, generator=g) * 2 - 1
    mean, _ = model.predict(test_obs, test_action, torch.zeros(200, dtype=torch.long))
    true_delta = test_obs @ m.T + test_action @ b.T
    # The model's mean is the change of state, not the next state, and it is right to a few % of its spread.
    error = (mean[:, :2] - true_delta).abs().mean(0) / true_delta.std(0)
    assert (error < 0.05).all(), error
    assert ((mean[:, 2] - 0.3 * test_action[:, 0]).abs().mean() / (0.3 * test_action).std()) < 0.05


def test_cem_on_the_true_dynamics_swings_the_pendulum_up():
    config = PETSConfig(horizon=15, population=100, cem_iterations=3)
    agent = PETSAgent(pendulum_step, pendulum_reward, config, [-2.0], [2.0])
    env = gym.make("Pendulum-v1")
    env.reset(seed=0)
    env.unwrapped.state = np.array([np.pi, 0.0])  # hanging straight down, at rest
    obs = env.unwrapped._get_obs()
    angles = []
    for _ in range(100):
        obs, *_ = env.step(agent.act(obs))
        angles.append(np.arctan2(obs[1], obs[0]))
    assert np.abs(angles[-20:]).max() < 0.3  # upright and held there after 5 s


def test_the_torch_pendulum_step_is_gymnasiums():
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=3)
    env.action_space.seed(3)
    for _ in range(50):
        action = env.action_space.sample() * 1.5  # also beyond the torque limit, which both clip
        next_obs, *_ = env.step(action)
        predicted = pendulum_step(torch.tensor(obs[None]), torch.tensor(action[None]))[0]
        np.testing.assert_allclose(predicted.numpy(), next_obs, atol=1e-5)
        obs = next_obs


def test_cem_beats_random_shooting_with_the_same_number_of_evaluations():
    target = torch.rand(10, 2, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8

    def objective(candidates: torch.Tensor) -> torch.Tensor:
        return -((candidates - target) ** 2).sum((1, 2))

    low, high = -torch.ones(2), torch.ones(2)
    cem = CEMPlanner(low, high, iterations=5, population=60, elite_ratio=0.1, alpha=0.1)
    shooting = RandomShootingPlanner(low, high, population=300)
    start_mean, start_std = torch.zeros(10, 2), cem.default_std().expand(10, 2)
    cem_values, shooting_values = [], []
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        cem_values.append(objective(cem.plan(objective, start_mean, start_std, g)[None]).item())
        shooting_values.append(objective(shooting.plan(objective, start_mean, start_std, g)[None]).item())
    assert max(cem_values) > -0.5 > min(shooting_values)
    assert np.mean(cem_values) > 0.2 * np.mean(shooting_values)  # values are negative: CEM's error is 5x smaller


@pytest.mark.parametrize("sampling", ["clipped", "truncated"])
def test_cem_samples_stay_inside_the_action_bounds(sampling):
    low, high = torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 1.0])
    planner = CEMPlanner(low, high, population=500, sampling=sampling)
    mean = torch.tensor([[1.9, 0.01]]).expand(4, 2)
    samples = planner.sample(mean, planner.default_std().expand(4, 2), torch.Generator().manual_seed(0))
    assert samples.shape == (500, 4, 2)
    assert (samples >= low).all() and (samples <= high).all()


@pytest.mark.parametrize("propagation", ["ts_inf", "ts1", "expectation"])
def test_trajectory_sampling_keeps_each_ts_inf_particle_on_one_elite(propagation):
    """Member m of a hand-set ensemble moves the state by m + 1 per step, whatever the input."""
    model = ProbabilisticEnsemble(1, 1, ensemble_size=5, hidden_sizes=(4,), num_elites=4)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([[m + 1.0, -30.0] for m in range(5)]).view(5, 1, 2))
    model.elites.copy_(torch.tensor([3, 0, 4, 1]))
    population, particles, horizon = 6, 8, 5
    actions = torch.zeros(population, horizon, 1)
    out = imagine(model, lambda s, a: s[..., 0], torch.zeros(1), actions, particles=particles,
                  propagation=propagation, generator=torch.Generator().manual_seed(0))
    assert out.states.shape == (population, particles, horizon + 1, 1)
    assert out.rewards.shape == (population, particles, horizon)
    assert out.returns().shape == (population,)
    steps = out.states[..., 1:, 0] - out.states[..., :-1, 0]  # [P, R, H]
    if propagation == "expectation":
        assert out.members is None
        assert torch.allclose(steps, torch.full_like(steps, (4 + 1 + 5 + 2) / 4), atol=0.05)
        return
    assert out.members.shape == (population, particles, horizon)
    assert torch.allclose(steps, (model.elites[out.members] + 1).float(), atol=0.05)
    assert torch.equal(torch.bincount(out.members[..., 0].flatten(), minlength=4), torch.full((4,), 12))
    constant = (out.members == out.members[..., :1]).all()
    assert bool(constant) == (propagation == "ts_inf")


def test_member_assignment_is_balanced_and_seeded():
    a = assign_members(20, 5, torch.Generator().manual_seed(0))
    assert torch.equal(torch.bincount(a), torch.full((5,), 4))
    assert torch.equal(a, assign_members(20, 5, torch.Generator().manual_seed(0)))


def test_an_action_prior_starts_the_plan_and_fills_its_tail():
    config = PETSConfig(horizon=5, population=20, cem_iterations=2)
    agent = PETSAgent(pendulum_step, pendulum_reward, config, [-2.0], [2.0])
    prior = np.linspace(-1.5, 1.5, 8, dtype=np.float32)[:, None]
    agent.reset(ActionPrior(mean=prior, std=np.full((8, 1), 0.3, np.float32)))
    mean, std = agent.initial()
    assert torch.equal(mean, torch.as_tensor(prior[:5]))
    assert torch.allclose(std, torch.full((5, 1), 0.3))
    obs = np.array([1.0, 0.0, 0.0], np.float32)
    for t in range(1, 5):
        agent.act(obs)
        mean, std = agent.initial()
        tail = prior[t + 4] if t + 4 < 8 else np.zeros(1, np.float32)  # past the prior: mid-range
        assert torch.equal(mean[:-1], agent.previous_plan[1:]) and torch.equal(mean[-1], torch.as_tensor(tail))
        assert torch.allclose(std[-1], torch.tensor(0.3 if t + 4 < 8 else 2.0))  # default: half the range
    agent.reset()
    assert torch.equal(agent.initial()[0], torch.zeros(5, 1))


def test_the_swingup_env_is_a_valid_gymnasium_env_that_starts_down_and_has_a_torch_twin():
    env = gym.make(CARTPOLE_SWINGUP_ID)
    check_env(env.unwrapped, skip_render_check=True)
    assert env.spec.max_episode_steps == 200
    obs, _ = env.reset(seed=0)
    assert obs[2] < -0.9  # cos θ: hanging down
    env.action_space.seed(0)
    for _ in range(40):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        o, a = torch.tensor(obs[None]), torch.tensor(action[None])
        np.testing.assert_allclose(cartpole_swingup_step(o, a)[0].numpy(), next_obs, atol=1e-4)
        assert cartpole_swingup_reward(torch.tensor(next_obs[None]), a).item() == pytest.approx(reward, abs=1e-5)
        assert not terminated and not truncated
        obs = next_obs
    upright = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]])
    assert cartpole_swingup_reward(upright, torch.zeros(1, 1)).item() == pytest.approx(1.0)


def test_the_reacher_reward_is_gymnasiums_from_the_next_observation():
    env = gym.make("Reacher-v5")
    obs, _ = env.reset(seed=3)
    env.action_space.seed(3)
    for _ in range(20):
        action = env.action_space.sample()
        obs, reward, *_ = env.step(action)
        assert reacher_reward(torch.tensor(obs[None]), torch.tensor(action[None])).item() == pytest.approx(reward)


TINY = PETSConfig(ensemble_size=2, hidden_sizes=(16,), num_elites=2, horizon=4, population=16, cem_iterations=2,
                  particles=2, trial_length=10, env_steps=40, initial_trials=1, model_epochs=2, train_every=5,
                  model_batch_size=32, validation_ratio=0.2)


def progress_rows(folder) -> list[dict[str, str]]:
    with open(folder / "progress.csv", newline="") as f:
        timing = ("wall_s", "steps_per_s", "plan_ms")
        return [{k: v for k, v in row.items() if k not in timing} for row in csv.DictReader(f)]


def test_a_killed_run_resumes_exactly(tmp_path):
    whole = train_pets(TINY, "Pendulum-v1", out_dir=tmp_path / "whole")

    class Killed(Exception):
        pass

    def kill_after_trial_2(trial: int, row: dict) -> None:
        if trial == 2:
            raise Killed

    with pytest.raises(Killed):
        train_pets(TINY, "Pendulum-v1", out_dir=tmp_path / "killed", progress=kill_after_trial_2)
    resumed = train_pets(TINY, "Pendulum-v1", out_dir=tmp_path / "killed", resume=True)
    assert resumed.trial_returns == whole.trial_returns and resumed.trial_env_steps == [10, 20, 30, 40]
    for (k, a), b in zip(whole.agent.model.state_dict().items(), resumed.agent.model.state_dict().values()):
        assert torch.equal(a, b), k
    rows = progress_rows(tmp_path / "whole")
    assert progress_rows(tmp_path / "killed") == rows
    assert [r["random_trial"] for r in rows] == ["1", "0", "0", "0"] and rows[-1]["updates"] == "6"
    assert (tmp_path / "killed" / "done.json").exists()


@pytest.mark.parametrize("change, message", [
    (dict(planner="mppi"), "unknown planner"),
    (dict(propagation="ts2"), "unknown propagation"),
    (dict(num_elites=7), "num_elites .* exceeds ensemble_size"),
    (dict(elite_ratio=0.0), "elite_ratio must lie in"),
    (dict(population=10), "fewer than 2 elites"),
    (dict(alpha=1.0), "alpha must lie in"),
    (dict(horizon=0), "horizon must be at least 1"),
    (dict(validation_ratio=1.0), "validation_ratio"),
])  # fmt: skip
def test_a_bad_config_is_refused_with_the_fix(change, message):
    with pytest.raises(ValueError, match=message):
        replace(PRESETS["cpu"], **change)


def test_planning_needs_a_reward():
    with pytest.raises(ValueError, match="no known reward function .* learned_reward=True"):
        train_pets(PRESETS["cpu"], "MountainCarContinuous-v0")
    model = ProbabilisticEnsemble(3, 1, ensemble_size=2, hidden_sizes=(8,))
    with pytest.raises(ValueError, match="no reward to plan with"):
        PETSAgent(model, None, PRESETS["cpu"], [-2.0], [2.0])
