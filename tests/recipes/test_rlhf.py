"""RLHF end to end at a tiny scale on the real small model: preferences, the reward model,
PPO-KL with the value model in the checkpoint, KL never negative, and an extended run resuming."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from llmrl.recipes import rlhf
from llmrl.runs import read_rows


@pytest.fixture
def fresh_lms(monkeypatch, smollm2_fp32):
    monkeypatch.setattr(rlhf, "_load_lm", lambda config: copy.deepcopy(smollm2_fp32))


def test_rlhf_runs_logs_a_true_kl_and_resumes(fresh_lms, tmp_path):
    cfg = rlhf.config_from("smoke", iterations=1)
    rlhf.run(cfg, tmp_path / "run", progress=False)
    rm = read_rows(tmp_path / "run" / "reward_models.csv", "seed")
    assert len(rm) == 1 and 0.0 <= float(rm[0]["test_accuracy"]) <= 1.0
    prefs = (tmp_path / "run" / "preferences" / "seed0.jsonl").read_text().splitlines()
    assert all(json.loads(line)["chosen"] != json.loads(line)["rejected"] for line in prefs)
    arm = tmp_path / "run" / "ppo" / "model-beta0.05-seed0"
    rows = read_rows(arm / "progress.csv", "iteration")
    assert rows[0]["phase"] == "eval" and float(rows[0]["kl"]) == 0.0  # the policy starts as the reference
    assert all(float(r["kl"]) >= 0.0 for r in rows)
    state = torch.load(arm / "checkpoint.pt", weights_only=False)
    assert any(k.startswith("value_head") for k in state["policy"]) and state["iteration"] == 1
    # Extend the finished run by one iteration: it resumes from the checkpoint, not from scratch.
    rlhf.run(rlhf.config_from("smoke", iterations=2), tmp_path / "run", resume=True, progress=False)
    rows = read_rows(arm / "progress.csv", "iteration")
    assert [(r["iteration"], r["phase"]) for r in rows] == [("0", "eval"), ("1", "train"), ("1", "eval"),
                                                           ("2", "train"), ("2", "eval")]  # fmt: skip
    assert torch.load(arm / "checkpoint.pt", weights_only=False)["iteration"] == 2
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(summary["ppo"]) == {"model-beta0.05"}
