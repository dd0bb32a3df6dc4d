"""CLEVR-Robot: push five balls on a table with MuJoCo physics, towards a language goal.

The environment of KALM (Pang et al. 2024, after Jiang et al. 2019's CLEVR-Robot), rebuilt from
the specification in ``shared/research/kalm.md`` §3 with our own MJCF scene:

- five spheres of radius 0.13 in a fixed colour order (0 red, 1 blue, 2 green, 3 purple, 4 cyan);
- a point-mass pusher sphere (radius 0.05) on x/y slide joints, driven by two motors
  (ctrlrange ±2);
- invisible, collision-only walls at x = ±0.6, y = −0.3 and y = +0.7, so ball centres stay in
  x ∈ [−0.47, 0.47], y ∈ [−0.17, 0.57] (``X_BOUNDS``, ``Y_BOUNDS``); the pusher passes through
  them, so it can push a ball that lies against a wall away from it;
- timestep 0.01, Euler integration.

Modelling choice: each ball moves on two slide joints (x, y) with linear damping, without
rotation or a z axis, and the floor is visual only. A free rolling sphere needs rolling
friction to stop and can hop off the table (KALM's data has such pop-ups); planar
damped balls stop on their own, cannot leave the plane, and make a step about 2× cheaper. Balls
collide with each other (chain pushes), with the pusher and with the walls.

Action ``a`` in ``Discrete(40)`` pushes ball ``a // 8`` along ``PUSH_DIRECTIONS[a % 8]``: the
pusher is teleported to ``ball − 0.15·dir`` (at rest), a control equal to ``dir`` is held for 40
substeps, then the pusher is parked outside the table and the balls coast for 20 more substeps,
after which every velocity is zeroed. A step is therefore a pure function of the five ball
positions (:func:`push`); the observation ``[x0, y0, …, x4, y4]`` is the whole state. Gains are
calibrated (``benchmarks/bench_clevr_robot.py``) so an unobstructed push moves a ball about 0.26
along a cardinal direction and 0.29 along a diagonal, as measured on KALM's data (0.25, 0.29–0.33).

Goals, rewards and success come from :mod:`llmrl.envs.clevr_goals`; the episode terminates on
success and truncates after the goal's ``max_steps`` (50, or 1 for the easy level).

    from llmrl.envs.clevr_robot import ClevrRobotEnv
    env = ClevrRobotEnv(goal_level="seen")
    obs, info = env.reset(seed=0)
    info["goal_text"]  # "Push the red ball behind the blue ball"
    obs, reward, terminated, truncated, info = env.step(3)  # push red towards −y
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, SupportsFloat

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from llmrl.envs.clevr_goals import LEVELS, Goal, sample_goal

__all__ = [
    "BALL_COLOURS_RGB",
    "ENV_ID",
    "N_ACTIONS",
    "N_BALLS",
    "PUSH_DIRECTIONS",
    "X_BOUNDS",
    "Y_BOUNDS",
    "ClevrRobotEnv",
    "PushSimulator",
    "push",
    "render_positions",
    "sample_positions",
]

ENV_ID = "CLEVR-Robot-v0"
N_BALLS = 5
N_DIRECTIONS = 8
N_ACTIONS = N_BALLS * N_DIRECTIONS
PUSH_DIRECTIONS = np.array(
    [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0), (0.8, 0.8), (-0.8, 0.8), (0.8, -0.8), (-0.8, -0.8)]
)
BALL_RADIUS = 0.13
PUSHER_RADIUS = 0.05
WALLS = (-0.6, 0.6, -0.3, 0.7)  # inner faces: x_min, x_max, y_min, y_max
X_BOUNDS = (WALLS[0] + BALL_RADIUS, WALLS[1] - BALL_RADIUS)  # where a ball centre can be
Y_BOUNDS = (WALLS[2] + BALL_RADIUS, WALLS[3] - BALL_RADIUS)
BALL_COLOURS_RGB = np.array(
    [(200, 30, 30), (40, 70, 220), (30, 170, 60), (140, 50, 180), (30, 200, 210)], dtype=np.uint8
)

# Initial state (KALM): uniform in a box a little wider than the table, centres ≥ 0.36 apart.
SAMPLE_X = (-0.5, 0.5)
SAMPLE_Y = (-0.3, 0.5)
MIN_START_DISTANCE = 0.36
MAX_PLACEMENT_DRAWS = 200  # draws for one layout before starting it over
MAX_START_RESAMPLES = 100  # initial states tried before giving up on one the goal does not already hold

# Push and its calibration (benchmarks/bench_clevr_robot.py).
PUSH_OFFSET = 0.15  # pusher starts this far behind the ball centre (overlapping it by 0.03)
PUSH_SUBSTEPS = 40  # 0.4 s of control
SETTLE_SUBSTEPS = 20  # 0.2 s of coasting with the pusher parked: four damping time constants
PARK = (0.0, -2.0)  # the pusher's place between pushes, outside the walls
BALL_MASS = 0.5
BALL_DAMPING = 10.0  # time constant mass/damping = 0.05 s
PUSHER_MASS = 0.1
PUSHER_DAMPING = 0.5
MOTOR_GEAR = 7.0


def scene_xml() -> str:
    """The MJCF scene: balls, pusher, walls. Collision bits: ball 1, pusher 2; walls touch balls only."""
    balls = "\n".join(
        f"""    <body name="ball{i}" pos="0 0 {BALL_RADIUS}">
      <joint name="ball{i}_x" type="slide" axis="1 0 0" damping="{BALL_DAMPING}"/>
      <joint name="ball{i}_y" type="slide" axis="0 1 0" damping="{BALL_DAMPING}"/>
      <geom name="ball{i}" type="sphere" size="{BALL_RADIUS}" mass="{BALL_MASS}" contype="1" conaffinity="3"
            rgba="{' '.join(f'{c / 255:.3f}' for c in BALL_COLOURS_RGB[i])} 1"/>
    </body>"""
        for i in range(N_BALLS)
    )
    x0, x1, y0, y1 = WALLS
    t = 0.5  # wall half-thickness: thick enough that no ball tunnels through in one 0.01 s step
    cx, cy, hx, hy = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 + 2 * t, (y1 - y0) / 2 + 2 * t
    walls = "\n".join(
        f'    <geom name="wall_{name}" type="box" pos="{px} {py} {BALL_RADIUS}" size="{sx} {sy} 0.2" '
        'contype="0" conaffinity="1" rgba="0 0 0 0"/>'
        for name, px, py, sx, sy in (
            ("left", x0 - t, cy, t, hy),
            ("right", x1 + t, cy, t, hy),
            ("front", cx, y0 - t, hx, t),
            ("back", cx, y1 + t, hx, t),
        )
    )
    return f"""<mujoco model="clevr_robot">
  <option timestep="0.01" integrator="Euler"/>
  <default><geom friction="0.8 0.005 0.0001"/></default>
  <worldbody>
    <light pos="0 0.2 3" dir="0 0 -1"/>
    <geom name="floor" type="plane" pos="0 0.2 0" size="0.8 0.7 0.05" contype="0" conaffinity="0" rgba="0.8 0.8 0.8 1"/>
{walls}
{balls}
    <body name="pusher" pos="0 0 {BALL_RADIUS}">
      <joint name="pusher_x" type="slide" axis="1 0 0" damping="{PUSHER_DAMPING}"/>
      <joint name="pusher_y" type="slide" axis="0 1 0" damping="{PUSHER_DAMPING}"/>
      <geom name="pusher" type="sphere" size="{PUSHER_RADIUS}" mass="{PUSHER_MASS}" contype="2" conaffinity="0"
            rgba="0.2 0.2 0.2 1"/>
    </body>
  </worldbody>
  <actuator>
    <motor name="pusher_x" joint="pusher_x" gear="{MOTOR_GEAR}" ctrllimited="true" ctrlrange="-2 2"/>
    <motor name="pusher_y" joint="pusher_y" gear="{MOTOR_GEAR}" ctrllimited="true" ctrlrange="-2 2"/>
  </actuator>
