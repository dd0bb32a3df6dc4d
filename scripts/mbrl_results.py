"""The tables of docs/results/mbrl.md (PETS vs SAC vs PETS with the LM's prior), recomputed from a
``llmrl train pets`` folder's records or their committed copy.

    python scripts/mbrl_results.py runs/pets
    python scripts/mbrl_results.py docs/results/data/mbrl --checkpoints 400,800,1200,2000,3000
    python scripts/mbrl_results.py runs/pets --copy-to docs/results/data/mbrl
    python scripts/mbrl_results.py runs/pets-a runs/pets-b    # tasks run in separate processes

Reads ``records.jsonl`` (or ``records.jsonl.gz``); every number printed — steps to threshold with
95% t-intervals over seeds, the sample-efficiency ratios paired by seed, the mean evaluation return
at each checkpoint, planning speed, the LM's answers — comes from the per-episode records, not
from ``summary.json``. ``--copy-to`` writes the records compressed (several folders: merged) with
each folder's ``config.json`` beside them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from llmrl.recipes.pets import (  # noqa: E402
    SHORT,
    ratio_table,
    return_table,
    steps_table,
    steps_to_threshold,
    summarise,
)
from llmrl.runs import copy_study, read_study  # noqa: E402


def recompute(records: list[dict]) -> list[dict]:
    """The ``unit`` records with steps to threshold recomputed from the evaluation records (the
    same rule as the recipe: the first checkpoint whose mean return reaches the threshold)."""
    units = []
    for u in (r for r in records if r["kind"] == "unit"):
        evals = [r for r in records if r["kind"] == "eval" and
                 (r["task"], r["method"], r["seed"]) == (u["task"], u["method"], u["seed"])]
        units.append({**u, "steps_to_threshold": steps_to_threshold(evals, u["threshold"])})
    return units


def lm_table(units: list[dict]) -> str:
    lines = ["| task | seed | LM calls | proposals | usable | short | unusable | errors | LM s |", "|---" * 9 + "|"]
    for u in units:
        s = u.get("lm_stats")
        if s:
            lines.append(f"| {SHORT.get(u['task'], u['task'])} | {u['seed']} | {s['lm_calls']} | {s['proposals']} | "
                         f"{s['usable']} | {s['short']} | {s['unusable']} | {s['errors']} | {s['seconds']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", type=Path, nargs="+", help="llmrl train pets folders of one study (e.g. its tasks "
                   "run in separate processes), or a committed copy of their records")
    p.add_argument("--checkpoints", default="", help="env steps of the return table's rows (default: all)")
    p.add_argument("--copy-to", type=Path, help="write records.jsonl.gz and config.json here")
    args = p.parse_args(argv)
    try:
        records = read_study(args.folders, lambda r: (r["task"], r["method"], r["seed"]) if r["kind"] == "unit" else None)
    except ValueError as e:
        p.error(str(e))
    units = recompute(records)
    summary = summarise([r for r in records if r["kind"] != "unit"] + units)
    checkpoints = [int(s) for s in args.checkpoints.split(",") if s] or None
    print("## Env steps to the threshold\n\n" + steps_table(summary))
    print("\n## Sample-efficiency ratios (steps to threshold, paired by seed)\n\n" + ratio_table(summary))
    print("\n## Mean evaluation return vs env steps\n\n" + return_table(summary, checkpoints))
    if any(u.get("lm_stats") for u in units):
        print("\n## The LM's proposals (pets-lm)\n\n" + lm_table(units))
    if args.copy_to:
        copy_study(args.folders, records, args.copy_to)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
