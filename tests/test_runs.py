"""Run-folder helpers that the recipes share."""

import gzip
import json

from llmrl.runs import read_json_lines


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