</mujoco>
"""


# Pushes already simulated, (positions bytes, action) -> new positions, least recently used first.
# A push is a pure function of its inputs, and evaluation replays the same ones many times: every
# agent starts from the same held-out states, and a stuck greedy agent repeats one push to the end.
PUSH_MEMO_SIZE = 1 << 16  # about 25 MB
_PUSH_MEMO: OrderedDict[tuple[bytes, int], np.ndarray] = OrderedDict()
_PUSH_MEMO_LOCK = threading.Lock()  # environments may step in threads


class PushSimulator:
    """One MuJoCo model and data; :meth:`push` maps ball positions and an action to new positions.

    qpos is ``[x0, y0, …, x4, y4, pusher_x, pusher_y]`` (each body sits at the origin), so the
    observation is ``qpos[:10]``. Every push starts from ``mj_resetData``, which also clears the
    solver's warm start: the result depends on the positions and the action only, so results are
    remembered (``PUSH_MEMO_SIZE`` of them, shared by all simulators) and a repeated push costs a
    lookup.
    """

    def __init__(self) -> None:
        self.model = mujoco.MjModel.from_xml_string(scene_xml())
        self.data = mujoco.MjData(self.model)

    def push(self, positions: np.ndarray, action: int) -> np.ndarray:
        action = int(action)
        if not 0 <= action < N_ACTIONS:
            raise ValueError(f"action {action} out of range: expected 0..{N_ACTIONS - 1} (ball * 8 + direction)")
        positions = np.asarray(positions, dtype=np.float64)
        key = (positions.tobytes(), action)
        with _PUSH_MEMO_LOCK:
            known = _PUSH_MEMO.get(key)
            if known is not None:
                _PUSH_MEMO.move_to_end(key)
                return known.copy()
        new = self.simulate(positions, action)
        with _PUSH_MEMO_LOCK:
            _PUSH_MEMO[key] = new.copy()
            if len(_PUSH_MEMO) > PUSH_MEMO_SIZE:
                _PUSH_MEMO.popitem(last=False)
        return new

    def simulate(self, positions: np.ndarray, action: int) -> np.ndarray:
        """One push in MuJoCo, never remembered (``push`` checks its arguments and remembers)."""
        ball, k = divmod(action, N_DIRECTIONS)
        direction = PUSH_DIRECTIONS[k]
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        d.qpos[: 2 * N_BALLS] = positions
        d.qpos[2 * N_BALLS :] = positions[2 * ball : 2 * ball + 2] - PUSH_OFFSET * direction
        d.ctrl[:] = direction
        mujoco.mj_step(m, d, PUSH_SUBSTEPS)
        d.qpos[2 * N_BALLS :] = PARK
        d.qvel[2 * N_BALLS :] = 0.0
        d.ctrl[:] = 0.0
        mujoco.mj_step(m, d, SETTLE_SUBSTEPS)
        # Soft contacts can leave a centre a millimetre past a wall; clip onto the bounds.
        return clip_to_table(d.qpos[: 2 * N_BALLS])


_SIMULATOR: PushSimulator | None = None


def push(positions: np.ndarray, action: int) -> np.ndarray:
    """The state after pushing: ``(10,)`` positions and an action in 0..39 → new ``(10,)`` positions.

    Pure (same inputs, same output) and independent of any env; uses one shared scratch simulator,
    so it is not thread-safe. About 0.4 ms.
    """
    global _SIMULATOR
    if _SIMULATOR is None:
        _SIMULATOR = PushSimulator()
    return _SIMULATOR.push(positions, action)


def clip_to_table(positions: np.ndarray) -> np.ndarray:
    xy = np.array(positions, dtype=np.float64).reshape(N_BALLS, 2)
    xy[:, 0] = np.clip(xy[:, 0], *X_BOUNDS)
    xy[:, 1] = np.clip(xy[:, 1], *Y_BOUNDS)
    return xy.reshape(-1)


def sample_positions(rng: np.random.Generator) -> np.ndarray:
    """KALM's initial state: each ball uniform in x ∈ [−0.5, 0.5], y ∈ [−0.3, 0.5], clipped onto the
    table, and rejected until its centre is ≥ 0.36 from the balls placed before it (a layout that
    leaves no room for the last balls is started over).

    The box is wider than the table (KALM's balls that start past a wall are pushed back in on the
    first step); clipping before the distance test keeps the clipped balls apart too.
    """
    low, high = (X_BOUNDS[0], Y_BOUNDS[0]), (X_BOUNDS[1], Y_BOUNDS[1])
    while True:
        placed: list[np.ndarray] = []
        for _ in range(MAX_PLACEMENT_DRAWS):
            p = np.clip(np.array([rng.uniform(*SAMPLE_X), rng.uniform(*SAMPLE_Y)]), low, high)
            if all(np.hypot(*(p - q)) >= MIN_START_DISTANCE for q in placed):
                placed.append(p)
                if len(placed) == N_BALLS:
                    return np.concatenate(placed)
        # The first balls left no room for the rest: start the layout again.


# -- rendering: a top-down raster of the true physics state -------------------------------------

_VIEW = (-0.65, 0.65, -0.35, 0.75)  # world x_min, x_max, y_min, y_max shown


def render_positions(positions: np.ndarray, size: int = 256) -> np.ndarray:
    """Top-down ``(size, size, 3)`` uint8 image: table, walls and the balls as filled circles.

    +y (behind) is up and +x (right) is right; one world unit is ``size / 1.3`` pixels. Drawn with
    numpy from the positions, so it needs no OpenGL.
    """
    scale = size / (_VIEW[1] - _VIEW[0])
    cols = (np.arange(size) + 0.5) / scale + _VIEW[0]
    y_top = (_VIEW[2] + _VIEW[3]) / 2 + size / scale / 2  # centre the view vertically
    rows = y_top - (np.arange(size) + 0.5) / scale
    wx, wy = np.meshgrid(cols, rows)
    image = np.full((size, size, 3), 60, dtype=np.uint8)  # outside the walls
    x0, x1, y0, y1 = WALLS
    image[(wx >= x0) & (wx <= x1) & (wy >= y0) & (wy <= y1)] = 215  # the table
    border = 1.5 / scale
    on_wall = ((np.abs(wx - x0) < border) | (np.abs(wx - x1) < border)) & (wy >= y0) & (wy <= y1)
    on_wall |= ((np.abs(wy - y0) < border) | (np.abs(wy - y1) < border)) & (wx >= x0) & (wx <= x1)
    image[on_wall] = 30
    xy = np.asarray(positions, dtype=np.float64).reshape(N_BALLS, 2)
    for i, (bx, by) in enumerate(xy):
        image[(wx - bx) ** 2 + (wy - by) ** 2 <= BALL_RADIUS**2] = BALL_COLOURS_RGB[i]
    return image


def world_to_pixel(x: float, y: float, size: int = 256) -> tuple[int, int]:
    """(row, column) of world point (x, y) in :func:`render_positions`' image."""
    scale = size / (_VIEW[1] - _VIEW[0])
    y_top = (_VIEW[2] + _VIEW[3]) / 2 + size / scale / 2
    return int((y_top - y) * scale), int((x - _VIEW[0]) * scale)


