"""The tables of docs/results/offline.md, from run folders or their committed copies.

    python scripts/offline_results.py offline docs/results/data/offline/mlp docs/results/data/offline/dt \
        docs/results/data/offline/cql
    python scripts/offline_results.py odt docs/results/data/offline/odt
    python scripts/offline_results.py lamo docs/results/data/offline/lamo
    python scripts/offline_results.py lamo runs/lamo --copy-to docs/results/data/offline/lamo

Every number is recomputed from the per-episode returns in ``records.jsonl`` (or its ``.gz``):
a seed's score is the mean normalised score of its evaluation episodes, and intervals are
Student-t over seeds (95%). Paired differences pair the seeds (same dataset, same starts).
``--copy-to`` copies the records (gzipped), config.json, summary.json and, for odt, each online
run's progress.csv (the fine-tuning curve).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from judge_results import fmt  # noqa: E402

from llmrl.runs import read_json_lines  # noqa: E402


def records(folders: list[Path]) -> list[dict]:
    return [r for f in folders for r in read_json_lines(f / "records.jsonl")]


def per_seed(rows: list[dict], **where) -> dict[int, float]:
    """Seed -> the mean normalised score of the matching records' episodes."""
    out: dict[int, list[float]] = {}
    for r in rows:
        if all(r.get(k) == v for k, v in where.items()) and r["normalized"] is not None:
            out.setdefault(int(r["seed"]), []).extend(r["normalized"])
    return {s: float(np.mean(v)) for s, v in sorted(out.items())}


def cell(values: dict[int, float] | list[float]) -> str:
    values = list(values.values()) if isinstance(values, dict) else values
    return fmt(values, 1, clip=False)


def paired(a: dict[int, float], b: dict[int, float]) -> str:
    seeds = sorted(set(a) & set(b))
    return cell([a[s] - b[s] for s in seeds])


def offline_tables(folders: list[Path]) -> None:
    rows = records(folders)
    qualities = list(dict.fromkeys(r["quality"] for r in rows))
    algos = list(dict.fromkeys(r["algo"] for r in rows))
    print("Normalised score, mean [95% t-interval] over seeds (DT at target 100, the expert's return):\n")
    print("| dataset | data | " + " | ".join(algos) + " |")
    print("|---" * (len(algos) + 2) + "|")
    for q in qualities:
        data = {int(r["seed"]): 100 * (r["dataset_return_mean"] - r["ref_min_score"]) /
                (r["ref_max_score"] - r["ref_min_score"]) for r in rows if r["quality"] == q and "ref_min_score" in r}
        cells = [cell(per_seed(rows, quality=q, algo=a, target=100.0 if a == "dt" else None)) for a in algos]
        print(f"| {q} | {cell(data) if data else '—'} | " + " | ".join(cells) + " |")
    print("\nPaired differences (seeds paired):\n")
    print("| dataset | TD3+BC − BC | IQL − BC | CQL − BC | DT − BC |")
    print("|---|---|---|---|---|")
    for q in qualities:
        bc = per_seed(rows, quality=q, algo="bc")
        cells = [paired(per_seed(rows, quality=q, algo=a, target=100.0 if a == "dt" else None), bc)
                 for a in ("td3_bc", "iql", "cql", "dt")]
        print(f"| {q} | " + " | ".join(c if c != "—" else "—" for c in cells) + " |")
    targets = sorted({r["target"] for r in rows if r["algo"] == "dt"})
    if targets:
        print("\nDecision Transformer: achieved normalised score by target (return-conditioning curve):\n")
        print("| dataset | " + " | ".join(f"target {t:.0f}" for t in targets) + " |")
        print("|---" * (len(targets) + 1) + "|")
        for q in qualities:
            print(f"| {q} | " + " | ".join(cell(per_seed(rows, quality=q, algo="dt", target=t)) for t in targets) + " |")
    seconds = {}
    for r in rows:
        seconds.setdefault(r["algo"], []).append(r["seconds"])
    print("\nWall time per training run (train + evaluate, 1 thread, shared CPU): " +
          ", ".join(f"{a} {np.mean(s):.0f} s" for a, s in seconds.items()))


