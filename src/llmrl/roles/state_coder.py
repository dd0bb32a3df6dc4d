"""The LM as state-representation designer in code: LESR (Wang et al. 2024).

The LM reads the task and the meaning of every observation dimension and writes

    def revise_state(s) -> np.concatenate([s, extra features])
    def intrinsic_reward(s_revised) -> float   # should use the new features

A learner (Stable-Baselines3 TD3, as LESR) trains on the revised states with the reward
``r_env + w * r_int``. LESR's feedback goes back to the LM: the candidate's return, and for every
dimension of the revised state the Lipschitz constant of the environment's reward along it (how
sharply reward changes as that dimension changes; a feature with a small constant tracks reward
smoothly). Several iterations; the best candidate then trains to the full budget.

:class:`SandboxedState` runs a program in :mod:`llmrl.sandbox` (one round trip per step for both
functions) and checks every answer; :class:`RevisedStateVecEnv` puts it between a
Stable-Baselines3 vector env and its learner, terminal observations included (off-policy
learners store them as next states).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from llmrl.envs.code_tasks import StateTask
from llmrl.roles.coder import Candidate, check_numbers
from llmrl.sandbox import CodeFailure, Limits, Sandbox, reject_early

HEADER = "def revise_state(s):"
MAX_FEATURES = 32
INTRINSIC_BOUND = 100.0  # LESR checks the intrinsic reward lies in [-100, 100]
# Appended to the program: both functions in one round trip per step.
_BOTH = "\n\ndef _revise_and_reward(s):\n    revised = revise_state(s)\n    return revised, intrinsic_reward(revised)\n"

INSTRUCTIONS = """You are designing the state representation of a reinforcement-learning agent. Write two Python functions
for the task below. revise_state(s) takes the observation s (a numpy array, described below) and returns
np.concatenate([s, features]), where features are a few new numbers computed from s that make the task
easier to learn (distances, angles, heights, products of dimensions). intrinsic_reward(s) takes the revised
state and returns a float in [-100, 100] that uses the new features to guide the agent. Use only numpy
and math.
"""


def state_prompt(task: StateTask, history: Sequence[Candidate] = ()) -> str:
    """LESR's prompt: the task and its dimensions, then every earlier program with its return and
    Lipschitz constants (or its error), ending in the first lines of a new ``revise_state``."""
    parts = [INSTRUCTIONS, f"The task:\n```python\n{task.source}```\n"]
    for c in history:
        parts.append(f"A previous attempt:\n```python\n{c.code.strip()}\n```\n{feedback(c)}\n")
    if history:
        parts.append("Write a better pair of functions: keep features whose reward Lipschitz constant is low and "
                     "that raised the return, change or drop the others.\n")
    parts.append(f"The new functions:\n```python\n{program_start(task)}")
    return "\n".join(parts)


def program_start(task: StateTask) -> str:
    return (f"import math\nimport numpy as np\n\n\n{HEADER}\n"
            f'    """s: numpy array of {task.dims} floats. Returns np.concatenate([s, features])."""\n')


def feedback(c: Candidate) -> str:
    if not c.runnable:
        return f"It failed: {c.error[:600]}"
    lips = c.stats.get("lipschitz", [])
    dims = ", ".join(f"s[{i}]: {v:.3g}" for i, v in enumerate(lips))
    return (f"Trained with it, the agent's return was {c.fitness:.4g}. Lipschitz constant of the reward along each "
            f"dimension of the revised state: {dims}.")


class SandboxedState:
    """An LM-written ``revise_state`` / ``intrinsic_reward`` pair run in a sandbox, batched.

    ``(revised (n, dims + k), intrinsic (n,))`` per call; ``k`` is fixed by the first call, and
    any later change, non-finite value, or intrinsic reward outside [-100, 100] is a ``contract``
    failure."""

    def __init__(self, code: str, dims: int, *, limits: Limits | None = None, allow_weaker: Any = False,
                 static_check: bool = True) -> None:  # fmt: skip
        if static_check:
            reject_early(code)
        self.code, self.dims, self.width = code, dims, None
        self.sandbox = Sandbox(limits, allow_weaker=allow_weaker)
        try:
            self.sandbox.load(code + _BOTH, ["revise_state", "intrinsic_reward"])
        except BaseException:
            self.sandbox.close()
            raise

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(obs)
        rows = self.sandbox.batch("_revise_and_reward", np.asarray(obs, dtype=np.float64), n=n)
        if not all(isinstance(r, tuple | list) and len(r) == 2 for r in rows):
            raise CodeFailure("contract", "revise_state/intrinsic_reward returned something other than an array and a number")
        try:
            revised = np.stack([np.asarray(r[0], dtype=np.float64).reshape(-1) for r in rows])
        except (TypeError, ValueError) as e:
            raise CodeFailure("contract", f"revise_state must return a 1-d array of numbers of one length: {e}") from None
        width = revised.shape[1]
        if self.width is None:
            if not self.dims < width <= self.dims + MAX_FEATURES:
                raise CodeFailure("contract", f"revise_state must return the {self.dims} dimensions of s followed by 1 to "
                                              f"{MAX_FEATURES} new features; it returned {width} numbers")
            self.width = width
        elif width != self.width:
            raise CodeFailure("contract", f"revise_state returned {width} numbers, earlier {self.width}")
        check_numbers(revised.reshape(-1), revised.size, "the revised state", 1e6)
        intrinsic = check_numbers([r[1] for r in rows], n, "the intrinsic reward", INTRINSIC_BOUND)
        return revised.astype(np.float32), intrinsic

    def close(self) -> None:
        self.sandbox.close()


class RevisedStateVecEnv(VecEnvWrapper):
    """Observations revised by an LM program, reward ``r_env + weight * r_int``; ``info["env_reward"]``
    keeps the environment's own. The first call fixes the observation space's width."""

    def __init__(self, venv: VecEnv, program: SandboxedState, weight: float) -> None:
        self.program, self.weight = program, weight
        probe = np.zeros((1, venv.observation_space.shape[0]))
        revised, _ = program(probe)
        width = revised.shape[1]
        space = spaces.Box(-np.inf, np.inf, (width,), np.float32)
        super().__init__(venv, observation_space=space)

    def reset(self) -> np.ndarray:
        return self.program(self.venv.reset())[0]

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        revised, intrinsic = self.program(obs)
        ends = [i for i, d in enumerate(dones) if d and "terminal_observation" in infos[i]]
        if ends:
            terminal, _ = self.program(np.stack([infos[i]["terminal_observation"] for i in ends]))
            for j, i in enumerate(ends):
                infos[i]["terminal_observation"] = terminal[j]
        for i, info in enumerate(infos):
            info["env_reward"] = float(rewards[i])
        return revised, (rewards + self.weight * intrinsic).astype(np.float32), dones, infos


def lipschitz(states: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    """LESR's per-dimension Lipschitz constant of the reward in one episode: sort the transitions
    along a dimension and take the largest ``|dr| / (|ds| + 0.01)`` between neighbours."""
    if len(states) < 2:
        return np.zeros(states.shape[1])
    out = np.empty(states.shape[1])
    for j in range(states.shape[1]):
        order = np.argsort(states[:, j], kind="stable")
        ds = np.abs(np.diff(states[order, j]))
        dr = np.abs(np.diff(rewards[order]))
        out[j] = float(np.max(dr / (ds + 0.01)))
    return out
