"""CALM end to end on one generated TextWorld game at a tiny scale."""

from __future__ import annotations

import copy

import pytest

pytest.importorskip("textworld")

from llmrl.recipes import calm
from llmrl.runs import read_json_lines


@pytest.fixture(scope="module")
def game_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tw"))


def _config(game_cache, **kw):
    base = {"train_games": 1, "test_games": 1, "seeds": 1, "train_steps": 12, "k": 2, "n_samples": 2,
            "game_cache": game_cache, "torch_threads": 1}
    return calm.config_from("smoke", **{**base, **kw})


def test_calm_without_an_lm_runs_measures_recall_and_resumes(game_cache, tmp_path):
    config = _config(game_cache, proposers=("admissible", "random"))
    result = calm.run(config, tmp_path / "run", progress=False)
    records = read_json_lines(tmp_path / "run" / "episodes.jsonl")
    kinds = {(r["kind"], r["proposer"]) for r in records}
    assert kinds == {(k, p) for k in ("recall", "test") for p in ("admissible", "random")}
    assert result.metrics["easy/admissible/recall"] == 1.0  # the walkthrough's commands are all valid
    test = next(r for r in records if r["kind"] == "test" and r["proposer"] == "admissible")
    assert sum(e["steps"] for e in test["train"]) == 12 and len(test["test"]) == 1
    again = calm.run(config, tmp_path / "run", resume=True, progress=False)
    assert len(read_json_lines(tmp_path / "run" / "episodes.jsonl")) == len(records)
    assert again.metrics == result.metrics


def test_calm_rejects_unknown_proposers():
    with pytest.raises(ValueError, match="proposers"):
        calm.CALMConfig(proposers=("oracle",))


def test_a_fine_tuned_lm_proposes_and_its_adapters_go_after(game_cache, tmp_path, monkeypatch, smollm2_fp32):
    # lm-ft runs the lm arm's proposer after LoRA training, so this covers both (the suite's time).
    lm = copy.deepcopy(smollm2_fp32)
    monkeypatch.setattr(calm, "_lm", lambda config: lm)
    result = calm.run(_config(game_cache, proposers=("lm-ft",), train_steps=4, finetune_epochs=1), tmp_path / "r",
                      progress=False)  # fmt: skip
    records = read_json_lines(tmp_path / "r" / "episodes.jsonl")
    assert {(r["kind"], r["proposer"]) for r in records} == {("recall", "lm-ft"), ("test", "lm-ft")}
    assert any(r["lm_calls"] > 0 for r in records)
    assert (tmp_path / "r" / "finetune.json").exists() and (tmp_path / "r" / "proposals.json").exists()
    assert 0.0 <= result.metrics["easy/lm-ft/recall"] <= 1.0
    assert not hasattr(lm.model, "peft_config")  # the adapters are gone after the lm-ft arm
