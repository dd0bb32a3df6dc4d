"""State-Coder end to end at a tiny scale: a scripted LM's programs, real TD3, the real sandbox."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fakes import ProgramLM

from llmrl.envs.code_tasks import get_state_task
from llmrl.recipes import state_coder as sc
from llmrl.roles.state_coder import RevisedStateVecEnv, SandboxedState, lipschitz
from llmrl.runs import read_json_lines, read_rows
from llmrl.sandbox import CodeFailure

GOOD = ("    theta = math.atan2(s[1], s[0])\n    return np.concatenate([s, [theta, abs(theta)]])\n\n\n"
        "def intrinsic_reward(s):\n    return -s[4]\n```")
BODIES = [
    GOOD,
    "    return s\n\n\ndef intrinsic_reward(s):\n    return 0.0\n```",             # no new feature
    "    return np.concatenate([s, [1.0]])\n```",                                  # no intrinsic_reward
    "    return np.concatenate([s, [1.0]])\n\n\ndef intrinsic_reward(s):\n    return 1e9\n```",  # out of range
]


def tiny(**kw):
    base = {"iterations": 2, "samples": 4, "search_steps": 200, "final_steps": 200, "final_seeds": 1,
            "eval_episodes": 1, "workers": 1, "max_new_tokens": 64}
    return sc.config_from("cpu", **{**base, **kw})


def test_search_feeds_back_lipschitz_and_counts_every_step(monkeypatch, tmp_path):
    lm = ProgramLM(BODIES)
    monkeypatch.setattr("llmrl.lm.load_model", lambda name, **kw: lm)
    sc.run(tiny(), tmp_path / "run", progress=False)
    cands = read_json_lines(tmp_path / "run" / "candidates.jsonl")
    assert [c["status"] for c in cands] == ["ok", "contract", "missing", "contract"] * 2
    assert len(cands[0]["stats"]["lipschitz"]) == 5 and "1 to 32 new features" in cands[1]["error"]
    # LESR keeps every earlier program and its feedback in the prompt.
    second = lm.prompts[1]
    assert second.count("A previous attempt") == 4 and "Lipschitz constant" in second and "It failed" in second
    final = read_rows(tmp_path / "run" / "final.csv", "seed")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    search = summary["search"]["env_steps"]
    assert search == sum(c["stats"]["env_steps"] for c in cands) >= 2 * 200
    raw = next(r for r in final if r["arm"] == "raw")
    lesr = next(r for r in final if r["arm"] == "lesr")
    # The raw arm trains for what the LESR arm cost in all, search included.
    assert int(raw["env_steps"]) == 200 + search and int(lesr["budget"]) == int(raw["budget"]) == 200 + search


def test_the_revised_env_and_its_checks():
    from stable_baselines3.common.vec_env import DummyVecEnv

    task = get_state_task("pendulum")
    code = open("examples/states/pendulum.py").read()
    program = SandboxedState(code, task.dims)
    venv = RevisedStateVecEnv(DummyVecEnv([task.make]), program, weight=0.5)
    try:
        obs = venv.reset()
        assert obs.shape == (1, 6) and venv.observation_space.shape == (6,)
        obs, reward, _, infos = venv.step(np.zeros((1, 1)))
        intrinsic = -abs(obs[0, 3]) - 0.1 * obs[0, 5]
        assert reward[0] == pytest.approx(infos[0]["env_reward"] + 0.5 * intrinsic, rel=1e-4)
    finally:
        program.close()
    bad = SandboxedState("import numpy as np\ndef revise_state(s):\n    return np.concatenate([s, [np.nan]])\n"
                         "def intrinsic_reward(s):\n    return 0.0\n", 3)
    with pytest.raises(CodeFailure, match="NaN"):
        bad(np.zeros((2, 3)))
    bad.close()


def test_lipschitz_is_the_steepest_reward_change_along_each_dimension():
    states = np.array([[0.0, 5.0], [1.0, 5.0], [2.0, 5.0]])
    rewards = np.array([0.0, 1.0, 3.0])
    L = lipschitz(states, rewards)
    assert L[0] == pytest.approx(2.0 / 1.01) and L[1] == pytest.approx(2.0 / 0.01)  # a flat dimension: every change is "steep"
