"""The KALM pipeline end to end at a tiny scale, through the CLI, with the real env, LM and embedder."""

import json

import numpy as np
import pytest

from llmrl.cli import main
from llmrl.data import EpisodeDataset
from llmrl.recipes import kalm

TINY = {"n_real_episodes": 12, "grounding.episodes": 8, "grounding.batch_size": 4,
        "grounding.model": "smollm2-135m-instruct", "imagination.rephrase": 3, "imagination.easy": 3,
        "imagination.hard": 2, "imagination.batch_size": 4, "imagination.drop_beyond": 10.0, "algos": ("bc",), "offline_seeds": (0,),
        "goal_encoders": ("bow", "lm-mean"), "gradient_steps": 100, "snapshots": 1, "eval_episodes": 4,
        "workers": 1}


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
    with pytest.raises(ValueError, match="choose from greedy, sampled"):
        kalm.config_from("cpu", eval_policies=("argmax",))


def test_projection_keeps_balls_on_the_table_and_within_a_push():
    from llmrl.envs.clevr_goals import sample_goal
    from llmrl.envs.clevr_robot import X_BOUNDS, Y_BOUNDS

    prev = np.array([0.0, 0.0, 0.3, 0.3, -0.3, 0.3, 0.2, -0.1, -0.2, 0.5], np.float32)
    wild = prev.copy()
    wild[0:2] = [2.0, 0.0]  # ball 0 leaps 2 to the right, off the table
    wild[2:4] = [0.35, 0.32]  # ball 1 moves a little
    out = kalm.project_state(prev, wild, reach=0.3)
    np.testing.assert_allclose(out[0:2], [0.3, 0.0], atol=1e-6)  # a push's reach, along its way
    np.testing.assert_allclose(out[2:4], wild[2:4], atol=1e-6)  # a possible move is kept
    edge = kalm.project_state(np.array([0.46, 0.56] * 5, np.float32), np.array([0.6, 0.7] * 5, np.float32), 0.3)
    assert edge[0] == pytest.approx(X_BOUNDS[1]) and edge[1] == pytest.approx(Y_BOUNDS[1])

    goal = sample_goal("rephrase", np.random.default_rng(0))
    raw = np.stack([prev, wild])
    episode = kalm.imaginary_episode(goal, {"observations": np.stack([prev, out]), "actions": np.array([3]),
                                            "raw_observations": raw}, reach=0.3)
    assert episode.infos["raw_off_table"] == 1 and episode.infos["raw_beyond_dynamics"] == 1  # KALM's counts
    assert episode.infos["raw_excess"] == pytest.approx(1.7, abs=1e-5)  # 2.0 wanted, 0.3 allowed
    assert kalm.plausibility([episode], raw=True)["off_table"] == 1.0
    assert kalm.plausibility([episode])["off_table"] == 0.0


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
    quality = json.loads((dirs["imagine"] / "quality.json").read_text())
    assert {"rephrase", "easy", "hard", "length_cap", "push_reach"} <= set(quality)
    assert [quality[lv]["rollouts"] for lv in ("rephrase", "easy", "hard")] == [3, 3, 2]
    levels = [e.infos["level"] for e in imagined]
    assert [levels.count(lv) for lv in ("rephrase", "easy", "hard")] == [quality[lv]["kept"] for lv in
                                                                       ("rephrase", "easy", "hard")]
    assert all(len(e.actions) == 1 for e in imagined if e.infos["level"] == "easy")  # judged after one step
    cap = quality["length_cap"]
    assert cap == int(np.ceil(2 * np.mean([len(e.actions) for e in real]))) and all(
        len(e.actions) <= cap for e in imagined)
    assert all(e.infos["raw_excess"] <= 10.0 for e in imagined)  # the rest were dropped
    assert all(kalm.plausibility([e])["off_table"] == 0 for e in imagined)  # projected onto the table

    results = json.loads((dirs["evaluate"] / "results.json").read_text())
    runs = {f"{enc}-bc{data}-s0{policy}@100" for enc in ("bow", "lm-mean")
            for data in ("", "+kalm-rephrase", "+kalm-easy", "+kalm-hard") for policy in ("", "~sampled")}
    assert set(results) == {"random", "expert", "grounded-lm"} | runs
    assert set(results["bow-bc-s0@100"]) == {"seen", "rephrase", "easy", "hard"}
    assert set(results["bow-bc+kalm-easy-s0@100"]) == {"seen", "easy"}
    assert all(len(v) == 4 for a in results for v in results[a].values())
    assert np.mean(results["expert"]["seen"]) > np.mean(results["random"]["seen"]) or np.mean(
        results["expert"]["seen"]) == 1.0
    capsys.readouterr()

    # Every stage is finished: a re-run does no work and prints the same table.
    mtimes = {s: (d / "done.json").stat().st_mtime for s, d in dirs.items()}
    assert main(["train", "kalm", "--out", str(out), *tiny_flags()]) == 0
    assert {s: (d / "done.json").stat().st_mtime for s, d in dirs.items()} == mtimes
    table = capsys.readouterr().out
    assert "| bow bc+KALM |" in table and "| bow bc+KALM (sampled) |" in table and "| lm-mean bc (sampled) |" in table

    # A changed offline setting redoes training and evaluation only.
    assert main(["train", "kalm", "--stage", "train", "--out", str(out), "--quiet", *tiny_flags(gradient_steps=50)]) == 0
    assert len(list(out.glob("collect-*"))) == 1 and len(list(out.glob("ground-*"))) == 1
    assert len(list(out.glob("train-*"))) == 2

    # Offline runs in two worker processes give the same agents and the same results as in one.
    import shutil

    import torch

    shutil.copytree(dirs["train"], tmp_path / "train")
    shutil.rmtree(dirs["evaluate"])
    dirs["evaluate"].mkdir()  # an interrupted evaluation that had done only the single agents
    (dirs["evaluate"] / "partial.json").write_text(json.dumps({k: results[k] for k in kalm.SINGLE_AGENTS}))
    for done in [dirs["train"] / "done.json", *dirs["train"].glob("*-s0")]:  # keep the goal vectors
        shutil.rmtree(done) if done.is_dir() else done.unlink()
    assert main(["train", "kalm", "--out", str(out), "--quiet", "--resume", *tiny_flags(), "--workers", "2"]) == 0
    for run in (tmp_path / "train").glob("*-s0"):
        before, after = (torch.load(d / "agent.pt", weights_only=True)["nets"] for d in (run, dirs["train"] / run.name))
        assert all(torch.equal(before[k], after[k]) for k in before), run.name
    assert json.loads((dirs["evaluate"] / "results.json").read_text()) == results
