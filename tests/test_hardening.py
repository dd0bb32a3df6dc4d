"""Bad input, hostile files and misbehaving servers: each gets a one-line error or correct behaviour,
never a traceback, never lost work, never code run from a file someone handed over.

One test (or a parametrised set) per class of fault; docs/architecture.md, "Guarantees", lists
what they guarantee.
"""

from __future__ import annotations

import json
import pickle
import socket
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from llmrl.cli import main
from llmrl.config import to_dict
from llmrl.lm.base import LMError
from llmrl.lm.cache import CachedLM
from llmrl.lm.openai import OpenAILM
from llmrl.lm.serve import LMServer, ServeLimits, serve_in_thread
from llmrl.recipes import glam

from fakes import CountingLM, MisbehavingServer, WordLM, tiny_model_folder

ENV = "BabyAI-Text-GoToLocalS5N2-v0"


def one_line_error(argv: list[str]) -> str:
    """Run the CLI and return its error: one line, starting with 'llmrl:'."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    message = str(e.value.code)
    assert message.startswith("llmrl: ") and "\n" not in message and "Traceback" not in message, message
    return message


def glam_run_folder(path: Path, **changes) -> Path:
    """A GLAM run folder as `llmrl train glam` writes it, with no weights yet."""
    config = glam.config_from("cpu", **changes)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"recipe": "glam", "label": config.label, "env_id": config.env_id,
                                                  "seed": 0, "command": None, "config": to_dict(config)}))
    return path


class Planted:
    """A pickle that, when unpickled, writes a file: stands for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


# --------------------------------------------------------------------------- 1. no code from files
def test_a_planted_pickle_in_a_shared_run_folder_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    run = glam_run_folder(tmp_path / "shared")
    (run / "checkpoints").mkdir()
    torch.save({"trainable": Planted(marker)}, run / "checkpoints" / "latest.pt")
    (run / "policy").mkdir()
    with open(run / "policy" / "weights.pt", "wb") as f:  # the old file name: never read
        pickle.dump(Planted(marker), f)
    message = one_line_error(["eval", "--policy", str(run), "--agents", "glam", "--episodes", "1",
                              "--out", str(tmp_path / "ev"), "--quiet"])
    assert "cannot be read as plain tensors" in message and not marker.exists()
    (run / "policy" / "weights.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    message = one_line_error(["eval", "--policy", str(run), "--agents", "glam", "--episodes", "1",
                              "--out", str(tmp_path / "ev"), "--quiet"])
    assert "weights.safetensors cannot be read" in message and not marker.exists()


# --------------------------------------------------------------------------- 2. nothing overwritten unasked
def test_eval_never_replaces_earlier_results_unasked(tmp_path):
    out = tmp_path / "ev"
    base = ["eval", "--envs", ENV, "--episodes", "3", "--n-envs", "3", "--out", str(out), "--quiet"]
    assert main([*base, "--agents", "bot"]) == 0
    assert "--resume" in one_line_error([*base, "--agents", "random"])
    other = [a if a != "3" else "4" for a in base]  # 4 episodes (and 4 envs) where there were 3
    assert "episodes 3 -> 4" in one_line_error([*other, "--agents", "bot", "--resume"])
    assert main([*base, "--agents", "random", "--resume"]) == 0  # the bot's pair is kept, not dropped
    kept = [r["summary"]["agent"] for r in json.loads((out / "results.json").read_text())["results"]]
    assert kept == ["random", "bot"]
    assert main([*base, "--agents", "random", "--overwrite"]) == 0
    assert [r["summary"]["agent"] for r in json.loads((out / "results.json").read_text())["results"]] == ["random"]


def test_train_never_restarts_over_a_run_unasked(tmp_path):
    run = glam_run_folder(tmp_path / "run")
    (run / "progress.csv").write_text("env_steps,updates\n512,1\n")
    assert "--resume" in one_line_error(["train", "glam", "--out", str(run), "--quiet"])
    assert "no latest.pt" in one_line_error(["train", "glam", "--out", str(run), "--quiet", "--resume"])
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "latest.pt").write_bytes(b"PK\x03\x04 truncated")
    assert "latest.pt cannot be read" in one_line_error(["train", "glam", "--out", str(run), "--quiet", "--resume"])
    assert "--resume: " in one_line_error(["train", "glam", "--out", str(run), "--quiet", "--resume",
                                           "--ppo.learning-rate", "0.5"])
    assert "holds a glam run, not a symbolic-ppo run" in one_line_error(
        ["train", "symbolic-ppo", "--out", str(run), "--quiet", "--resume"])
    assert (run / "progress.csv").read_text() == "env_steps,updates\n512,1\n"  # untouched throughout


