"""The LM as reward designer in code: Text2Reward's environment-as-code prompt and Eureka's search
with reward reflection (Xie et al. 2024; Ma et al. 2024).

The LM reads the task as a class stub (:attr:`llmrl.envs.code_tasks.CodeTask.source`: each state
field's meaning and range, the action, the goal) and writes

    def compute_reward(s, a, s_next) -> (reward, {component name: value})

K programs per iteration; each trains a policy briefly with its reward alone, in
:mod:`llmrl.sandbox`, and its fitness is the task's own success rate. Eureka's reflection goes
back to the LM: ten evenly spaced points of every reward component and of the success rate
during training, with max, mean and min, and fixed advice on what to change; a program that
failed sends its error instead. The best program of an iteration (Eureka's greedy elitism)
is the one the next prompt improves on.

:class:`SandboxedReward` runs a program over a batch of transitions in one round trip and checks
every answer (finite, bounded, one per transition); :class:`CodeRewardVecEnv` puts it in place of
a Stable-Baselines3 vector env's reward, so the learner never sees the environment's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from llmrl.envs.code_tasks import CodeTask, stack_fields
from llmrl.roles.coder import Candidate, check_numbers, describe_curve
from llmrl.sandbox import CodeFailure, Limits, Sandbox, reject_early

HEADER = "def compute_reward(s, a, s_next):"
MAX_COMPONENTS = 16

# Eureka's instructions, in our words: the role, the signature, how to shape terms.
INSTRUCTIONS = """You are a reward engineer. Write a dense reward function in Python that makes a reinforcement-learning
agent solve the task below. The function is called after every step with the state before the step (s), the
action (a) and the state after it (s_next); it returns the reward (a float) and a dict with each term of the
reward by name, so training can report them. Use only the fields listed, math and numpy. Tips: give each
term its own scale; squash unbounded terms (e.g. with math.exp(-d / temperature)); reward progress toward
the goal, not only reaching it.
"""

EXAMPLE = '''Example, for a different task (a cart must keep a pole upright; fields x, x_dot, angle, angle_dot):
```python
import math
import numpy as np


def compute_reward(s, a, s_next):
    upright = math.cos(s_next["angle"])
    centred = math.exp(-abs(s_next["x"]) / 0.5)
    reward = 1.0 * upright + 0.2 * centred
    return reward, {"upright": upright, "centred": centred}
```
'''

ADVICE = """Use these statistics to write a better reward function: if the success rate stays near zero, write a new
function rather than tweaking this one; a term whose values barely change is not helping (rescale it or drop
it); a term much larger than the others drowns them (scale it down)."""


def reward_prompt(task: CodeTask, best: Candidate | None = None, failures: Sequence[Candidate] = (), *,
                  example: bool = False) -> str:
    """The prompt for one iteration, ending in the function's first line (the LM writes its body).

    ``best`` is the previous iteration's best program with its statistics; when no program of the
    previous iteration ran, ``failures`` shows one error so the LM can avoid it."""
    parts = [INSTRUCTIONS, f"The task:\n```python\n{task.source}```\n"]
    if example:
        parts.insert(1, EXAMPLE)
    if best is not None:
        parts.append(f"A reward function we trained with:\n```python\n{best.code.strip()}\n```\n"
                     f"{reflection(best)}\n{ADVICE}\n")
    elif failures:
        f = failures[0]
        parts.append(f"This reward function failed:\n```python\n{f.code.strip()}\n```\nError: {f.error[:800]}\n"
                     "Write one that runs.\n")
    parts.append(f"The reward function for the task:\n```python\n{program_start(task)}")
    return "\n".join(parts)


def program_start(task: CodeTask) -> str:
    """The program's first lines, which the prompt ends with: imports, the signature, and a
    docstring naming the fields, so the LM starts from the right ones."""
    fields = ", ".join(f's["{name}"]' for name in task.field_names)
    return (f'import math\nimport numpy as np\n\n\n{HEADER}\n'
            f'    """Fields of s and s_next: {fields}. Returns (reward, dict of terms)."""\n')


def reflection(candidate: Candidate) -> str:
    """Eureka's reward reflection: the success rate and each component during training."""
    stats = candidate.stats
    lines = [f"We trained a policy with it for {stats.get('env_steps', 0)} steps. During training:",
             describe_curve("success rate (the task's own measure)", stats.get("success_curve", []))]
    lines += [describe_curve(f"term {name!r}", values) for name, values in stats.get("components", {}).items()]
    lines.append(f"After training, the policy succeeded in {candidate.fitness:.0%} of test episodes."
                 if candidate.fitness is not None else "")
    return "\n".join(line for line in lines if line)


