"""GLAM's trainer: config checks, a run killed with SIGKILL resumes to the uninterrupted result,
and a trained run evaluates through the CLI (generalisation suite)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmrl.recipes.glam import PROGRESS_COLUMNS, GLAMConfig, config_from
from llmrl.rl.ppo import PPOConfig

# A few seconds per update on the real model: 2 environments x 4 steps, one epoch.
TINY = [
    "--env-id", "BabyAI-Text-GoToLocalS5N2-v0", "--n-envs", "2", "--ppo.n-steps", "4",
    "--ppo.minibatch-size", "4", "--micro-batch-size", "4", "--ppo.n-epochs", "1", "--total-env-steps", "32",
    "--eval-episodes", "0", "--ppo.learning-rate", "1e-3", "--torch-threads", "1", "--model", "smollm2-135m-instruct",
]
TIMING = {"wall_s", "steps_per_s", "rollout_s", "update_s"}


def test_presets_are_configs_and_bad_overrides_are_named():
    assert config_from("cpu").batch_size == 16 * 32
    assert config_from("paper").n_envs == 32 and config_from("paper").ppo.n_steps == 40
    assert config_from("cpu", **{"ppo.learning_rate": 1e-3}).ppo.learning_rate == 1e-3
    with pytest.raises(ValueError, match="unknown preset 'gpu'"):
        config_from("gpu")
    with pytest.raises(ValueError, match="unknown GLAMConfig field.*lr.*ppo.learning_rate"):
        config_from("cpu", lr=1e-3)
    with pytest.raises(ValueError, match="multiple of micro_batch_size"):
        GLAMConfig(ppo=PPOConfig(minibatch_size=10), micro_batch_size=4)
    with pytest.raises(ValueError, match="less than one update"):
        GLAMConfig(total_env_steps=10)
    for field, value in (("prompt_style", "test"), ("articles", "french"), ("init", "scratch")):
        with pytest.raises(ValueError, match=field):
            GLAMConfig(**{field: value})


def test_runs_from_before_the_prompt_style_read_as_joined(tmp_path):
    from llmrl.config import to_dict
    from llmrl.recipes.glam import read_config

    old = {k: v for k, v in to_dict(config_from("cpu")).items() if k not in ("prompt_style", "articles", "init")}
    (tmp_path / "config.json").write_text(json.dumps({"recipe": "glam", "config": old}))
    assert read_config(tmp_path).prompt_style == "joined"
    assert config_from("cpu").prompt_style == "training"


def _train(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "llmrl.cli", "train", "glam", "--out", str(out), "--quiet", *TINY, *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "progress.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_and_matches_the_uninterrupted_run(tmp_path):
    # The two runs side by side (one torch thread each); the second is killed as soon as its first
    # checkpoint lands, i.e. during update 2.
    full, killed = tmp_path / "full", tmp_path / "killed"
    p_full = _train(full)
    p = _train(killed)
    ckpt = killed / "checkpoints" / "latest.pt"
    deadline = time.time() + 300
    while not ckpt.exists():
        assert p.poll() is None, p.communicate()[0]
        assert time.time() < deadline, "no checkpoint after 300 s"
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    assert len(_rows(killed)) < 4  # it really stopped early
    out, _ = p_full.communicate(timeout=600)
    assert p_full.returncode == 0, out
    reference = _rows(full)
    assert [int(r["updates"]) for r in reference] == [1, 2, 3, 4]
    assert list(csv.DictReader(open(full / "progress.csv")).fieldnames) == list(PROGRESS_COLUMNS)

    # Without --resume the folder is refused rather than overwritten.
    p = _train(killed)
    out, _ = p.communicate(timeout=120)
    assert p.returncode != 0 and "--resume" in out

    p = _train(killed, "--resume")
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    assert _rows(killed) == reference  # same losses, successes and counters, row for row
    config = json.loads((killed / "config.json").read_text())
    assert config["recipe"] == "glam" and config["seed"] == 0 and config["config"]["ppo"]["n_steps"] == 4
    assert (killed / "policy" / "weights.safetensors").exists()
    assert any((killed / "tb").iterdir())

    # A different config cannot resume this run.
    p = _train(killed, "--resume", "--ppo.learning-rate", "1e-4")
    out, _ = p.communicate(timeout=120)
    assert p.returncode != 0 and "learning_rate" in out

    # The trained policy evaluates on the generalisation suite through the CLI.
    ev = tmp_path / "gen"
    r = subprocess.run(
        [sys.executable, "-m", "llmrl.cli", "eval", "--suite", "glam-generalisation", "--policy", str(killed),
         "--agents", "glam", "--episodes", "2", "--n-envs", "2", "--out", str(ev), "--quiet"],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    results = json.loads((ev / "results.json").read_text())
    names = [x["summary"]["env_id"].split(":")[1] for x in results["results"]]
    assert names == ["original", "mixed-test-local", "renamed-objects", "invented-words",
                     "rephrased-goals", "new-actions", "french"]
    assert {x["summary"]["agent"] for x in results["results"]} == {"glam-cpu-sampled"}


def test_micro_batches_pack_sorted_prompts_to_the_token_budget():
    from llmrl.recipes.glam import micro_batches

    prompts = ["a", "b", "c", "d", "e"]
    lengths = {"a": 10, "b": 10, "c": 20, "d": 30, "e": 100}
    by_count = config_from("cpu", micro_batch_size=2)
    assert micro_batches(prompts, by_count, lengths) == [(0, 2), (2, 4), (4, 5)]
    by_tokens = config_from("cpu", micro_batch_tokens=60)
    # padded to the longest: 3 x 20 = 60 fits, then 30 alone (2 x 100 would not fit with it), then 100
    assert micro_batches(prompts, by_tokens, lengths) == [(0, 3), (3, 4), (4, 5)]
    with pytest.raises(ValueError, match="micro_batch_tokens"):
        config_from("cpu", micro_batch_tokens=-1)