# --------------------------------------------------------------------------- 3. validated before the work
@pytest.mark.parametrize("argv, expected", [
    (["train", "glam", "--micro-batch-size", "0"], "micro_batch_size must be positive"),
    (["train", "glam", "--checkpoint-every", "0"], "checkpoint_every must be positive"),
    (["train", "glam", "--env-id", "BabyAI-Text-Nope-v0"], "unknown env_id 'BabyAI-Text-Nope-v0'"),
    (["train", "glam", "--ppo.gamma", "1.5"], "gamma must lie in [0, 1]"),
    (["train", "ellm", "--n-envs", "0"], "n_envs must be positive"),
    (["train", "kalm", "--grounding.epochs", "0"], "epochs must be positive"),
    (["train", "glam", "--seed", "one"], "invalid int value: 'one'"),
    (["eval", "--n-envs", "0", "--agents", "bot"], "must be at least 1"),
    (["eval", "--envs", "BabyAI-Nope", "--agents", "bot"], "unknown environment 'BabyAI-Nope'"),
])
def test_bad_settings_are_refused_in_one_line_before_any_work(tmp_path, argv, expected, capsys):
    out = tmp_path / "out"
    if argv[0] == "train" and "--seed" in argv:  # argparse's own errors: usage line, exit status 2
        with pytest.raises(SystemExit) as e:
            main([*argv, "--out", str(out)])
        assert e.value.code == 2 and expected in capsys.readouterr().err
        return
    assert expected in one_line_error([*argv, "--out", str(out), *(["--quiet"] if argv[0] == "eval" else [])])
    assert not (out / "progress.csv").exists()


@pytest.mark.parametrize("where", ["file", "proc"])
def test_an_unusable_out_folder_is_named_before_any_work(tmp_path, where):
    out = tmp_path / "a-file" if where == "file" else Path("/proc/llmrl-test/out")
    if where == "file":
        out.write_text("not a folder")
    for argv in (["eval", "--agents", "bot", "--envs", ENV, "--episodes", "1", "--quiet"],
                 ["train", "glam", "--quiet"]):
        message = one_line_error([*argv, "--out", str(out)])
        assert str(out) in message and ("is a file" in message or "cannot create" in message)


