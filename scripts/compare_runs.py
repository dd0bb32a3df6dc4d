"""Do two runs write the same rows? Compares two progress.csv files column by column, leaving out
wall-clock columns (and any named with --ignore), and prints the first difference.

    python scripts/compare_runs.py runs/glam/cpu-s0 runs/scale/glam-cpu-ray-t1-s0

Used to check that a run on Ray (``--ray``) matches the run in one process (docs/scale.md).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

TIMING = ("wall_s", "steps_per_s", "rollout_s", "update_s")


def rows(run: Path) -> list[dict[str, str]]:
    path = run / "progress.csv" if run.is_dir() else run
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--ignore", default="", help="more columns to leave out, comma-separated")
    args = p.parse_args()
    a, b = rows(args.a), rows(args.b)
    skip = set(TIMING) | {c for c in args.ignore.split(",") if c}
    columns = [c for c in a[0] if c in b[0] and c not in skip] if a and b else []
    only = sorted((set(a[0]) ^ set(b[0])) - skip) if a and b else []
    for i, (ra, rb) in enumerate(zip(a, b)):
        diff = [c for c in columns if ra[c] != rb[c]]
        if diff:
            print(f"row {i + 1} differs in {', '.join(diff)}: " + "; ".join(f"{c} {ra[c]} vs {rb[c]}" for c in diff))
            return 1
    note = f" (columns only one run has, not compared: {', '.join(only)})" if only else ""
    if len(a) != len(b):
        print(f"the first {min(len(a), len(b))} rows are identical, but one run has {len(a)} rows and the other "
              f"{len(b)}{note}")
        return 1
    print(f"identical: {len(a)} rows x {len(columns)} columns ({', '.join(columns)}){note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
