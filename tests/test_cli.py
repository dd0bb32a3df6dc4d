"""The ``llmrl`` command line, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llmrl.cli import main


@pytest.mark.slow
def test_eval_smoke_with_the_real_model(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["eval", "--agents", "random,llm,bot", "--envs", "BabyAI-Text-GoToLocalS5N2-v0",
               "--episodes", "2", "--n-envs", "2", "--out", str(out), "--quiet",
               "--cache-file", str(tmp_path / "cache.sqlite")])
    assert rc == 0
    data = json.loads((out / "results.json").read_text())
    agents = [r["summary"]["agent"] for r in data["results"]]
    assert agents == ["random", "llm", "bot"]
    llm = data["results"][1]["summary"]
    assert llm["lm_calls"] >= 1 and llm["episodes"] == 2
    # A greedy policy revisits the same prompts: the result cache answers those.
    assert llm["cache_hits"] + llm["cache_misses"] == llm["env_steps"]
    assert data["meta"]["model"] == "gemma-3-270m"
    assert "| BabyAI-Text-GoToLocalS5N2-v0 | llm | 2 |" in capsys.readouterr().out


def test_console_script_reports_bad_input():
    r = subprocess.run([sys.executable, "-m", "llmrl.cli", "eval", "--agents", "genius"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "unknown agent 'genius'" in r.stderr
    r = subprocess.run([sys.executable, "-m", "llmrl.cli", "eval", "--envs", "BabyAI-Nope"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "unknown environment 'BabyAI-Nope'" in r.stderr


def test_unknown_model_fails_with_a_message_not_a_traceback(tmp_path):
    with pytest.raises(SystemExit, match="llmrl: unknown model 'no-such-model'"):
        main(["eval", "--agents", "llm", "--model", "no-such-model", "--episodes", "1", "--out", str(tmp_path), "--quiet"])


def test_resume_keeps_finished_pairs_and_runs_the_rest(tmp_path):
    out = tmp_path / "run"
    base = ["eval", "--envs", "BabyAI-Text-GoToLocalS5N2-v0", "--episodes", "3", "--n-envs", "3",
            "--out", str(out), "--quiet"]
    assert main(base + ["--agents", "bot"]) == 0
    first = json.loads((out / "results.json").read_text())["results"][0]
    assert main(base + ["--agents", "bot,random", "--resume"]) == 0
    data = json.loads((out / "results.json").read_text())
    assert [r["summary"]["agent"] for r in data["results"]] == ["bot", "random"]
    # The bot's pair was kept as it was (same wall time), not run again.
    assert data["results"][0]["summary"]["wall_seconds"] == first["summary"]["wall_seconds"]
    assert "--resume" in data["meta"]["command"]


def test_suite_runs_the_chosen_tests_and_names_unknown_ones(tmp_path):
    out = tmp_path / "suite"
    rc = main(["eval", "--suite", "glam-generalisation", "--tests", "renamed-objects,french", "--agents", "bot",
               "--envs", "BabyAI-Text-GoToLocalS5N2-v0", "--episodes", "3", "--out", str(out), "--quiet"])
    assert rc == 0
    rows = [r["summary"] for r in json.loads((out / "results.json").read_text())["results"]]
    assert [r["env_id"] for r in rows] == ["GoToLocalS5N2-v0:renamed-objects", "GoToLocalS5N2-v0:french"]
    assert all(r["success_rate"] == 1.0 for r in rows)  # the text changes, the level does not
    with pytest.raises(SystemExit, match="unknown test.*frnch.*choose from original"):
        main(["eval", "--suite", "glam-generalisation", "--tests", "frnch", "--out", str(out)])


def test_the_world_model_suite_runs_the_world_model_study(tmp_path, monkeypatch, capsys):
    from llmrl.recipes import world_model
    from llmrl.runs import RunResult

    seen = {}

    def fake_run(config, out, *, resume=False, progress=True):  # the study itself is tested in tests/recipes
        seen.update(model=config.model, out=out, resume=resume)
        return RunResult("world-model", tmp_path, {"predict/copy/exact": 0.5})

    monkeypatch.setattr(world_model, "run", fake_run)
    assert main(["eval", "--suite", "world-model", "--model", "smollm2-135m-instruct", "--out", str(tmp_path),
                 "--resume", "--quiet"]) == 0
    assert seen == {"model": "smollm2-135m-instruct", "out": str(tmp_path), "resume": True}
    assert "predict/copy/exact 0.5" in capsys.readouterr().out


def test_train_and_plot_refuse_bad_input_with_a_message(tmp_path):
    with pytest.raises(SystemExit, match="less than one update"):
        main(["train", "glam", "--out", str(tmp_path / "r"), "--total-env-steps", "8"])
    with pytest.raises(SystemExit, match="unknown recipe 'glm' \\(did you mean glam\\?\\)"):
        main(["train", "glm", "--out", str(tmp_path / "r")])
    with pytest.raises(SystemExit, match="config.json"):
        main(["plot", str(tmp_path), "--out", str(tmp_path / "rep")])


def test_train_lists_every_recipe_with_its_presets(capsys):
    assert main(["train", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("glam", "symbolic-ppo", "kalm", "ellm"):
        assert f"\n{name} " in "\n" + out
    assert out.count("presets: paper, cpu") == 4


def test_a_recipes_help_shows_its_fields_and_each_presets_value(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "ellm", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--dqn.learning-rate" in out and "[paper: 6.25e-05; cpu: 0.00025]" in out
    assert "--explorer.threshold" in out and "--stage" not in out
    with pytest.raises(SystemExit):
        main(["train", "kalm", "--help"])
    assert "--stage {all,collect,ground,imagine,train,evaluate}" in " ".join(capsys.readouterr().out.split())


BLOCK_IMPORTS = """
import sys

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("crafter", "mujoco"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NotInstalled())
from llmrl.cli import main
"""


@pytest.mark.parametrize("argv, expect", [
    (["train", "glam", "--help"], "--ppo.learning-rate"),
    (["train", "--list"], "unavailable: recipe 'ellm' needs the package 'crafter'"),
    (["--help"], "train"),
])
def test_glam_needs_neither_crafter_nor_mujoco(argv, expect):
    code = BLOCK_IMPORTS + f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    assert not e.code, e\n"
    code += "import llmrl.envs, gymnasium\ngymnasium.make('BabyAI-Text-GoToLocal-v0')\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert expect in r.stdout
