"""SayCan end to end at a tiny scale."""

from __future__ import annotations

import json

import pytest

from llmrl.recipes import saycan
from llmrl.runs import read_json_lines


def test_saycan_value_only_runs_and_logs_its_affordance_data(tmp_path):
    config = saycan.config_from("smoke", modes=("affordance",))
    result = saycan.run(config, tmp_path / "run", progress=False)
    records = read_json_lines(tmp_path / "run" / "episodes.jsonl")
    aff = next(r for r in records if r["kind"] == "affordance")
    assert aff["tries"] > 0 and aff["env_steps"] > 0
    test = next(r for r in records if r["kind"] == "test")
    assert len(test["episodes"]) == 2 and all(not e["said_done"] for e in test["episodes"])
    assert "BabyAI-UnlockLocal-v0/affordance/success" in result.metrics
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["affordance"]["env_steps"] > 0


def test_saycan_rejects_unknown_levels_and_modes():
    with pytest.raises(ValueError, match="unknown level"):
        saycan.SayCanConfig(levels=("BabyAI-Nowhere-v0",))
    with pytest.raises(ValueError, match="modes"):
        saycan.SayCanConfig(modes=("oracle",))


def test_saycan_and_lm_only_plan_with_the_lm(tmp_path, monkeypatch, gemma_fp32):
    monkeypatch.setattr(saycan, "_lm", lambda config: gemma_fp32)
    config = saycan.config_from("smoke", modes=("saycan", "lm"))
    saycan.run(config, tmp_path / "run", progress=False)
    tests = [r for r in read_json_lines(tmp_path / "run" / "episodes.jsonl") if r["kind"] == "test"]
    assert {r["mode"] for r in tests} == {"saycan", "lm"}
    assert tests[0]["lm_calls"] > 0
    assert all(e["skills"] <= config.max_decisions for r in tests for e in r["episodes"])
