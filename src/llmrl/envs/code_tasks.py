"""Tasks for LM-written code: each one's state as named fields, its success rule, its rewards.

An LM that writes a reward function (Text2Reward, Eureka) or state features (LESR) needs the
environment described as code: what each state quantity means, what the action does, what
success is. A :class:`CodeTask` holds that description (:attr:`CodeTask.source`, shown to the LM
as a class stub, the way Eureka shows pruned environment source), reads the named fields from
the live environment in *this* process (:class:`TaskFields`; only those numbers ever reach the
sandbox), and keeps the task's own success measure, which is the fitness and which the LM's
code never sees.

Rewards compared on every task: ``human`` (the environment's own, written by its authors),
``sparse`` (1 when the success condition holds, :class:`SparseReward`) and the LM's code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

# --- field readers: the unwrapped env -> named floats ---------------------------------------------


def _mountain_car(env: gym.Env) -> dict[str, float]:
    pos, vel = env.unwrapped.state
    return {"position": float(pos), "velocity": float(vel)}


def _pendulum(env: gym.Env) -> dict[str, float]:
    th, thdot = env.unwrapped.state
    th = (th + math.pi) % (2 * math.pi) - math.pi  # 0 is upright
    return {"theta": float(th), "angular_velocity": float(thdot), "cos_theta": math.cos(th),
            "sin_theta": math.sin(th)}  # fmt: skip


def _door_key(env: gym.Env) -> dict[str, float]:
    from minigrid.core.world_object import Door, Goal, Key

    u = env.unwrapped
    found: dict[str, tuple[int, int]] = {}
    door_open = 0.0
    for i, cell in enumerate(u.grid.grid):
        if cell is None:
            continue
        xy = (i % u.grid.width, i // u.grid.width)
        if isinstance(cell, Key):
            found["key"] = xy
        elif isinstance(cell, Door):
            found["door"], door_open = xy, float(cell.is_open)
        elif isinstance(cell, Goal):
            found["goal"] = xy
    ax, ay = (int(v) for v in u.agent_pos)
    has_key = float(isinstance(u.carrying, Key))
    kx, ky = (ax, ay) if has_key else found.get("key", (ax, ay))
    return {"agent_x": ax, "agent_y": ay, "agent_dir": int(u.agent_dir), "has_key": has_key, "door_open": door_open,
            "key_x": kx, "key_y": ky, "door_x": found["door"][0], "door_y": found["door"][1],
            "goal_x": found["goal"][0], "goal_y": found["goal"][1]}  # fmt: skip


# --- success rules: (fields after the step, terminated, env reward, the episode so far) -> bool ---------


def _reached_flag(fields: dict[str, float], terminated: bool, reward: float, streak: int) -> bool:
    return terminated and fields["position"] >= 0.45


def _upright(fields: dict[str, float]) -> bool:
    return abs(fields["theta"]) < 0.3


def _upright_at_the_end(fields: dict[str, float], terminated: bool, reward: float, streak: int) -> bool:
    return streak >= 20  # held upright for the episode's last 20 steps


def _reached_goal(fields: dict[str, float], terminated: bool, reward: float, streak: int) -> bool:
    return terminated and reward > 0


@dataclass(frozen=True)
class CodeTask:
    """One task for LM-written code. ``ppo`` are the trainer's settings, the same for every reward."""

    name: str
    env_id: str
    source: str
    """the environment as the LM reads it: a class stub with each field's meaning and range"""
    read: Callable[[gym.Env], dict[str, float]]
    success: Callable[[dict[str, float], bool, float, int], bool]
    """(fields, terminated, env reward, steps the sparse condition has held) -> success at episode end"""
    sparse_holds: Callable[[dict[str, float], bool, float], bool]
    """when the sparse reward pays 1"""
    ppo: dict[str, Any] = field(default_factory=dict)
    n_envs: int = 8
    flat_image: bool = False
    """MiniGrid: the policy sees its 7x7 view flattened"""

    @property
    def field_names(self) -> tuple[str, ...]:
        env = self.make()
        env.reset(seed=0)
        names = tuple(self.read(env))
        env.close()
        return names

    def make(self, **kwargs: Any) -> gym.Env:
        if self.env_id.startswith("MiniGrid"):
            import minigrid  # noqa: F401 - registers the ids

        return gym.make(self.env_id, **kwargs)

    def policy_env(self, reward: str = "human", **kwargs: Any) -> gym.Env:
        """The environment as the learner sees it, with :class:`TaskFields` inside; ``reward`` is
        ``human`` (the environment's own) or ``sparse`` (LM code replaces it on the vector env)."""
        if reward not in ("human", "sparse"):
            raise ValueError(f"reward must be 'human' or 'sparse', got {reward!r}")
        env: gym.Env = TaskFields(self.make(**kwargs), self)
        if reward == "sparse":
            env = SparseReward(env)
        if self.flat_image:
            from minigrid.wrappers import ImgObsWrapper

            env = gym.wrappers.FlattenObservation(ImgObsWrapper(env))
        return env


