"""`llmrl train pets`: PETS vs SAC (and PETS from the LM's prior) end to end at the smoke budget;
resuming skips finished work and finishes a killed run exactly; bad settings fail first."""

from __future__ import annotations

import json

import pytest

from llmrl.cli import main
from llmrl.lm.base import Generation, LanguageModel
from llmrl.recipes import pets as recipe
from llmrl.runs import read_json_lines


class NumberLM(LanguageModel):
    """Always proposes full force one way then the other (the real model is tested in tests/roles)."""

    name = "numbers"

    def __init__(self) -> None:
        super().__init__()
        self.prompts: list[str] = []

    def generate(self, prompts, max_new_tokens=64, temperature=0.0, top_p=1.0, stop=(), n=1, seed=None):
        self.prompts += list(prompts)
        return [Generation(p, (" 1, 1, -1, -1",)) for p in prompts]

    def score(self, contexts, candidates):
        raise NotImplementedError


@pytest.fixture
def lm(monkeypatch) -> NumberLM:
    fake = NumberLM()
    monkeypatch.setattr(recipe, "load_lm", lambda name, dtype: fake)
    return fake


def kinds(records: list[dict], kind: str, **match) -> list[dict]:
    return [r for r in records if r["kind"] == kind and all(r[k] == v for k, v in match.items())]


def test_the_smoke_preset_compares_every_method_on_every_task_through_the_cli(tmp_path, lm):
    assert main(["train", "pets", "--preset", "smoke", "--out", str(tmp_path / "run"), "--quiet",
                 "--sac-env-steps", "40,40,60"]) == 0
    records = read_json_lines(tmp_path / "run" / "records.jsonl")
    assert not kinds(records, "unit", task="Reacher-v5", method="pets-lm")  # the prior writes 1-D actions
    (sac_reacher,) = kinds(records, "unit", task="Reacher-v5", method="sac")
    assert sac_reacher["budget"] == 60 and [r["env_steps"] for r in kinds(records, "eval", task="Reacher-v5",
                                                                          method="sac")] == [20, 40, 60]
    for task in recipe.TASKS:
        for method in recipe.METHODS:
            if task == "Reacher-v5" and method != "pets":
                continue
            one = dict(task=task, method=method, seed=0)
            assert [r["env_steps"] for r in kinds(records, "eval", **one)] == [20, 40]
            assert all(len(r["returns"]) == 1 and r["actions"] == 10 for r in kinds(records, "eval", **one))
            (unit,) = kinds(records, "unit", **one)
            assert unit["budget"] == 40 and unit["actions_per_s"] > 0
            if method != "sac":  # one record per 10-step trial
                assert [r["env_steps"] for r in kinds(records, "episode", **one)] == [10, 20, 30, 40]
    stats = kinds(records, "unit", method="pets-lm", task="Pendulum-v1")[0]["lm_stats"]
    # 3 MPC trials (the first is random) and one evaluation start state, shared by both checkpoints
    assert (stats["proposals"], stats["usable"], stats["memo_hits"]) == (5, 5, 1)
    assert any("pendulum" in p for p in lm.prompts) and any("cart" in p for p in lm.prompts)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(summary["tasks"]) == set(recipe.TASKS)
    assert set(summary["tasks"]["Pendulum-v1"]["ratios"]) == {"sac/pets", "sac/pets-lm", "pets/pets-lm"}


ONE_UNIT = ["--preset", "smoke", "--methods", "pets", "--tasks", "Pendulum-v1", "--env-steps", "40",
            "--thresholds", "0", "--quiet"]


def without_timing(records: list[dict]) -> list[dict]:
    timing = ("act_seconds", "plan_ms", "seconds", "actions_per_s")
    return [{k: v for k, v in r.items() if k not in timing} for r in records]


def test_a_killed_run_resumes_to_the_same_records_and_a_finished_one_does_no_work(tmp_path, monkeypatch):
    main(["train", "pets", *ONE_UNIT, "--out", str(tmp_path / "whole")])
    whole = without_timing(read_json_lines(tmp_path / "whole" / "records.jsonl"))

    real, calls = recipe.mbrl.train_pets, []

    def killed_at_the_third_trial(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(recipe.mbrl, "train_pets", killed_at_the_third_trial)
    with pytest.raises(KeyboardInterrupt):
        main(["train", "pets", *ONE_UNIT, "--out", str(tmp_path / "killed")])
    monkeypatch.setattr(recipe.mbrl, "train_pets", real)
    main(["train", "pets", *ONE_UNIT, "--out", str(tmp_path / "killed"), "--resume"])
    assert without_timing(read_json_lines(tmp_path / "killed" / "records.jsonl")) == whole

    def no_work(*args, **kwargs):
        raise AssertionError("a finished unit was trained again")

    monkeypatch.setattr(recipe.mbrl, "train_pets", no_work)
    main(["train", "pets", *ONE_UNIT, "--out", str(tmp_path / "killed"), "--resume"])
    assert without_timing(read_json_lines(tmp_path / "killed" / "records.jsonl")) == whole


@pytest.mark.parametrize("change, field", [
    (dict(thresholds=(-200.0,)), "thresholds"),
    (dict(env_steps=(3000, 3000, 3000, 3000)), "env_steps"),
    (dict(sac_env_steps=(3000,)), "sac_env_steps"),
    (dict(methods=("pets", "ppo")), "methods"),
    (dict(tasks=("HalfCheetah-v5", "Pendulum-v1"), env_steps=(400, 400), thresholds=(0, 0)), "tasks"),
    (dict(eval_every=300), "eval_every"),
    (dict(env_steps=(100, 3000, 3000)), "env_steps"),
    (dict(eval_every=420, tasks=("Reacher-v5",), env_steps=(3000,), thresholds=(-4,), sac_env_steps=None),
     "Reacher-v5's trial length"),
    (dict(eval_episodes=0), "eval_episodes"),
    (dict(prior_std=0.0), "prior_std"),
])  # fmt: skip
def test_a_bad_config_is_refused_naming_the_field(change, field):
    with pytest.raises(ValueError, match=field):
        recipe.config_from("cpu", **change)
