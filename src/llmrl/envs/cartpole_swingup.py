"""Continuous cart-pole swing-up: the task of the PETS paper's cartpole (Chua et al. 2018), on the
cart-pole physics of mbrl-lib's ``cartpole_continuous``.

Facts checked in mbrl-lib (github.com/facebookresearch/mbrl-lib, MIT; nothing copied):

* ``mbrl/env/cartpole_continuous.py`` (the env of its ``pets_cartpole`` config) is Barto's
  cart-pole with a continuous action a ∈ [−1, 1] scaling a 10 N force: gravity 9.8, cart 1.0 kg,
  pole 0.1 kg, pole half-length 0.5 m, Euler steps of 0.02 s. It is a *balance* task there: the
  pole starts upright (±0.05) and the episode ends past 12° or |x| > 2.4, reward 1 per step.
* The PETS paper's cartpole (mbrl-lib ``pets_cartpole.py``, config ``pets_cartpole_paper_version``)
  is the *swing-up*: the pole starts hanging down with N(0, 0.1) noise on positions and velocities,
  nothing terminates, trials last 200 steps, and the reward is
  exp(−‖tip − (0, L)‖² / L²) − 0.01‖a‖², L the pole length: 1 when the tip is straight above the
  track's origin, falling off with the tip's squared distance from there.

This env joins the two: cartpole_continuous's equations, constants and action scale, the
swing-up start and the tip reward (L = 1 m, the full pole). One env step holds the action for 4
Euler steps of 0.02 s, so that mbrl-lib's 15-step planning horizon spans 1.2 s — the span of the
PETS paper's own cartpole plans (30 steps of 0.04 s). With 0.02 s steps a 15-step plan sees
0.3 s, and CEM on the true dynamics never swings the pole up; with 0.08 s it does in about 20
steps (return ≈ 185 of 200). θ = 0 is upright, so the pole starts at θ ≈ π. The
observation is (x, ẋ, cos θ, sin θ, θ̇) — θ itself winds past ±π as the pole swings, which is why
the PETS paper feeds sin/cos to its model. :func:`tip_reward` and :func:`dynamics` work on numpy
arrays batched over leading dimensions; ``llmrl.rl.mbrl`` has the torch versions its planner uses.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

GRAVITY = 9.8
MASS_CART = 1.0
MASS_POLE = 0.1
HALF_LENGTH = 0.5  # m; the pole is 2 × this long
POLE_LENGTH = 2 * HALF_LENGTH
FORCE_MAG = 10.0  # N at |a| = 1
DT = 0.02  # s per Euler step (cartpole_continuous's tau)
SUBSTEPS = 4  # Euler steps per env step: 0.08 s of control interval
ACTION_COST = 0.01
START_NOISE = 0.1  # std of the start state around (0, 0, π, 0), as the PETS cartpole
TRIAL_LENGTH = 200


def dynamics(state: np.ndarray, action: np.ndarray) -> np.ndarray:
    """One Euler step of the cart-pole, state (x, ẋ, θ, θ̇) and action in [−1, 1] (clipped), both
    batched over leading dimensions (Barto et al. 1983 equations, as Gymnasium's CartPole)."""
    x, x_dot, theta, theta_dot = np.moveaxis(np.asarray(state, np.float64), -1, 0)
    force = FORCE_MAG * np.clip(np.asarray(action, np.float64)[..., 0], -1.0, 1.0)
    cos, sin = np.cos(theta), np.sin(theta)
    total_mass = MASS_CART + MASS_POLE
    temp = (force + MASS_POLE * HALF_LENGTH * theta_dot**2 * sin) / total_mass
    theta_acc = (GRAVITY * sin - cos * temp) / (HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * cos**2 / total_mass))
    x_acc = temp - MASS_POLE * HALF_LENGTH * theta_acc * cos / total_mass
    return np.stack([x + DT * x_dot, x_dot + DT * x_acc, theta + DT * theta_dot, theta_dot + DT * theta_acc], -1)


def observe(state: np.ndarray) -> np.ndarray:
    """(x, ẋ, θ, θ̇) → the observation (x, ẋ, cos θ, sin θ, θ̇)."""
    x, x_dot, theta, theta_dot = np.moveaxis(np.asarray(state), -1, 0)
    return np.stack([x, x_dot, np.cos(theta), np.sin(theta), theta_dot], -1)


def tip_reward(next_obs: np.ndarray, action: np.ndarray) -> np.ndarray:
    """exp(−‖tip − (0, L)‖² / L²) − 0.01‖a‖² of observations (x, ẋ, cos θ, sin θ, θ̇)."""
    x, cos, sin = next_obs[..., 0], next_obs[..., 2], next_obs[..., 3]
    tip_x, tip_y = x + POLE_LENGTH * sin, POLE_LENGTH * cos
    squared_distance = tip_x**2 + (tip_y - POLE_LENGTH) ** 2
    return np.exp(-squared_distance / POLE_LENGTH**2) - ACTION_COST * np.sum(np.square(action), -1)


class ContinuousCartPoleSwingUp(gym.Env):
    """Swing the pole up from hanging down and hold it there; see the module docstring.

    Registered as ``llmrl/ContinuousCartPoleSwingUp-v0`` with 200-step episodes (16 s; truncated,
    never terminated). Action: one force in [−1, 1] (×10 N), held for 0.08 s. Observation:
    (x, ẋ, cos θ, sin θ, θ̇).
    """

    metadata: dict[str, Any] = {"render_modes": [], "render_fps": round(1 / (DT * SUBSTEPS))}

    def __init__(self) -> None:
        big = np.finfo(np.float32).max  # unbounded, as cartpole_continuous (a finite bound keeps check_env quiet)
        high = np.array([big, big, 1.0, 1.0, big], np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.state = np.zeros(4)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.state = np.array([0.0, 0.0, np.pi, 0.0]) + self.np_random.normal(0.0, START_NOISE, 4)
        return observe(self.state).astype(np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        action = np.clip(np.asarray(action, np.float64).reshape(1), -1.0, 1.0)
        for _ in range(SUBSTEPS):
            self.state = dynamics(self.state, action)
        obs = observe(self.state)
        return obs.astype(np.float32), float(tip_reward(obs, action)), False, False, {}
