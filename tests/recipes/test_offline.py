"""The offline recipes end to end at smoke scale: offline (BC, TD3+BC, IQL, CQL, DT), odt and lamo,
on tiny D4RL-style datasets made once for the module."""

from __future__ import annotations

import csv
import json

import pytest
from fakes import tiny_model_folder

from llmrl.cli import main
from llmrl.recipes import lamo, offline
from llmrl.runs import read_json_lines


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("LLMRL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.mark.slow
def test_offline_trains_every_algorithm_and_the_dt_at_each_stated_target(tmp_path, capsys):
    out = tmp_path / "offline"
    assert main(["train", "offline", "--preset", "smoke", "--out", str(out)]) == 0
    records = read_json_lines(out / "records.jsonl")
    assert [(r["algo"], r["target"]) for r in records] == [("bc", None), ("td3_bc", None), ("iql", None),
                                                           ("cql", None), ("dt", 50.0), ("dt", 100.0), ("dt", 150.0)]
    assert all(len(r["returns"]) == 1 and r["dataset_sha256"] == records[0]["dataset_sha256"] for r in records)
    assert (out / "runs" / "medium-cql-s0" / "agent.pt").exists() and (out / "done.json").exists()
    # A rerun with --resume finds everything done and trains nothing.
    assert main(["train", "offline", "--preset", "smoke", "--out", str(out), "--resume"]) == 0
    assert len(read_json_lines(out / "records.jsonl")) == len(records)


@pytest.mark.slow
def test_odt_records_the_dt_and_the_odt_before_and_after_fine_tuning(tmp_path):
    out = tmp_path / "odt"
    assert main(["train", "odt", "--preset", "smoke", "--out", str(out)]) == 0
    records = read_json_lines(out / "records.jsonl")
    assert [r["kind"] for r in records] == ["dt", "odt-offline", "odt-online"]
    assert records[-1]["env_steps"] == 2 * 200  # two online episodes of Pendulum
    with open(out / "runs" / "online-s0" / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    # One run: the pre-training rows (copied with its checkpoint), then one row per online iteration.
    assert [r["iteration"] for r in rows] == [""] * 4 + ["1", "2"] and rows[-1]["online_return"]


@pytest.mark.slow
def test_lamo_runs_on_any_local_causal_lm_and_records_each_variant(tmp_path):
    model = tiny_model_folder(tmp_path / "tiny")
    out = tmp_path / "lamo"
    assert main(["train", "lamo", "--preset", "smoke", "--model", str(model), "--out", str(out)]) == 0
    records = read_json_lines(out / "records.jsonl")
    assert [r["variant"] for r in records] == ["lamo", "lamo-random", "dt"]
    params = {r["variant"]: r["trainable_params"] for r in records}
    assert params["lamo"] < params["lamo-random"]  # LoRA trains a part of what the random model trains
    assert json.loads((out / "done.json").read_text()) is not None


def test_bad_settings_name_the_problem():
    with pytest.raises(ValueError, match="algos"):
        offline.OfflineConfig(algos=("ppo",))
    with pytest.raises(ValueError, match="dt_targets"):
        offline.OfflineConfig(dt_targets=(50.0,))
    with pytest.raises(ValueError, match="fractions"):
        lamo.LaMoConfig(fractions=(0.0,))
    assert [len(lamo.fraction_of(list(range(250)), f, 0)) for f in (0.01, 0.1, 1.0)] == [3, 25, 250]
