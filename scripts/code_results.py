"""The tables of docs/results/reward_code.md and state_code.md, from run folders or their committed copies.

    python scripts/code_results.py reward docs/results/data/reward_code/*/
    python scripts/code_results.py state docs/results/data/state_code/*/
    python scripts/code_results.py reward runs/reward_coder/*-s0 --copy-to docs/results/data/reward_code

Reads ``candidates.jsonl`` (or ``.gz``), ``progress.csv``, ``final.csv`` and ``summary.json``; every
number printed is recomputed from the per-candidate and per-run rows (the t-intervals too).
``--copy-to`` also copies those files (candidates compressed) and the best programs.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from llmrl.runs import read_json_lines  # noqa: E402
from llmrl.stats import t_interval  # noqa: E402


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def fmt(values: list[float], digits: int, rate: bool) -> str:
    """Mean [95% t-interval over seeds] and the seeds' values; a rate's interval is clipped to [0, 1]."""
    if not values:
        return "—"
    mean, lo, hi = t_interval(values)
    if rate:
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    each = ", ".join(f"{v:.{digits}f}" for v in values)
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}] ({each})"


def search_table(folders: list[Path]) -> None:
    print("| task | iteration | programs | runnable | failures by kind | best fitness | LM s | training s |")
    print("|---|---|---|---|---|---|---|---|")
    for folder in folders:
        cands = read_json_lines(folder / "candidates.jsonl")
        task = json.loads((folder / "summary.json").read_text())["task"]
        progress = {int(r["iteration"]): r for r in rows(folder / "progress.csv")}
        for it in sorted({c["iteration"] for c in cands}):
            cs = [c for c in cands if c["iteration"] == it]
            kinds: dict[str, int] = {}
            for c in cs:
                if c["status"] != "ok":
                    kinds[c["status"]] = kinds.get(c["status"], 0) + 1
            ok = [c["fitness"] for c in cs if c["status"] == "ok"]
            p = progress[it]
            print(f"| {task} | {it} | {len(cs)} | {len(ok)} | {', '.join(f'{k} {v}' for k, v in sorted(kinds.items())) or '—'} "
                  f"| {max(ok) if ok else '—'} | {float(p['lm_seconds']):.0f} | {float(p['train_seconds']):.0f} |")
        total = len(cands)
        ok = sum(c["status"] == "ok" for c in cands)
        print(f"| {task} | all | {total} | {ok} ({ok / total:.0%}) | | | | |")


def final_table(folders: list[Path], metric: str, arm: str, digits: int) -> None:
    arms: list[str] = []
    table: dict[str, dict[str, str]] = {}
    for folder in folders:
        summary = json.loads((folder / "summary.json").read_text())
        final = rows(folder / "final.csv")
        for a in dict.fromkeys(r[arm] for r in final):
            if a not in arms:
                arms.append(a)
        table[summary["task"]] = {a: fmt([float(r[metric]) for r in final if r[arm] == a and r[metric] not in ("", "None")],
                                         digits, metric == "success_rate") for a in arms}  # fmt: skip
        for a, v in summary["final"].items():
            if v.get("note"):
                table[summary["task"]][a] = v["note"]
                if a not in arms:
                    arms.append(a)
        extra = f" — search spent {summary['search']['env_steps']:,} env steps"
        table[summary["task"]]["_"] = extra
    print("| task | " + " | ".join(arms) + " |")
    print("|---" * (len(arms) + 1) + "|")
    for task, cells in table.items():
        print(f"| {task} | " + " | ".join(cells.get(a, "—") for a in arms) + " |")
    for task, cells in table.items():
        print(f"- {task}{cells['_']}")


def copy(folders: list[Path], dest: Path, best: str) -> None:
    for folder in folders:
        task = json.loads((folder / "summary.json").read_text())["task"]
        out = dest / task
        out.mkdir(parents=True, exist_ok=True)
        data = (folder / "candidates.jsonl").read_bytes()
        (out / "candidates.jsonl.gz").write_bytes(gzip.compress(data, mtime=0))
        for name in ("progress.csv", "final.csv", "summary.json", "config.json", best, "reward_file.py", "state_file.py"):
            if (folder / name).exists():
                shutil.copy(folder / name, out / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("reward", "state"))
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--copy-to", type=Path)
    args = parser.parse_args()
    if args.copy_to:
        copy(args.folders, args.copy_to, "best_reward.py" if args.kind == "reward" else "best_state.py")
    print("### Search\n")
    search_table(args.folders)
    print("\n### Comparison\n")
    if args.kind == "reward":
        final_table(args.folders, "success_rate", "reward", 2)
    else:
        final_table(args.folders, "env_return", "arm", 1)


if __name__ == "__main__":
    main()
