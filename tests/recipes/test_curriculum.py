"""The curriculum study: a smoke run end to end through the CLI, resume, config errors, and the
wiring between teachers and learners (the ALP-GMM Box's map to tasks, per-episode GAE for PLR)."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from llmrl.cli import main
from llmrl.recipes import curriculum as cur
from llmrl.rl.curriculum import Curriculum
from llmrl.runs import read_json_lines


def smoke(out, *extra: str) -> int:
    return main(["train", "curriculum", "--preset", "smoke", "--out", str(out), "--quiet", *extra])


def evals(path) -> list[dict]:
    return [r for r in read_json_lines(path / "records.jsonl") if r["kind"] == "eval"]


def test_the_smoke_study_runs_end_to_end_and_every_number_can_be_recomputed(tmp_path):
    assert smoke(tmp_path / "run", "--teachers", "uniform,alp_gmm,plr") == 0
    records = read_json_lines(tmp_path / "run" / "records.jsonl")
    split = records[0]
    assert split["kind"] == "split" and len(split["train"]) == 3 and len(split["test"]) == 3
    rows = evals(tmp_path / "run")
    assert [(r["teacher"], r["env_steps"]) for r in rows] == [(t, s) for t in ("uniform", "alp_gmm", "plr")
                                                               for s in (0, 128, 256)]
    for r in rows:
        assert len(r["successes"]) == len(r["returns"]) == 1 * len(split["test"])  # eval_episodes per test task
        assert sum(r["task_episodes"]) == r["train_episodes"] and sum(r["task_steps"]) >= r["env_steps"] - 3 * 4
    assert rows[-1]["final"] and rows[-1]["teacher_stats"]["plr/seen_fraction"] > 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary == json.loads(json.dumps(cur.summarise(records)))
    assert set(summary["teachers"]) == {"uniform", "alp_gmm", "plr"}
    assert abs(sum(summary["budget"]["plr"]["family"].values()) - 1.0) < 1e-9


def test_resume_skips_finished_runs_and_redoes_a_cut_one(tmp_path):
    run = tmp_path / "run"
    smoke(run, "--teachers", "uniform,plr")
    before = evals(run)
    lines = (run / "records.jsonl").read_text().splitlines()
    (run / "records.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # plr's last record lost: plr was cut
    (run / "done.json").unlink()
    smoke(run, "--teachers", "uniform,plr", "--resume")
    after = evals(run)
    assert [r for r in after if r["teacher"] == "uniform"] == [r for r in before if r["teacher"] == "uniform"]
    assert [r["env_steps"] for r in after if r["teacher"] == "plr"] == [0, 128, 256]  # redone from the start
    with pytest.raises(SystemExit):
        smoke(run, "--teachers", "uniform,plr")  # a folder that holds a run needs --resume


@pytest.mark.parametrize("field,value", [("teachers", ("uniform", "nope")), ("learner", "cnn"),
                                         ("eval_every", 100), ("total_env_steps", 200), ("test_fraction", 0.0),
                                         ("doors", ("ajar",))])  # fmt: skip
def test_a_bad_config_is_a_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        cur.config_from("smoke", **{field: value})


def test_an_alp_gmm_point_plays_the_training_task_of_its_cell_or_the_nearest_one():
    config = cur.config_from("smoke")
    train, test = config.split()
    teacher, to_index = cur.make_teacher(config, "alp_gmm", 0, train)
    centres = cur.task_centres(train, cur.task_axes(config))
    for i in range(len(train)):
        assert to_index(centres[i] + 0.01) == i
    held_out = cur.task_centres(test, cur.task_axes(config))[0]
    nearest = int(np.argmin(((centres - held_out) ** 2).sum(1)))
    assert to_index(held_out) == nearest and train[nearest] not in test
    assert isinstance(teacher.sample(), np.ndarray)


class Recorder(Curriculum):
    """A teacher that plays tasks 0, 1, 2, ... and keeps what it is told."""

    name = "recorder"

    def __init__(self) -> None:
        super().__init__(3)
        self.k, self.told = 0, []

    def sample(self):
        self.k += 1
        return (self.k - 1) % 3

    def _update(self, task, episode_return, success, **extra):
        self.told.append((task, episode_return, success, list(extra["advantages"])))


def test_each_finished_episode_reaches_the_teacher_with_its_own_gae_across_rollouts():
    teacher = Recorder()
    tasks = cur.config_from("smoke").split()[0]
    episodes = cur.TaskEpisodes(teacher, int, tasks)
    envs = [episodes.wrap(_Stub()) for _ in range(2)]
    ids = [episodes.start()[0] for _ in envs]  # what each env's reset did: tasks 0 and 1
    for env, i in zip(envs, ids):
        env.episode = i
    # rollout 1, 2 steps: env 0 finishes at t=1 (reward 1), env 1 runs on
    envs[0].step(0), envs[1].step(0)
    envs[0].step(1), envs[1].step(0)
    envs[0].episode = episodes.start()[0]  # env 0 reset: task 2
    episodes.settle(np.array([[0.1, 0.2], [0.3, 0.4]]))
    assert teacher.told == [(0, 1.0, True, [0.1, 0.3])]
    # rollout 2: env 1 finishes at t=0 (reward 0); its episode spans both rollouts
    envs[1].step(2), envs[0].step(0)
    envs[1].episode = episodes.start()[0]
    envs[1].step(0), envs[0].step(0)
    episodes.settle(np.array([[0.5, 0.6], [0.7, 0.8]]))
    assert teacher.told[1] == (1, 0.0, False, [0.2, 0.4, 0.6])
    assert episodes.episodes.tolist() == [1, 1, 0] and episodes.steps.sum() == 8


class _Stub(gym.Env):
    """An env whose action is its outcome: 0 goes on, 1 succeeds (reward 1), 2 fails (ends, reward 0)."""

    def step(self, action):
        return None, float(action == 1), action in (1, 2), False, {"success": action == 1}

    def reset(self, **kwargs):
        return None, {}


@pytest.mark.slow
def test_the_lm_teacher_runs_in_the_study(tmp_path, monkeypatch, smollm2_fp32):
    monkeypatch.setattr(cur, "_teacher_lm", lambda config: smollm2_fp32)
    result = cur.run(cur.config_from("smoke", teachers=("lm",)), tmp_path / "run", progress=False)
    last = evals(tmp_path / "run")[-1]
    assert last["teacher_stats"]["lm/lm_calls"] >= 1 and result.metrics["lm/final_success"] >= 0.0
    assert abs(sum(last["teacher_stats"][f"lm/mass_{g}"] for g in ("learning", "untried", "unsolved", "mastered"))
               - 1.0) < 1e-6


@pytest.mark.slow
def test_the_glam_learner_trains_under_plr(tmp_path):
    config = cur.config_from("smoke", teachers=("plr",), learner="glam", total_env_steps=8, eval_every=8)
    cur.run(config, tmp_path / "run", progress=False)
    rows = evals(tmp_path / "run")
    assert [r["env_steps"] for r in rows] == [0, 8] and sum(rows[-1]["task_steps"]) == 8
