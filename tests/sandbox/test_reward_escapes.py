"""The RL-specific escapes: a reward program that lies, cheats or breaks its contract.

The program runs through :class:`llmrl.roles.reward_coder.SandboxedReward` (and, with a real
environment, :class:`CodeRewardVecEnv`), which must turn each of these into a ``CodeFailure``
with a clear message, and must leave the environment and the caller's arrays as they were.
"""

from __future__ import annotations

import numpy as np
import pytest

from llmrl.envs.code_tasks import get_task, stack_fields
from llmrl.roles.reward_coder import CodeRewardVecEnv, SandboxedReward
from llmrl.sandbox import CodeFailure, Limits

LIMITS = Limits(call_seconds=2.0)
S = {"position": np.array([-0.5, -0.4, 0.1]), "velocity": np.array([0.0, 0.01, -0.02])}
A = np.array([[0.5], [-0.3], [1.0]])


def reward_of(body: str):
    program = f"import math\nimport numpy as np\n\ndef compute_reward(s, a, s_next):\n{body}"
    r = SandboxedReward(program, limits=LIMITS, static_check=False)
    try:
        return r(S, A, S)
    finally:
        r.close()


@pytest.mark.parametrize(("body", "message"), [
    ("    return float('nan'), {}\n", "NaN or infinity"),
    ("    return math.inf\n", "NaN or infinity"),
    ("    return 1e30, {}\n", "beyond the bound"),
    ("    return [1.0, 2.0, 3.0], {}\n", "one number per transition"),
    ("    return 'high', {}\n", "must be numbers"),
    ("    return None\n", "is None"),
    ("    x = 1.0\n", "is None"),
    ("    return 1.0, {'speed': float('nan')}\n", "component 'speed'"),
    ("    return 1.0, {'k%d' % i: 0.0 for i in range(40)}\n", "at most 16"),
])
def test_answers_outside_the_contract_are_refused(body, message):
    with pytest.raises(CodeFailure, match=message) as e:
        reward_of(body)
    assert e.value.kind == "contract"


def test_components_must_keep_their_names():
    body = "    return 1.0, ({'a': 1.0} if s['position'] < 0 else {'b': 1.0})\n"
    with pytest.raises(CodeFailure, match="same component names"):
        reward_of(body)


def test_a_well_formed_program_gives_rewards_and_components():
    r, comps = reward_of("    h = math.sin(3 * s_next['position'])\n    return h + 0 * a[0], {'height': h}\n")
    assert r.shape == (3,) and np.allclose(r, np.sin(3 * S["position"])) and set(comps) == {"height"}


def test_changing_the_observation_in_place_changes_nothing_here():
    before = {k: v.copy() for k, v in S.items()}
    reward_of("    s['position'] = 99.0\n    s_next['velocity'] = 99.0\n    a[0] = 99.0\n    return 0.0\n")
    assert all(np.array_equal(S[k], before[k]) for k in S) and A[0, 0] == 0.5


def test_the_success_flag_and_the_environment_are_out_of_reach():
    # The program searches everything it can see for the task's success flag or an env object.
    body = ("    import gc, sys\n"
            "    seen = [o for o in gc.get_objects() if isinstance(o, dict) and isinstance(o.get('success'), bool)]\n"
            "    envs = [o for o in gc.get_objects()\n"
            "            if str(type(o).__module__).startswith(('gymnasium', 'minigrid', 'llmrl', 'stable_baselines3'))]\n"
            "    mods = [m for m in sys.modules if 'gymnasium' in m or 'llmrl' in m]\n"
            "    return float(len(seen) + len(envs) + len(mods))\n")
    r, _ = reward_of(body)
    assert r.tolist() == [0.0, 0.0, 0.0]


def test_a_hostile_reward_cannot_touch_the_real_environment():
    from stable_baselines3.common.vec_env import DummyVecEnv

    task = get_task("mountain-car")
    venv = DummyVecEnv([lambda: task.policy_env("human") for _ in range(2)])
    program = ("import math\nimport numpy as np\n\ndef compute_reward(s, a, s_next):\n"
               "    s_next['position'] = 0.5\n    return 1.0, {'one': 1.0}\n")
    wrapped = CodeRewardVecEnv(venv, SandboxedReward(program, limits=LIMITS))
    try:
        wrapped.reset()
        before = [e.unwrapped.state.copy() for e in venv.envs]
        obs, rewards, dones, infos = wrapped.step(np.zeros((2, 1)))
        assert rewards.tolist() == [1.0, 1.0]
        assert all("env_reward" in i for i in infos)
        # The env moved by its own physics only: no program wrote 0.5 into its position.
        assert all(abs(e.unwrapped.state[0] - b[0]) < 0.01 for e, b in zip(venv.envs, before))
        assert wrapped.take_components() == {"one": 1.0}
        assert [i["fields"]["position"] for i in infos] == [float(e.unwrapped.state[0]) for e in venv.envs]
    finally:
        wrapped.reward.close()
        venv.close()


def test_stacked_fields_are_what_the_task_reads():
    task = get_task("door-key")
    env = task.make()
    env.reset(seed=3)
    fields = task.read(env)
    assert set(fields) == set(task.field_names) and fields["has_key"] == 0.0 and fields["door_open"] == 0.0
    assert stack_fields([fields, fields])["agent_x"].shape == (2,)
