"""Run-folder helpers that the recipes share."""

import gzip
import json

import pytest

from llmrl.runs import copy_study, read_json_lines, read_study


def test_json_lines_read_from_the_file_or_its_committed_gzip_copy(tmp_path):
    rows = [{"env_steps": 1, "unlocked": ["collect_wood"]}, {"env_steps": 2, "unlocked": []}]
    with gzip.open(tmp_path / "episodes.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    assert read_json_lines(tmp_path / "episodes.jsonl") == rows
    (tmp_path / "episodes.jsonl").write_text(json.dumps(rows[0]) + "\n\n")
    assert read_json_lines(tmp_path / "episodes.jsonl") == rows[:1]  # the plain file wins
    assert read_json_lines(tmp_path / "missing.jsonl") == []


def test_a_background_checkpoint_holds_the_state_at_save_time(tmp_path):
    import dataclasses

    import torch

    from llmrl.runs import RunFolder

    @dataclasses.dataclass
    class Tiny:
        seed: int = 0

    folder = RunFolder(tmp_path / "run", "tiny", Tiny())
    weights = torch.zeros(1000)
    folder.save_checkpoint({"w": weights, "step": [1]}, plain=True, background=True)
    weights += 1  # training goes on changing the live tensors while the write is in flight
    folder.wait_for_checkpoint()
    saved = torch.load(folder.checkpoint_path, weights_only=True)
    assert saved["step"] == [1] and torch.equal(saved["w"], torch.zeros(1000))
    folder.save_checkpoint({"w": weights}, plain=True, background=True)
    folder.finish({})  # waits for the write in flight
    assert torch.equal(torch.load(folder.checkpoint_path, weights_only=True)["w"], torch.ones(1000))


def test_a_study_run_apart_is_read_whole_copied_byte_for_byte_and_never_counted_twice(tmp_path):
    unit = lambda r: r["seed"] if r["kind"] == "eval" else None  # noqa: E731
    for name, seed in (("a", 0), ("b", 1)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "records.jsonl").write_text(
            json.dumps({"kind": "split"}) + "\n" + json.dumps({"kind": "eval", "seed": seed}) + "\n")
        (tmp_path / name / "config.json").write_text("{}")
    folders = [tmp_path / "a", tmp_path / "b"]
    records = read_study(folders, unit)
    assert [r.get("seed") for r in records] == [None, 0, None, 1]
    copy_study(folders, records, tmp_path / "copy")
    copy_study([tmp_path / "copy"], read_study([tmp_path / "copy"], unit), tmp_path / "again")
    assert (tmp_path / "copy" / "records.jsonl.gz").read_bytes() == (tmp_path / "again" / "records.jsonl.gz").read_bytes()
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == ["config-a.json", "config-b.json", "records.jsonl.gz"]
    with pytest.raises(ValueError, match="repeats runs"):
        read_study([tmp_path / "a", tmp_path / "a"], unit)
    with pytest.raises(ValueError, match="no records"):
        read_study([tmp_path / "missing"], unit)
