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
