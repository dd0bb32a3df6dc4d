"""The ELLM comparison end to end at a tiny scale, through the CLI, with the real game, LM and embedder."""

import json
import math

import numpy as np
import pytest
import torch

from llmrl.cli import main
from llmrl.envs import crafter_text as ct
from llmrl.recipes import ellm

TINY = {"total_env_steps": 320, "n_envs": 2, "episode_length": 40, "dqn.learning_starts": 64, "dqn.batch_size": 16,
        "log_every": 80, "checkpoint_every": 160, "dqn.target_update": 100, "dqn.eps_decay": 200,
        "explorer.lm_batch": 4, "explorer.max_lag": 8, "torch_threads": 1, "lm_torch_threads": 1,
        "model": "smollm2-135m-instruct", "eval_episodes": 2}


def flags(**fields):
    out = []
    for name, value in fields.items():
        out += ["--" + name.replace("_", "-"), ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    return out


def test_crafter_score_is_the_geometric_mean_of_success_rates_in_percent():
    assert ellm.crafter_score(np.ones(22)) == pytest.approx(100.0)
    assert ellm.crafter_score(np.zeros(22)) == 0.0
    assert ellm.crafter_score(np.array([0.5, 0.0])) == pytest.approx(math.sqrt(51) - 1)


@pytest.mark.slow
def test_comparison_runs_through_the_cli_and_reports_every_method(tmp_path, capsys):
    out = tmp_path / "ellm"
    # Half of TINY's steps (the suite's time): 4 episodes per method, logged every 40 steps.
    tiny = {**TINY, "total_env_steps": 160, "log_every": 40, "checkpoint_every": 80}
    assert main(["train", "ellm", "--preset", "cpu", "--out", str(out), "--quiet",
                 *flags(methods=("ellm", "none", "oracle", "apt", "novelty", "rnd", "random"), seeds=(1,), lm_cache=tmp_path / "lm.sqlite",
                        **tiny)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["methods"]) == ["ellm", "novelty", "apt", "rnd", "oracle", "none", "random"]
    for method, entry in summary["methods"].items():
        run = out / f"{method}-s1"
        rows = (run / "progress.csv").read_text().splitlines()
        assert [int(r.split(",")[0]) for r in rows[1:]] == [40, 80, 120, 160]
        episodes = [json.loads(line) for line in (run / "episodes.jsonl").read_text().splitlines()]
        assert len(episodes) == 4 and all(e["length"] == 40 for e in episodes if not e["died"])
        assert 0 <= entry["crafter_score"]["mean"] <= 100
        assert set(entry["success"]) == set(ct.ACHIEVEMENTS)
        evals = [json.loads(line) for line in (run / "eval_episodes.jsonl").read_text().splitlines()]
        assert len(evals) == 2 and all(set(e["unlocked"]) <= set(ct.ACHIEVEMENTS) for e in evals)
        assert 0 <= entry["eval_crafter_score"]["mean"] <= 100
    lm_report = json.loads((out / "ellm-s1" / "explorer.json").read_text())
    assert lm_report["lm_new_prompts"] > 0 and lm_report["suggestions"]
    assert 0 < lm_report["lm_share_of_wall"] < 1
    assert set(lm_report["quality"]) <= {"good", "poorly_timed", "bad", "invalid"} and sum(lm_report["quality"].values())
    assert summary["methods"]["ellm"]["quality"]["suggestions"] == sum(lm_report["quality"].values())
    episodes = {m: [json.loads(line) for line in (out / f"{m}-s1" / "episodes.jsonl").read_text().splitlines()]
                for m in ("none", "novelty", "apt")}
    assert all(e["intrinsic"] == 0 for e in episodes["none"])
    assert all(e["intrinsic"] > 0 for e in episodes["novelty"])  # ELLM's novelty pays every new action tried
    assert all(e["intrinsic"] == 0 for e in episodes["apt"])  # APT pays sampled batches, not steps
    assert json.loads((out / "apt-s1" / "done.json").read_text())["updates"] > 0
    assert json.loads((out / "random-s1" / "done.json").read_text())["updates"] == 0  # a reference, not a learner
    assert "| ellm | 1 |" in capsys.readouterr().out

    # The folder holds runs: without --resume it is refused; with it, finished runs are kept and
    # only the summary is rewritten.
    before = (out / "none-s1" / "progress.csv").read_text()
    same = dict(methods=("none",), seeds=(1,), lm_cache=tmp_path / "lm.sqlite", **tiny)
    with pytest.raises(SystemExit, match="--resume"):
        main(["train", "ellm", "--out", str(out), "--quiet", *flags(**same)])
    assert main(["train", "ellm", "--out", str(out), "--quiet", "--resume", *flags(**same)]) == 0
    assert (out / "none-s1" / "progress.csv").read_text() == before

    # Other settings in the same folder are refused with the fix.
    with pytest.raises(SystemExit, match="total_env_steps.*new --out"):
        main(["train", "ellm", "--out", str(out), "--quiet", "--resume", *flags(**{**same, "total_env_steps": 400})])


class _KilledAt:
    """Wraps the vector env so that it raises after ``n`` steps, as a kill would stop a run."""

    def __init__(self, n):
        self.n, self.real = n, ct.make_vec

    def __call__(self, *args, **kwargs):
        envs, budget = self.real(*args, **kwargs), self
        step = envs.step

        def dying_step(actions):
            budget.n -= 1
            if budget.n < 0:
                raise KeyboardInterrupt
            return step(actions)

        envs.step = dying_step
        return envs


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    config = ellm.config_from("cpu", **{**TINY, "methods": ("apt",), "seeds": (2,)})
    run = tmp_path / "apt-s2"
    monkeypatch.setattr(ct, "make_vec", _KilledAt(100))  # dies after 200 of 320 steps
    with pytest.raises(KeyboardInterrupt):
        ellm.train_run(config, "apt", 2, run, progress=False)
    assert not (run / "done.json").exists()
    rows_at_kill = (run / "progress.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows_at_kill[1:]] == ["80", "160"]
    monkeypatch.undo()
    with pytest.raises(FileExistsError, match="resume"):
        ellm.train_run(config, "apt", 2, run, progress=False)
    killed = torch.load(run / "checkpoints" / "latest.pt", weights_only=False)["bonus"]["apt"]
    assert killed["mean_distance"] > 0  # APT's running statistics are part of the checkpoint
    ellm.train_run(config, "apt", 2, run, resume=True, progress=False)
    rows = (run / "progress.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == [80, 160, 240, 320]
    state = json.loads((run / "done.json").read_text())
    assert state["env_steps"] == 320 and state["updates"] > 0
    episodes = [json.loads(line) for line in (run / "episodes.jsonl").read_text().splitlines()]
    assert [e["env_steps"] for e in episodes] == sorted(e["env_steps"] for e in episodes)


def test_bad_settings_name_the_problem():
    with pytest.raises(ValueError, match="methods"):
        ellm.config_from("cpu", methods=("ellm", "curiosity"))
    with pytest.raises(ValueError, match="observation"):
        ellm.config_from("cpu", observation="voxels")
    with pytest.raises(ValueError, match="preset"):
        ellm.config_from("laptop")


@pytest.mark.slow
def test_the_paper_preset_runs_on_stacked_gray_frames_with_goal_conditioning(tmp_path):
    config = ellm.config_from("paper", **{
        "methods": ("novelty",), "seeds": (1,), "total_env_steps": 64, "n_envs": 2, "episode_length": 20,
        "dqn.buffer_size": 256, "dqn.learning_starts": 32, "dqn.batch_size": 8, "log_every": 32,
        "checkpoint_every": 64, "eval_episodes": 1, "torch_threads": 1})
    assert config.observation == "pixels" and config.goal_conditioned and config.dqn.dueling
    run = ellm.train_run(config, "novelty", 1, tmp_path / "novelty-s1", progress=False)
    state = torch.load(run / "checkpoints" / "latest.pt", weights_only=False)
    assert state["loop"]["t"] == 64
    assert json.loads((run / "done.json").read_text())["updates"] > 0


@pytest.mark.slow
def test_ellm_on_ray_env_runners_and_lm_replicas_writes_the_plain_runs_rows(tmp_path):
    """--ray: Crafter-Text in 2 env runners and the explorer's LM on a Ray replica; same episodes,
    same suggestions, same losses as in one process."""
    pytest.importorskip("ray")
    import csv

    timing = {"wall_s", "steps_per_s", "lm_share"}

    def rows(run):
        with open(run / "progress.csv", newline="") as f:
            return [{k: v for k, v in r.items() if k not in timing} for r in csv.DictReader(f)]

    short = {**TINY, "methods": ("ellm",), "seeds": (1,), "eval_episodes": 0, "total_env_steps": 80,
             "checkpoint_every": 80}
    # Each run its own LM cache: a shared one would answer the second run's prompts for free.
    plain = ellm.config_from("cpu", **short, lm_cache=str(tmp_path / "plain.sqlite"))
    on_ray = ellm.config_from("cpu", **short, lm_cache=str(tmp_path / "ray.sqlite"),
                              **{"ray.address": "local", "ray.env_runners": 2})
    a = ellm.train_run(plain, "ellm", 1, tmp_path / "plain", progress=False)
    b = ellm.train_run(on_ray, "ellm", 1, tmp_path / "ray", progress=False)
    assert len(rows(a)) == 1 and rows(a) == rows(b)
    assert int(rows(b)[0]["lm_new_prompts"]) > 0  # the replica, not a cache, answered
    assert (a / "episodes.jsonl").read_text() == (b / "episodes.jsonl").read_text()