# -- the gymnasium env ---------------------------------------------------------------------------


class ClevrRobotEnv(gym.Env[np.ndarray, np.int64]):
    """Five balls, 40 push actions, a language goal (see the module docstring).

    Args:
        goal_level: level of the goals sampled on reset, one of ``LEVELS``
            (``seen``, ``rephrase``, ``easy``, ``hard``).
        max_steps: episode length; ``None`` uses the goal's own (50, or 1 for easy goals).
        render_mode: ``None`` or ``"rgb_array"`` (a 256×256 top-down image).

    ``reset(options=...)`` accepts ``"goal"`` (a :class:`~llmrl.envs.clevr_goals.Goal`) and
    ``"positions"`` (10 numbers) to fix either. ``info`` carries ``goal`` (on reset), ``goal_text``,
    ``level`` and ``success``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, goal_level: str = "seen", max_steps: int | None = None, render_mode: str | None = None):
        if goal_level not in LEVELS:
            raise ValueError(f"unknown goal level {goal_level!r}: expected one of {LEVELS}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode {render_mode!r} not supported: use None or 'rgb_array'")
        self.goal_level = goal_level
        self.max_steps = max_steps
        self.render_mode = render_mode
        low = np.array([X_BOUNDS[0], Y_BOUNDS[0]] * N_BALLS, dtype=np.float32)
        high = np.array([X_BOUNDS[1], Y_BOUNDS[1]] * N_BALLS, dtype=np.float32)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.action_space = spaces.Discrete(N_ACTIONS)
        self.simulator = PushSimulator()
        self._positions = np.zeros(2 * N_BALLS)
        self.start = np.zeros(2 * N_BALLS)
        self.goal: Goal | None = None
        self.steps = 0

    @property
    def positions(self) -> np.ndarray:
        """The current ball centres ``[x0, y0, …, x4, y4]`` (a copy, float64)."""
        return self._positions.copy()

    def set_positions(self, positions: np.ndarray) -> None:
        """Place the balls (clipped onto the table); the episode's ``start`` is unchanged."""
        positions = np.asarray(positions, dtype=np.float64)
        if positions.shape != (2 * N_BALLS,):
            raise ValueError(f"positions must have shape ({2 * N_BALLS},), got {positions.shape}")
        self._positions = clip_to_table(positions)

    def _obs(self) -> np.ndarray:
        return self._positions.astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        options = options or {}
        goal = options.get("goal")
        self.goal = goal if goal is not None else sample_goal(self.goal_level, self.np_random)
        if options.get("positions") is not None:
            self.set_positions(options["positions"])
        else:
            # Start from a state the goal does not already hold, as KALM's test sets do; a one-step
            # goal also needs a start where some push of its ball can do it (not pinned by a wall).
            for _ in range(MAX_START_RESAMPLES):
                self._positions = sample_positions(self.np_random)
                if not self.goal.success(self._positions, self._positions) and self._reachable(self.goal):
                    break
        self.start = self._positions.copy()
        self.steps = 0
        info = {"goal": self.goal, "goal_text": self.goal.text, "level": self.goal.level, "success": False}
        return self._obs(), info

    def _reachable(self, goal: Any) -> bool:
        if goal.max_steps != 1 or not hasattr(goal, "ball"):
            return True
        p = self._positions
        return any(goal.success(self.simulator.push(p, goal.ball * N_DIRECTIONS + d), p) for d in range(N_DIRECTIONS))

    def step(self, action: np.int64 | int) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict]:
        if self.goal is None:
            raise RuntimeError("call reset() before step()")
        prev = self._positions
        self._positions = self.simulator.push(prev, int(action))
        self.steps += 1
        reward = float(self.goal.reward(prev, self._positions, self.start))
        terminated = bool(self.goal.success(self._positions, self.start))
        limit = self.max_steps if self.max_steps is not None else self.goal.max_steps
        truncated = self.steps >= limit and not terminated
        info = {"success": terminated, "goal_text": self.goal.text, "level": self.goal.level}
        return self._obs(), reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return render_positions(self._positions)
