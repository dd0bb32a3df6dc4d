"""Reward-Coder end to end at a tiny scale: a scripted LM's programs, real PPO, the real sandbox."""

from __future__ import annotations

import json

import pytest
from fakes import ProgramLM

from llmrl.recipes import reward_coder as rc
from llmrl.runs import read_json_lines, read_rows

GOOD = "    h = math.sin(3 * s_next['position'])\n    v = 10 * abs(s_next['velocity'])\n    return h + v, {'height': h, 'speed': v}\n```"
BODIES = [
    "    return (\n```",                                  # syntax
    "    return s['angle'], {}\n```",                      # exception: no such field
    GOOD,
    "    return float('nan'), {}\n```",                    # contract
]


def tiny(**kw):
    base = dict(iterations=2, samples=4, search_steps=2048, final_steps=2048, final_seeds=1, eval_episodes=1,
                workers=1, max_new_tokens=64)
    return rc.config_from("cpu", **{**base, **kw})


@pytest.fixture
def program_lm(monkeypatch):
    lm = ProgramLM(BODIES)
    monkeypatch.setattr("llmrl.lm.load_model", lambda name, **kw: lm)
    return lm


def test_search_reflects_and_compares(program_lm, tmp_path):
    result = rc.run(tiny(), tmp_path / "run", progress=False)
    cands = read_json_lines(tmp_path / "run" / "candidates.jsonl")
    assert [c["status"] for c in cands] == ["syntax", "exception", "ok", "contract"] * 2
    assert "KeyError" in cands[1]["error"] and "NaN" in cands[3]["error"]
    good = cands[2]
    assert good["fitness"] is not None and set(good["stats"]["components"]) == {"height", "speed"}
    # Iteration 1's prompt improves on iteration 0's best, with Eureka's reflection.
    second = program_lm.prompts[1]
    assert "10 * abs(s_next['velocity'])" in second and "term 'height'" in second and "success rate" in second
    rows = read_rows(tmp_path / "run" / "progress.csv", "iteration")
    assert [float(r["runnable_share"]) for r in rows] == [0.25, 0.25]
    final = read_rows(tmp_path / "run" / "final.csv", "seed")
    assert sorted(r["reward"] for r in final) == ["code", "human", "sparse"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["search"]["runnable_share"] == 0.25
    assert summary["search"]["env_steps"] == sum(c["stats"]["env_steps"] for c in cands) >= 2 * 2048
    assert (tmp_path / "run" / "best_reward.py").read_text() == good["code"]
    assert "code/success_rate" in result.metrics
    # Resuming a finished run trains nothing again.
    before = (tmp_path / "run" / "final.csv").read_text()
    rc.run(tiny(), tmp_path / "run", resume=True, progress=False)
    assert (tmp_path / "run" / "final.csv").read_text() == before and len(program_lm.prompts) == 2


def test_no_runnable_program_is_a_result(monkeypatch, tmp_path):
    lm = ProgramLM(BODIES[:2])
    monkeypatch.setattr("llmrl.lm.load_model", lambda name, **kw: lm)
    rc.run(tiny(iterations=2, samples=2, rewards=("code", "sparse")), tmp_path / "run", progress=False)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final"]["code"]["note"] == "the search found no runnable program"
    assert summary["final"]["sparse"]["seeds"] == 1
    # With nothing to improve on, iteration 1 sees iteration 0's error.
    assert "This reward function failed" in lm.prompts[1] and "Error:" in lm.prompts[1]


def test_reward_file_arm_and_config_errors(program_lm, tmp_path):
    path = tmp_path / "mine.py"
    path.write_text("import math\n\ndef compute_reward(s, a, s_next):\n" + GOOD.replace("```", ""))
    cfg = tiny(iterations=1, samples=1, rewards=("file",), reward_file=str(path))
    rc.run(cfg, tmp_path / "run", progress=False)
    assert [r["reward"] for r in read_rows(tmp_path / "run" / "final.csv", "seed")] == ["file"]
    with pytest.raises(ValueError, match="reward_file and the 'file' reward go together"):
        tiny(rewards=("file",))
    with pytest.raises(ValueError, match="unknown task"):
        tiny(task="lunar")


def test_the_default_model_runs_the_loop(gemma_fp32, monkeypatch, tmp_path):
    # gemma-3-270m rarely writes a runnable program (docs/results/reward_code.md); whatever it
    # writes, the loop records it and carries on.
    monkeypatch.setattr("llmrl.lm.load_model", lambda name, **kw: gemma_fp32)
    cfg = tiny(iterations=1, samples=2, max_new_tokens=96, rewards=("code", "sparse"))
    rc.run(cfg, tmp_path / "run", progress=False)
    cands = read_json_lines(tmp_path / "run" / "candidates.jsonl")
    assert len(cands) == 2 and all(c["code"].startswith("import math") for c in cands)
    assert all(c["status"] == "ok" or c["error"] for c in cands)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert 0.0 <= summary["search"]["runnable_share"] <= 1.0 and summary["final"]["sparse"]["seeds"] == 1


def test_the_loop_through_an_openai_compatible_server(tmp_path):
    # A bigger model is reached as openai:<url>#<model>; here our own server stands in for it.
    from llmrl.lm.serve import serve_in_thread

    server, url = serve_in_thread(ProgramLM([GOOD, BODIES[0]]))
    try:
        cfg = tiny(iterations=1, samples=2, rewards=("code",), model=f"openai:{url}#programs")
        rc.run(cfg, tmp_path / "run", progress=False)
    finally:
        server.stop()
    cands = read_json_lines(tmp_path / "run" / "candidates.jsonl")
    assert sorted(c["status"] for c in cands) == ["ok", "syntax"]
