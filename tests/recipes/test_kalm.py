"""The KALM pipeline end to end at a tiny scale, through the CLI, with the real env, LM and embedder."""

import json

import numpy as np
import pytest

from llmrl.cli import main
from llmrl.data import EpisodeDataset
from llmrl.recipes import kalm

TINY = {"n_real_episodes": 12, "grounding.episodes": 8, "grounding.batch_size": 4,
        "grounding.model": "smollm2-135m-instruct", "imagination.rephrase": 3, "imagination.easy": 3,
        "imagination.hard": 2, "imagination.batch_size": 4, "algos": ("bc",), "offline_seeds": (0,),
        "gradient_steps": 100, "eval_episodes": 4}


def tiny_flags(**changes):
    fields = {**TINY, **changes}
    flags = []
    for name, value in fields.items():
        flags += ["--" + name.replace("_", "-"), ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    return flags


def test_stage_keys_change_only_downstream_of_a_changed_setting():
    base = kalm.config_from("cpu", **TINY)
    changed = kalm.config_from("cpu", **{**TINY, "gradient_steps": 200})
    for stage in ("collect", "ground", "imagine"):
        assert kalm.stage_key(base, stage) == kalm.stage_key(changed, stage)
    for stage in ("train", "evaluate"):
        assert kalm.stage_key(base, stage) != kalm.stage_key(changed, stage)
    filtered = kalm.config_from("cpu", **{**TINY, "imaginary_filter": "reached"})
    assert [kalm.stage_key(base, s) == kalm.stage_key(filtered, s) for s in kalm.STAGES] == [
        True, True, True, False, False]
    reseeded = kalm.config_from("cpu", **{**TINY, "seed": 1})
    assert all(kalm.stage_key(base, s) != kalm.stage_key(reseeded, s) for s in kalm.STAGES)


def test_bad_settings_name_the_problem():
    with pytest.raises(ValueError, match="grounding.episodes"):
        kalm.config_from("cpu", **{"n_real_episodes": 10, "grounding.episodes": 20})
    with pytest.raises(ValueError, match="bc, cql, iql"):
        kalm.config_from("cpu", algos=("ppo",))
    with pytest.raises(ValueError, match="grounding: unknown grounding task.*generation"):
        kalm.config_from("cpu", **{"grounding.tasks": ("summarise",)})
    with pytest.raises(ValueError, match="'all' or 'reached'"):
        kalm.config_from("cpu", imaginary_filter="best")
    with pytest.raises(ValueError, match="valid are"):
        kalm.config_from("cpu", n_episodes=3)


def test_a_stage_without_its_inputs_says_which_to_run(tmp_path):
    with pytest.raises(SystemExit, match="kalm --stage collect"):
        main(["train", "kalm", "--stage", "ground", "--out", str(tmp_path), "--quiet", *tiny_flags()])


@pytest.mark.slow
def test_kalm_all_runs_end_to_end_and_a_rerun_skips_finished_stages(tmp_path, capsys):
    out = tmp_path / "kalm"
    assert main(["train", "kalm", "--out", str(out), "--quiet", *tiny_flags()]) == 0
    config = kalm.config_from("cpu", **TINY)
    dirs = {s: kalm.stage_dir(out, config, s) for s in kalm.STAGES}
    assert all((d / "done.json").exists() for d in dirs.values())

    real = EpisodeDataset.load(dirs["collect"] / "real.npz")
    exported = EpisodeDataset.from_minari("clevr-robot/expert-v0", data_path=dirs["collect"] / "minari")
    assert [e.goal for e in exported] == [e.goal for e in real] and len(real) == 12
    np.testing.assert_array_equal(exported[3].actions, real[3].actions)

    imagined = EpisodeDataset.load(dirs["imagine"] / "imaginary.npz")
    levels = [e.infos["level"] for e in imagined]
    assert levels.count("rephrase") == 3 and levels.count("easy") == 3 and levels.count("hard") == 2
    assert all(len(e.actions) == 1 for e in imagined if e.infos["level"] == "easy")  # judged after one step
    quality = json.loads((dirs["imagine"] / "quality.json").read_text())
    assert set(quality) == {"rephrase", "easy", "hard"}

    results = json.loads((dirs["evaluate"] / "results.json").read_text())
    assert set(results) == {"random", "expert", "grounded-lm", "bc-s0", "bc+kalm-s0"}
    assert all(len(results[a][lv]) == 4 for a in results for lv in ("seen", "rephrase", "easy", "hard"))
    assert np.mean(results["expert"]["seen"]) > np.mean(results["random"]["seen"]) or np.mean(
        results["expert"]["seen"]) == 1.0
    capsys.readouterr()

    # Every stage is finished: a re-run does no work and prints the same table.
    mtimes = {s: (d / "done.json").stat().st_mtime for s, d in dirs.items()}
    assert main(["train", "kalm", "--out", str(out), *tiny_flags()]) == 0
    assert {s: (d / "done.json").stat().st_mtime for s, d in dirs.items()} == mtimes
    assert "| bc+kalm |" in capsys.readouterr().out

    # A changed offline setting redoes training and evaluation only.
    assert main(["train", "kalm", "--stage", "train", "--out", str(out), "--quiet", *tiny_flags(gradient_steps=50)]) == 0
    assert len(list(out.glob("collect-*"))) == 1 and len(list(out.glob("ground-*"))) == 1
    assert len(list(out.glob("train-*"))) == 2
