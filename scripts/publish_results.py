"""Copy the per-episode data of a finished comparison into docs/results/data, compressed, so
every number in docs/results can be recomputed from the repository; then print the summary
recomputed from the copy.

    python scripts/publish_results.py ellm runs/ellm-cpu docs/results/data/ellm-cpu

Per run folder (one with config.json and progress.csv) it keeps config.json, done.json,
explorer.json, progress.csv and device.json (where present),
every *.jsonl as *.jsonl.gz and every eval*/results.json (per-episode outcomes); checkpoints,
TensorBoard logs, weights and caches stay behind.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

KEEP = ("config.json", "done.json", "explorer.json", "progress.csv", "device.json")


def publish(runs: Path, data: Path) -> None:
    data.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "summary.json"):
        if (runs / name).exists():
            shutil.copy(runs / name, data / name)
    for run in sorted(p for p in runs.iterdir() if (p / "config.json").exists() and (p / "progress.csv").exists()):
        if not (run / "done.json").exists():
            print(f"note: {run.name} has no done.json (unfinished or cut short): published as it stands")
        target = data / run.name
        target.mkdir(exist_ok=True)
        for name in KEEP:
            if (run / name).exists():
                shutil.copy(run / name, target / name)
        for lines in run.glob("*.jsonl"):
            with open(lines, "rb") as f, gzip.GzipFile(target / (lines.name + ".gz"), "wb", mtime=0) as g:
                shutil.copyfileobj(f, g)
        for results in run.glob("eval*/results.json"):  # evaluations: per-episode outcomes
            (target / results.parent.name).mkdir(exist_ok=True)
            shutil.copy(results, target / results.parent.name / "results.json")


def main(recipe: str, runs: str, data: str) -> None:
    publish(Path(runs), Path(data))
    if recipe == "ellm":
        from llmrl.recipes import ellm

        summary = ellm.summarise(data)
        (Path(data) / "summary.json").write_text(json.dumps(summary, indent=1))
        print(ellm.markdown(summary))


if __name__ == "__main__":
    main(*sys.argv[1:4])