def test_bad_policy_folders_and_results_files_are_named(tmp_path):
    empty = glam_run_folder(tmp_path / "empty")
    assert "has neither" in one_line_error(["eval", "--policy", str(empty), "--agents", "glam", "--out",
                                            str(tmp_path / "e1"), "--quiet"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    assert "not a `llmrl train glam` config" in one_line_error(
        ["eval", "--policy", str(tmp_path / "bad"), "--agents", "glam", "--out", str(tmp_path / "e2"), "--quiet"])
    out = tmp_path / "e3"
    out.mkdir()
    (out / "results.json").write_text('{"meta": {}, "results": [{"summary": 3}]}')
    assert "is damaged" in one_line_error(["eval", "--agents", "bot", "--envs", ENV, "--episodes", "1", "--out",
                                           str(out), "--resume", "--quiet"])


# --------------------------------------------------------------------------- 4. numbers checked at the edge
class NaNLM(WordLM):
    """Serves NaN (or positive) log-probs, as damaged weights or a broken server would."""

    def __init__(self, value: float) -> None:
        super().__init__(bos=True)
        self.value = value

    def token_logprobs(self, text):
        return [(t, self.value) for t, _ in super().token_logprobs(text)]


@pytest.mark.parametrize("value", [float("nan"), 0.7])
def test_scores_that_are_no_log_probabilities_stop_the_run(value):
    server, url = serve_in_thread(NaNLM(value))
    try:
        with pytest.raises(LMError, match="no log-probability"):
            OpenAILM(url, "word-lm", backoff=0.01).score(["Goal: go"], ["left", "right"])
    finally:
        server.stop()


class Corrupting(MisbehavingServer):
    """Answers with log-prob fields of the wrong types."""

    def __init__(self, model, damage: str, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.damage = damage

    def completions(self, body):
        reply = super().completions(body)
        block = reply["choices"][0].get("logprobs")
        if self.damage == "string logprobs" and block:
            block["token_logprobs"] = ["-0.5" for _ in block["token_logprobs"]]
        elif self.damage == "null offsets" and block:
            block["text_offset"] = [None for _ in block["text_offset"]]
        elif self.damage == "odd usage":
            reply["usage"] = "lots"
        return reply


@pytest.mark.parametrize("damage", ["string logprobs", "null offsets"])
def test_malformed_server_replies_are_lm_errors(damage):
    server, url = serve_in_thread(WordLM(bos=True), server_class=Corrupting, damage=damage)
    try:
        with pytest.raises(LMError, match="malformed response"):
            OpenAILM(url, "word-lm", backoff=0.01, logprobs_mode="echo").score(["Goal: go"], ["left"])
    finally:
        server.stop()


def test_an_odd_usage_field_is_ignored_not_fatal():
    server, url = serve_in_thread(WordLM(bos=True), server_class=Corrupting, damage="odd usage")
    try:
        got = OpenAILM(url, "word-lm", backoff=0.01, logprobs_mode="echo").score(["Goal: go"], ["left"])[0]
        direct = WordLM(bos=True).score(["Goal: go"], ["left"])[0]
        assert got.logprob.tolist() == direct.logprob.tolist()
    finally:
        server.stop()


def test_damaged_cache_entries_are_recomputed_with_a_warning(tmp_path):
    path = tmp_path / "c.sqlite"
    CachedLM(CountingLM(), path).score(["a", "b"], ["x", "y"])
    CachedLM(CountingLM(), path).generate(["p"], max_new_tokens=3)
    with sqlite3.connect(path) as db:
        keys = [k for (k,) in db.execute("SELECT key FROM results")]
        db.execute("UPDATE results SET value = ? WHERE key = ?", ("{not json", keys[0]))
        db.execute("UPDATE results SET value = ? WHERE key = ?", ('{"logprob": ["NaN", 1]}', keys[1]))
        db.execute("UPDATE results SET value = ? WHERE key = ?", ("[17]", keys[2]))
    inner = CountingLM()
    lm = CachedLM(inner, path)
    with pytest.warns(UserWarning, match="damaged entry"):
        scores = lm.score(["a", "b"], ["x", "y"])
        texts = lm.generate(["p"], max_new_tokens=3)
    assert [s.logprob.tolist() for s in scores] == [s.logprob.tolist() for s in CountingLM().score(["a", "b"], ["x", "y"])]
    assert texts[0].texts == CountingLM().generate(["p"], max_new_tokens=3)[0].texts
    assert sorted(inner.scored) == ["a", "b"] and inner.generated == ["p"]  # recomputed ...
    again = CachedLM(CountingLM(), path)
    again.score(["a", "b"], ["x", "y"])
    assert again.stats.cache_hits == 2  # ... and written back


def test_a_model_with_damaged_weights_is_refused_at_load(tmp_path):
    from safetensors.torch import load_file, save_file

    from llmrl.lm import load_model

    folder = tiny_model_folder(tmp_path / "tiny")
    assert load_model(str(folder), dtype="fp32").score(["Goal: go"], ["left", "right"])[0].logprob.max() <= 0
    weights = load_file(folder / "model.safetensors")
    name = next(iter(weights))
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(LMError, match="non-finite weights"):
        load_model(str(folder), dtype="fp32")
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{truncated")
    with pytest.raises(LMError, match="damaged or incomplete"):
        load_model(str(folder), dtype="fp32")


def test_a_damaged_conversion_is_detected_and_stale_temp_folders_are_swept(tmp_path, monkeypatch):
    from llmrl.lm import gguf

    monkeypatch.setenv("LLMRL_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "model.gguf"
    source.write_bytes(b"GGUF" + bytes(100))
    target = gguf.converted_dir(source)
    target.mkdir(parents=True)
    (target / "model.safetensors").write_bytes(b"weights" * 100)
    files = {"model.safetensors": [700, gguf.file_fingerprint(target / "model.safetensors")]}
    (target / gguf.MARKER).write_text(json.dumps({"files": files}))
    assert gguf.intact(target) and gguf.ensure_converted(source) == target
    (target / "model.safetensors").write_bytes(b"weights")  # truncated
    assert not gguf.intact(target)
    stale = target.parent / (target.name + ".abc123")
    stale.mkdir()
    with pytest.warns(UserWarning, match="damaged or incomplete"), pytest.raises(LMError, match="could not load"):
        gguf.ensure_converted(source)  # not a real GGUF: converting again fails, with its own message
    assert not stale.exists()


# --------------------------------------------------------------------------- 5. bounded everything
def trickling_server(interval: float) -> tuple[socket.socket, str]:
    """Answers any request with valid headers, then one byte of body every ``interval`` seconds."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
                for _ in range(1000):
                    conn.sendall(b" ")
                    time.sleep(interval)
            except OSError:
                pass
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_trickling_server_cannot_hold_the_client_past_its_timeout():
    listener, url = trickling_server(0.2)  # a byte every 0.2 s: no single read ever times out
    try:
        lm = OpenAILM(url, "m", timeout=1.0, max_retries=0, logprobs_mode="echo")
        start = time.monotonic()
        with pytest.raises(LMError, match="no complete answer .* within 1 s"):
            lm.generate(["hi"], max_new_tokens=1)
        assert time.monotonic() - start < 3
    finally:
        listener.close()


def test_the_server_bounds_each_request_and_serves_loopback_only():
    server, url = serve_in_thread(WordLM(), limits=ServeLimits(max_prompts=4, max_n=2, max_tokens=8))
    lm = OpenAILM(url, "word-lm", backoff=0.01, max_retries=0)
    try:
        for call, limit in ((lambda: lm.generate(["a"] * 5, max_new_tokens=1), "max_prompts"),
                            (lambda: lm.generate(["a"], max_new_tokens=1, temperature=1.0, n=3), "max_n"),
                            (lambda: lm.generate(["a"], max_new_tokens=9), "max_tokens")):
            if limit == "max_prompts":  # the client sends one prompt per request: ask the server directly
                with pytest.raises(LMError, match=limit):
                    lm._post("/v1/completions", {"prompt": ["a"] * 5, "max_tokens": 1})
                continue
            with pytest.raises(LMError, match=limit):
                call()
    finally:
        server.stop()
    with pytest.raises(ValueError, match="no authentication"):
        LMServer(WordLM(), host="0.0.0.0")


class SlowLM(WordLM):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def generate(self, prompts, **kwargs):
        self.calls += 1
        time.sleep(0.3)
        return super().generate(prompts, **kwargs)


def test_a_client_that_hangs_up_frees_the_server():
    model = SlowLM()
    server, url = serve_in_thread(model)
    try:
        with pytest.raises(LMError):
            OpenAILM(url, "word-lm", timeout=0.5, max_retries=0)._post(
                "/v1/completions", {"prompt": ["a"] * 20, "max_tokens": 2})
        time.sleep(1.5)
        assert model.calls < 8  # the 20 prompts were not all generated for nobody
        assert server.requests["abandoned"] == 1
    finally:
        server.stop()


def test_the_goal_parser_is_linear_in_its_input():
    from llmrl.roles.explorer import parse_goals

    for text in ("- a" + " " * 200_000 + "b", "- " + "chop tree " * 20_000, "\n".join(["- x y"] * 50_000)):
        start = time.perf_counter()
        parse_goals(text)
        assert time.perf_counter() - start < 1.0  # was minutes: a regex that backtracked on spaces
    assert parse_goals("- Chop the tree.\n- " + "word " * 500 + "\n- eat cow") == ["chop tree", "eat cow"]


def test_plot_splits_runs_with_different_settings_into_labelled_series(tmp_path):
    from llmrl.report.plot import find_runs, group_runs

    for seed, lr in ((0, 1e-3), (1, 1e-3), (2, 5e-4)):
        run = glam_run_folder(tmp_path / f"s{seed}", **{"ppo.learning_rate": lr, "seed": seed})
        (run / "progress.csv").write_text("env_steps,success_rate\n512,0.5\n1024,0.6\n")
    groups = group_runs(find_runs([tmp_path]))
    assert sorted((label, len(runs)) for (_, label), runs in groups.items()) == [
        ("glam-cpu [ppo.learning_rate=0.0005]", 1), ("glam-cpu [ppo.learning_rate=0.001]", 2)]


def test_bounded_numbers_of_the_cli(tmp_path):
    assert "--lm-timeout must be positive" in one_line_error(
        ["eval", "--agents", "bot", "--lm-timeout", "0", "--out", str(tmp_path), "--quiet"])
    from llmrl.lm import load_model

    lm = load_model("openai:http://127.0.0.1:9/v1?timeout=2.5&retries=1#m")
    assert (lm.timeout, lm.max_retries, lm.base_url) == (2.5, 1, "http://127.0.0.1:9")
    with pytest.raises(LMError, match="unknown option 'speed'"):
        load_model("openai:http://127.0.0.1:9/v1?speed=2#m")
    assert np.isfinite(lm.timeout)
