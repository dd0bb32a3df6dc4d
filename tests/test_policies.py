"""Shipped policies: each holds what evaluation reads, and the default one plays its level well."""

from __future__ import annotations

import json

import pytest

from llmrl.cli import main
from llmrl.policies import DEFAULT_POLICY, POLICIES, policy_path, resolve_policy


def test_every_shipped_policy_holds_its_config_weights_and_readme():
    for name in POLICIES:
        folder = policy_path(name)
        assert json.loads((folder / "config.json").read_text())["recipe"] == "glam"
        assert (folder / "policy" / "weights.safetensors").stat().st_size > 100_000
        assert "llmrl train glam" in (folder / "README.md").read_text()
    assert resolve_policy(None) == policy_path(DEFAULT_POLICY)


def test_a_misspelt_policy_name_suggests_the_shipped_one(tmp_path):
    with pytest.raises(ValueError, match="Did you mean 'glam-cpu'"):
        policy_path("glam-cp")
    with pytest.raises(ValueError, match="no policy"):
        resolve_policy(tmp_path / "missing")


@pytest.mark.slow
def test_the_shipped_policy_solves_most_episodes_of_its_level(tmp_path):
    """The README's first command, cut to the trained policy: it must beat the zero-shot LM's 0%
    by far (sampled, it scored 0.83 on 100 held-out episodes when shipped; see its README.md)."""
    out = tmp_path / "eval"
    rc = main(["eval", "--agents", "glam", "--envs", "BabyAI-Text-GoToLocalS5N2-v0", "--episodes", "20",
               "--out", str(out), "--quiet"])
    assert rc == 0
    (row,) = json.loads((out / "results.json").read_text())["results"]
    assert row["summary"]["agent"].startswith("glam-cpu")
    assert row["summary"]["success_rate"] >= 0.6