class TaskFields(gym.Wrapper):
    """Puts the task's named fields in ``info["fields"]`` (after reset and every step) and the
    task's verdict in ``info["success"]`` at the end of every episode."""

    def __init__(self, env: gym.Env, task: CodeTask) -> None:
        super().__init__(env)
        self.task = task
        self.streak = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.streak = 0
        info["fields"] = self.task.read(self.env)
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        fields = self.task.read(self.env)
        info["fields"] = fields
        self.streak = self.streak + 1 if self.task.sparse_holds(fields, terminated, float(reward)) else 0
        info["sparse"] = float(self.task.sparse_holds(fields, terminated, float(reward)))
        if terminated or truncated:
            info["success"] = bool(self.task.success(fields, terminated, float(reward), self.streak))
        return obs, reward, terminated, truncated, info


def _sparse_flag(fields: dict[str, float], terminated: bool, reward: float) -> bool:
    return terminated and fields["position"] >= 0.45


def _sparse_goal(fields: dict[str, float], terminated: bool, reward: float) -> bool:
    return terminated and reward > 0


TASKS: dict[str, CodeTask] = {
    t.name: t
    for t in (
        CodeTask(
            "mountain-car", "MountainCarContinuous-v0",
            '''class MountainCarContinuous:
    """A car sits in a valley between two hills. Its engine is too weak to drive straight up the
    right hill, so it must rock back and forth to build momentum. Goal: reach the flag on top of the
    right hill (position >= 0.45) as fast as possible, using little engine force."""
    # state s (and next state s_next), a dict of floats:
    #   s["position"]: x position of the car, in [-1.2, 0.6]; the valley bottom is near -0.52
    #   s["velocity"]: velocity, in [-0.07, 0.07]; positive moves right, toward the flag
    # action a: a numpy array of 1 float, a[0] in [-1, 1], the engine force (positive pushes right)
    # an episode ends when the car reaches the flag, or after 999 steps
''',
            _mountain_car, _reached_flag, _sparse_flag,
            ppo=dict(n_steps=256, batch_size=256, n_epochs=10, learning_rate=3e-4, gamma=0.99, gae_lambda=0.95,
                     ent_coef=0.0, use_sde=True, sde_sample_freq=4),
        ),
        CodeTask(
            "pendulum", "Pendulum-v1",
            '''class Pendulum:
    """A pendulum hangs from a frictionless pivot; a motor applies torque to it. The motor is too
    weak to lift it straight up, so it must swing. Goal: swing the pendulum up and keep it balanced
    upright (theta near 0) with little torque."""
    # state s (and next state s_next), a dict of floats:
    #   s["theta"]: angle from upright in radians, in [-pi, pi]; 0 is straight up, +-pi straight down
    #   s["angular_velocity"]: in [-8, 8] radians per second
    #   s["cos_theta"], s["sin_theta"]: cos and sin of theta
    # action a: a numpy array of 1 float, a[0] in [-2, 2], the torque
    # an episode lasts 200 steps
''',
            _pendulum, _upright_at_the_end, lambda f, t, r: _upright(f),
            ppo=dict(n_steps=512, batch_size=256, n_epochs=10, learning_rate=1e-3, gamma=0.9, gae_lambda=0.95,
                     ent_coef=0.0, use_sde=True, sde_sample_freq=4),
        ),
        CodeTask(
            "door-key", "MiniGrid-DoorKey-5x5-v0",
            '''class DoorKey:
    """A 5x5 grid world split by a wall with a locked door. The agent must pick up the key, open the
    door with it, and walk to the green goal square in the other room, in as few steps as possible."""
    # state s (and next state s_next), a dict of numbers (grid cells, x to the right, y down):
    #   s["agent_x"], s["agent_y"]: the agent's cell;  s["agent_dir"]: 0 right, 1 down, 2 left, 3 up
    #   s["has_key"]: 1.0 when the agent carries the key, else 0.0
    #   s["door_open"]: 1.0 when the door is open, else 0.0
    #   s["key_x"], s["key_y"]: the key's cell (the agent's cell while it carries the key)
    #   s["door_x"], s["door_y"]: the door's cell;  s["goal_x"], s["goal_y"]: the goal's cell
    # action a: an int: 0 turn left, 1 turn right, 2 move forward, 3 pick up, 4 drop, 5 toggle (open
    #   the door in front), 6 done
    # an episode ends at the goal, or after 250 steps
''',
            _door_key, _reached_goal, _sparse_goal,
            ppo=dict(n_steps=128, batch_size=256, n_epochs=4, learning_rate=2.5e-4, gamma=0.99, gae_lambda=0.95,
                     ent_coef=0.01),
            flat_image=True,
        ),
    )
}


