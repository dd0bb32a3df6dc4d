"""Copy the per-episode data of a finished comparison into docs/results/data, compressed, so
every number in docs/results can be recomputed from the repository; then print the summary
recomputed from the copy.

    python scripts/publish_results.py ellm runs/ellm-cpu docs/results/data/ellm-cpu
    python scripts/publish_results.py kalm runs/kalm docs/results/data/kalm-cpu   # the finished preset

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


def publish_kalm(runs: Path, data: Path) -> None:
    """A KALM output folder (one sub-folder per stage): every stage's done.json (its full
    configuration and summary), the grounding's progress.csv, the imagination's quality.json, each offline run's config.json
    and progress.csv, and the evaluation's per-episode outcomes as results.json.gz. For the
    newest finished evaluation and the stages it was built from."""
    from llmrl.config import from_dict
    from llmrl.recipes import kalm

    done = sorted(runs.glob("evaluate-*/done.json"), key=lambda p: p.stat().st_mtime)
    if not done:
        raise SystemExit(f"{runs} has no finished evaluate stage: run `llmrl train kalm --out {runs}` first")
    config = from_dict(kalm.KALMConfig, json.loads(done[-1].read_text())["config"])
    data.mkdir(parents=True, exist_ok=True)
    for stage in kalm.STAGES:
        source, target = kalm.stage_dir(runs, config, stage), data / stage
        target.mkdir(exist_ok=True)
        for name in ("done.json", "quality.json", "progress.csv"):  # progress.csv: the grounding's losses
            if (source / name).exists():
                shutil.copy(source / name, target / name)
        if stage == "train":
            for run in sorted(p for p in source.iterdir() if (p / "progress.csv").exists()):
                (target / run.name).mkdir(exist_ok=True)
                for name in ("config.json", "progress.csv"):
                    shutil.copy(run / name, target / run.name / name)
        if stage == "evaluate":
            with open(source / "results.json", "rb") as f, gzip.GzipFile(target / "results.json.gz", "wb", mtime=0) as g:
                shutil.copyfileobj(f, g)


def kalm_summary(data: Path) -> str:
    """The results table and the per-seed +KALM − real differences, from the published copy."""
    import numpy as np

    from llmrl.config import from_dict
    from llmrl.recipes import kalm
    from llmrl.stats import t_interval

    config = from_dict(kalm.KALMConfig, json.loads((data / "evaluate" / "done.json").read_text())["config"])
    with gzip.open(data / "evaluate" / "results.json.gz") as f:
        results = json.load(f)
    table = kalm.summarise(config, results)
    lines = [kalm.markdown(table, config), "Per seed, and +KALM − real on each column (paired by seed, 95% t-interval):", ""]
    for name, row in table.items():
        if name in kalm.SINGLE_AGENTS:
            continue
        lines.append(f"- {name}: " + "; ".join(f"{c} " + " / ".join(f"{v:.2f}" for v in row[c]["per_seed"])
                                              for c in kalm.COLUMNS))
        base = name.replace("+KALM", "")
        if base != name and base in table:
            diffs = []
            for c in kalm.COLUMNS:
                d = np.subtract(row[c]["per_seed"], table[base][c]["per_seed"])
                mean, low, high = t_interval(list(d))
                diffs.append(f"{c} {mean:+.2f} [{low:+.2f}, {high:+.2f}]")
            lines.append("  - +KALM − real: " + "; ".join(diffs))
    return "\n".join(lines)


def main(recipe: str, runs: str, data: str) -> None:
    if recipe == "kalm":
        publish_kalm(Path(runs), Path(data))
        print(kalm_summary(Path(data)))
        return
    publish(Path(runs), Path(data))
    if recipe == "ellm":
        from llmrl.recipes import ellm

        summary = ellm.summarise(data)
        (Path(data) / "summary.json").write_text(json.dumps(summary, indent=1))
        print(ellm.markdown(summary))


if __name__ == "__main__":
    main(*sys.argv[1:4])