class SandboxedReward:
    """An LM-written ``compute_reward`` run in a sandbox over batches of transitions.

    Calling it returns (rewards of shape (n,), {component: values of shape (n,)}); any failure of
    the program, and any answer outside the contract (NaN, infinity, beyond ``bound``, a wrong
    count, more than 16 components), raises :class:`llmrl.sandbox.CodeFailure`.
    """

    def __init__(self, code: str, *, limits: Limits | None = None, allow_weaker: Any = False,
                 bound: float = 1e4, static_check: bool = True) -> None:  # fmt: skip
        if static_check:  # a readable early "no", not a protection
            reject_early(code)
        self.code, self.bound = code, bound
        self.sandbox = Sandbox(limits, allow_weaker=allow_weaker)
        try:
            self.sandbox.load(code, ["compute_reward"])
        except BaseException:
            self.sandbox.close()
            raise
        self.calls = 0

    def __call__(self, s: dict[str, np.ndarray], a: np.ndarray, s_next: dict[str, np.ndarray]
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:  # fmt: skip
        n = len(a)
        rows = self.sandbox.batch("compute_reward", s, a, s_next, n=n, columnar=True)
        self.calls += 1
        if isinstance(rows, dict):  # the common shape, sent as columns
            return check_columns(rows, n, self.bound)
        rewards, parts = [], []
        for row in rows:
            if isinstance(row, tuple | list) and len(row) == 2 and isinstance(row[1], dict):
                rewards.append(row[0])
                parts.append(row[1])
            else:
                rewards.append(row)
                parts.append({})
        names = list(parts[0])
        if any(list(p) != names for p in parts):
            raise CodeFailure("contract", "every call must return the same component names")
        return check_columns({"reward": rewards, "parts": {k: [p[k] for p in parts] for k in names}}, n, self.bound)

    def close(self) -> None:
        self.sandbox.close()


def check_columns(columns: dict[str, Any], n: int, bound: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A batch's answer in columns (``{"reward": (n,), "parts": {name: (n,)}}``) checked against the
    contract: finite, within ``bound`` (components within 100x), at most 16 short names."""
    parts = columns.get("parts")
    if not isinstance(parts, dict) or len(parts) > MAX_COMPONENTS or any(len(k) > 64 for k in parts):
        raise CodeFailure("contract", f"the components dict must have at most {MAX_COMPONENTS} short string keys")
    r = check_numbers(columns.get("reward"), n, "the reward", bound)
    return r, {k: check_numbers(v, n, f"component {k!r}", bound * 100) for k, v in parts.items()}


class CodeRewardVecEnv(VecEnvWrapper):
    """A Stable-Baselines3 vector env whose reward is an LM program's, one sandbox call per step.

    The inner envs must carry :class:`llmrl.envs.code_tasks.TaskFields` (``info["fields"]``) and be
    a ``DummyVecEnv`` (the new episode's first fields come from its ``reset_infos``). The
    environment's own reward goes to ``info["env_reward"]``; component sums are kept for
    Eureka's reflection (:meth:`take_components`).
    """

    def __init__(self, venv: VecEnv, reward: SandboxedReward) -> None:
        super().__init__(venv)
        self.reward = reward
        self.prev: list[dict[str, float]] = []
        self._sums: dict[str, float] = {}
        self._count = 0

    def reset(self) -> Any:
        obs = self.venv.reset()
        self.prev = [info["fields"] for info in self.venv.reset_infos]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self.actions = actions
        self.venv.step_async(actions)

    def step_wait(self) -> Any:
        obs, env_rewards, dones, infos = self.venv.step_wait()
        s_next = [info["fields"] for info in infos]
        rewards, comps = self.reward(stack_fields(self.prev), np.asarray(self.actions), stack_fields(s_next))
        for i, (info, done) in enumerate(zip(infos, dones)):
            info["env_reward"] = float(env_rewards[i])
        self.prev = [self.venv.reset_infos[i]["fields"] if done else s_next[i] for i, done in enumerate(dones)]
        for k, v in comps.items():
            self._sums[k] = self._sums.get(k, 0.0) + float(v.sum())
        self._count += len(rewards)
        return obs, rewards.astype(np.float32), dones, infos

    def take_components(self) -> dict[str, float]:
        """Each component's mean per step since the last call."""
        out = {k: v / max(self._count, 1) for k, v in self._sums.items()}
        self._sums, self._count = {}, 0
        return out
