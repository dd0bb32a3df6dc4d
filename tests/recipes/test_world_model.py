"""The world-model study end to end at a tiny scale."""

from __future__ import annotations

import copy

import pytest

from llmrl.recipes import world_model as wm
from llmrl.runs import read_json_lines


def test_the_copy_baseline_and_planning_without_an_lm(tmp_path):
    config = wm.config_from("smoke", predictors=("copy",), simulators=("true", "none"), plan_episodes=2)
    result = wm.run(config, tmp_path / "run", progress=False)
    assert 0.0 <= result.metrics["predict/copy/exact"] <= 1.0
    assert result.metrics["plan/true/sim_calls_per_decision"] == 3
    assert result.metrics["plan/none/sim_calls_per_decision"] == 0
    assert len(read_json_lines(tmp_path / "run" / "records.jsonl")) == 3


def test_the_lm_simulator_needs_the_lora_model():
    with pytest.raises(ValueError, match="lm-lora"):
        wm.WorldModelConfig(predictors=("copy",), simulators=("lm",))


def test_the_lora_world_model_predicts_and_plans(tmp_path, monkeypatch, smollm2_fp32):
    lm = copy.deepcopy(smollm2_fp32)
    monkeypatch.setattr(wm, "_lm", lambda config: lm)
    config = wm.config_from("smoke", predictors=("lm-lora",), simulators=("lm",), train_episodes=2, walk_steps=3,
                            test_transitions=1, plan_steps=1)  # fmt: skip
    result = wm.run(config, tmp_path / "run", progress=False)
    records = read_json_lines(tmp_path / "run" / "records.jsonl")
    assert [r["kind"] for r in records] == ["predict", "plan"]
    assert len(records[0]["losses"]) == 1 and records[1]["items"][0]["sim_calls"] == 3
    assert 0.0 <= result.metrics["predict/lm-lora/exact"] <= 1.0
    assert not hasattr(lm.model, "peft_config")