def odt_tables(folder: Path) -> None:
    rows = records([folder])
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    print("| model | normalised score | return |")
    print("|---|---|---|")
    for k in kinds:
        ret = {int(r["seed"]): float(np.mean(r["returns"])) for r in rows if r["kind"] == k}
        print(f"| {k} | {cell(per_seed(rows, kind=k))} | {cell(ret)} |")
    if {"odt-offline", "odt-online"} <= set(kinds):
        print(f"\nodt-online − odt-offline (paired): {paired(per_seed(rows, kind='odt-online'), per_seed(rows, kind='odt-offline'))}")
    curves = sorted(folder.glob("online-s*-progress.csv")) or sorted(folder.glob("runs/online-s*/progress.csv"))
    refs = {int(r["seed"]): (r["ref_min_score"], r["ref_max_score"]) for r in rows if "ref_min_score" in r}
    by_iter: dict[tuple[int, int], list[float]] = {}
    for path in curves:
        seed = int(path.name.split("-s")[1].split("-")[0]) if path.name != "progress.csv" else int(
            path.parent.name.split("-s")[1])
        if seed not in refs:
            continue
        lo, hi = refs[seed]
        with open(path) as f:
            for row in csv.DictReader(f):
                if row.get("eval_return"):
                    key = (int(row["iteration"]), int(row["env_steps"]))
                    by_iter.setdefault(key, []).append(100 * (float(row["eval_return"]) - lo) / (hi - lo))
    if by_iter:
        print("\nFine-tuning curve (evaluation at the target, mean over seeds):\n")
        print("| online iteration | env steps | normalised score |")
        print("|---:|---:|---|")
        for (it, steps), v in sorted(by_iter.items()):
            print(f"| {it} | {steps} | {cell(v)} |")


def lamo_tables(folder: Path) -> None:
    rows = records([folder])
    fractions = sorted({r["fraction"] for r in rows})
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    print("| data fraction (episodes) | " + " | ".join(variants) + " | lamo − lamo-random | lamo − dt |")
    print("|---" * (len(variants) + 3) + "|")
    for f in fractions:
        n = sorted({r["episodes"] for r in rows if r["fraction"] == f})
        scores = {v: per_seed(rows, fraction=f, variant=v) for v in variants}
        diffs = [paired(scores["lamo"], scores[b]) if "lamo" in scores and b in scores else "—"
                 for b in ("lamo-random", "dt")]
        print(f"| {f:g} ({'/'.join(map(str, n))}) | " + " | ".join(cell(scores[v]) for v in variants) + " | "
              + " | ".join(diffs) + " |")
    params = {r["variant"]: r["trainable_params"] for r in rows}
    secs = {v: np.mean([r["train_seconds"] for r in rows if r["variant"] == v]) for v in variants}
    print("\nTrainable parameters: " + ", ".join(f"{v} {p:,}" for v, p in params.items()))
    print("Training seconds per run: " + ", ".join(f"{v} {s:.0f}" for v, s in secs.items()))


def copy(folder: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "summary.json"):
        if (folder / name).exists():
            shutil.copy(folder / name, dest / name)
    # mtime=0: the same records give the same bytes, so a re-copy does not show as a change.
    (dest / "records.jsonl.gz").write_bytes(gzip.compress((folder / "records.jsonl").read_bytes(), mtime=0))
    for run in sorted((folder / "runs").glob("online-s*")):
        shutil.copy(run / "progress.csv", dest / f"{run.name}-progress.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("offline", "odt", "lamo"))
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--copy-to", type=Path, default=None, help="one folder: copy it there first")
    args = parser.parse_args()
    if args.copy_to:
        if len(args.folders) != 1:
            parser.error("--copy-to copies one folder at a time")
        copy(args.folders[0], args.copy_to)
    if args.kind == "offline":
        offline_tables(args.folders)
    elif args.kind == "odt":
        odt_tables(args.folders[0])
    else:
        lamo_tables(args.folders[0])


if __name__ == "__main__":
    main()