class SparseReward(gym.Wrapper):
    """The task's sparse reward in place of the environment's: 1 when the success condition holds."""

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, _, terminated, truncated, info = self.env.step(action)
        return obs, float(info["sparse"]), terminated, truncated, info


def get_task(name: str) -> CodeTask:
    if name not in TASKS:
        raise ValueError(f"unknown code task {name!r}: choose from {', '.join(TASKS)}")
    return TASKS[name]


def stack_fields(rows: list[dict[str, float]]) -> dict[str, np.ndarray]:
    """A list of field dicts -> one float64 array per field (the sandbox's batch format)."""
    return {k: np.array([r[k] for r in rows], dtype=np.float64) for k in rows[0]}


# --- state tasks (LESR): the observation vector, each dimension described ---------------------------------


@dataclass(frozen=True)
class StateTask:
    """A task whose observation vector the LM extends with features of its own (LESR)."""

    name: str
    env_id: str
    source: str
    """the task and each observation dimension, as the LM reads them"""
    dims: int
    learning_starts: int = 1000

    def make(self, **kwargs: Any) -> gym.Env:
        return gym.make(self.env_id, **kwargs)


STATE_TASKS: dict[str, StateTask] = {
    t.name: t
    for t in (
        StateTask("pendulum", "Pendulum-v1", '''class Pendulum:
    """Swing a pendulum up and keep it upright with little torque (reward: -(angle^2 + 0.1 velocity^2 +
    0.001 torque^2) per step, 200 steps)."""
    # s is a numpy array of 3 floats:
    #   s[0]: cos(theta), theta the angle from upright (cos = 1 when upright)
    #   s[1]: sin(theta)
    #   s[2]: angular velocity, in [-8, 8] radians per second
    # action: torque in [-2, 2]
''', 3),
        StateTask("inverted-double-pendulum", "InvertedDoublePendulum-v5", '''class InvertedDoublePendulum:
    """A cart carries two poles, one on top of the other. Move the cart to keep both poles upright
    (reward: 9.1 per step alive minus the tip's distance from the top and velocity penalties; the
    episode ends when the tip falls below height 1, or after 1000 steps)."""
    # s is a numpy array of 9 floats:
    #   s[0]: cart position (m)
    #   s[1]: sin of the first pole's angle from vertical;  s[2]: sin of the second pole's angle
    #         relative to the first
    #   s[3]: cos of the first pole's angle;  s[4]: cos of the second pole's relative angle
    #   s[5]: cart velocity;  s[6]: first pole's angular velocity;  s[7]: second pole's angular velocity
    #   s[8]: constraint force on the cart
    # poles of length 0.6 each; action: force on the cart in [-1, 1]
''', 9),
        StateTask("reacher", "Reacher-v5", '''class Reacher:
    """A two-joint arm in a plane must bring its fingertip to a random target (reward: minus the
    fingertip-target distance minus a control cost, 50 steps)."""
    # s is a numpy array of 10 floats:
    #   s[0], s[1]: cos of joint angles 1 and 2;  s[2], s[3]: sin of joint angles 1 and 2
    #   s[4], s[5]: target x, y
    #   s[6], s[7]: angular velocities of joints 1 and 2
    #   s[8], s[9]: fingertip x, y minus target x, y
    # links of length 0.1 and 0.11; actions: two joint torques in [-1, 1]
''', 10, learning_starts=500),
    )
}


def get_state_task(name: str) -> StateTask:
    if name not in STATE_TASKS:
        raise ValueError(f"unknown state task {name!r}: choose from {', '.join(STATE_TASKS)}")
    return STATE_TASKS[name]
