"""The tables of docs/results/curriculum.md, from a `llmrl train curriculum` run folder or its copy.

    python scripts/curriculum_results.py runs/curriculum-cpu
    python scripts/curriculum_results.py runs/curriculum-cpu --steps 0,122880,245760,491520
    python scripts/curriculum_results.py runs/curriculum-cpu --copy-to docs/results/data/curriculum
    python scripts/curriculum_results.py runs/curriculum-s01 runs/curriculum-s2   # seeds run apart

Every number is recomputed from ``records.jsonl`` (or its ``.gz``): a seed's held-out success at
a step is the mean over that evaluation's episodes (the same episodes for every teacher and
seed); intervals are 95% Student-t over seeds; the area under the curve is the trapezoid mean of
held-out success over training; "vs uniform" pairs each teacher's AUC with uniform's of the same
seed. The budget table is the share of training episodes each teacher gave each factor value
(per-task counts of each run's last evaluation, averaged over seeds). ``--copy-to`` writes the
records gzipped (several folders: merged into one file), with each folder's config.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from llmrl.recipes.curriculum import auc, budget, budget_table, curves  # noqa: E402
from llmrl.runs import copy_study, read_study  # noqa: E402
from llmrl.stats import t_interval  # noqa: E402


def fmt(values: list[float], digits: int = 3) -> str:
    if not values:
        return "—"
    mean, lo, hi = t_interval(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def success_at(curve: dict[int, float], step: int) -> float | None:
    """Held-out success of the last evaluation at or before ``step``."""
    done = [s for s in curve if s <= step]
    return curve[max(done)] if done else None


def success_table(records: list[dict], steps: list[int] | None) -> str:
    by_teacher = curves(records)
    evaluated = sorted({s for t in by_teacher.values() for c in t.values() for s in c})
    # Default: the evaluations nearest to 0, 1/4, 1/2, 3/4 and all of the run.
    steps = steps or list(dict.fromkeys(evaluated[round(q * (len(evaluated) - 1))] for q in (0, 0.25, 0.5, 0.75, 1)))
    uniform = {seed: auc(c) for seed, c in by_teacher.get("uniform", {}).items()}
    lines = ["| teacher | seeds | " + " | ".join(f"{s:,} steps" for s in steps) + " | AUC | AUC − uniform (paired) |",
             "|---" * (len(steps) + 4) + "|"]
    for teacher, by_seed in by_teacher.items():
        cells = [fmt([v for c in by_seed.values() if (v := success_at(c, s)) is not None]) for s in steps]
        diff = [auc(c) - uniform[seed] for seed, c in by_seed.items() if seed in uniform]
        lines.append(f"| {teacher} | {len(by_seed)} | " + " | ".join(cells)
                     + f" | {fmt([auc(c) for c in by_seed.values()])} | {fmt(diff) if teacher != 'uniform' else '—'} |")
    return "\n".join(lines)


def lm_table(records: list[dict]) -> str:
    """The LM teacher's last choice mass on each group of its prompt, its calls and seconds."""
    finals = [r for r in records if r.get("kind") == "eval" and r["teacher"] == "lm" and r.get("final")]
    if not finals:
        return ""
    keys = ("lm/mass_learning", "lm/mass_untried", "lm/mass_unsolved", "lm/mass_mastered", "lm/asks", "lm/lm_calls",
            "lm/memo_hits", "lm/seconds")
    lines = ["| " + " | ".join(keys) + " |", "|---" * len(keys) + "|"]
    lines.append("| " + " | ".join(fmt([r["teacher_stats"].get(k, np.nan) for r in finals], 2) for k in keys) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", type=Path, nargs="+", help="run folders (or copies) of one study, e.g. "
                        "its seeds run in separate processes")
    parser.add_argument("--steps", help="env-step checkpoints, comma-separated (default: quarters of the run)")
    parser.add_argument("--copy-to", type=Path, help="copy the records (gzipped) and config.json here")
    args = parser.parse_args()
    try:
        records = read_study(args.folders, lambda r: (r["teacher"], r["seed"]) if r.get("kind") == "eval" else None)
    except ValueError as e:
        sys.exit(str(e))
    steps = [int(s) for s in args.steps.split(",")] if args.steps else None
    print("Held-out success (mean [95% t-interval] over seeds)\n")
    print(success_table(records, steps))
    print("\nWhere each teacher spent its training episodes (share per factor value, mean over seeds)\n")
    print(budget_table({"budget": budget(records)}))
    lm = lm_table(records)
    if lm:
        print("\nThe LM teacher at the end of training (mean over seeds)\n")
        print(lm)
    if args.copy_to:
        copy_study(args.folders, records, args.copy_to)
        print(f"\ncopied to {args.copy_to}")


if __name__ == "__main__":
    main()
