"""The tables of docs/results/planner.md, calm.md and world_model.md, from a run folder or its
committed copy.

    python scripts/planning_results.py saycan docs/results/data/saycan
    python scripts/planning_results.py calm docs/results/data/calm
    python scripts/planning_results.py world-model docs/results/data/world_model
    python scripts/planning_results.py saycan runs/saycan --copy-to docs/results/data/saycan

Every number is recomputed from the per-episode (per-item) records (``episodes.jsonl``/``records.jsonl``
or their ``.gz``) by the recipe's own ``summarise``; intervals are Student-t over seeds.
``--copy-to`` copies the records (gzipped), config.json and summary.json.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from judge_results import fmt  # noqa: E402

from llmrl.runs import read_json_lines  # noqa: E402

RECORDS = {"saycan": "episodes.jsonl", "calm": "episodes.jsonl", "world-model": "records.jsonl"}


def cell(stats: dict | None, digits: int = 2, rate: bool = True) -> str:
    """mean [95% t-interval] over seeds; a rate's interval clipped to [0, 1], a count's at 0."""
    if not stats:
        return "—"
    if rate:
        return fmt(stats["per_seed"], digits)
    text = fmt(stats["per_seed"], digits, clip=False)
    if "[-" in text:
        head, rest = text.split("[-", 1)
        text = f"{head}[{0:.{digits}f}, {rest.split(', ', 1)[1]}"
    return text


def saycan_tables(folder: Path) -> None:
    from llmrl.recipes.saycan import summarise

    records = read_json_lines(folder / RECORDS["saycan"])
    s = summarise(records)
    print("| level | planner | execution success | plan success | skills chosen | failed skills | env steps | "
          "LM prompts scored / episode (memo shared by the planners) |")
    print("|---|---|---|---|---|---|---|---|")
    for level, by in s["levels"].items():
        for mode, m in by.items():
            print(f"| {level.removeprefix('BabyAI-').removesuffix('-v0')} | {mode} | {cell(m['success'])} | "
                  f"{cell(m['plan_success'])} | {cell(m['skills'], 1, rate=False)} | {cell(m['failed_skills'], 1, rate=False)} | "
                  f"{cell(m['env_steps'], 0, rate=False)} | {cell(m['lm_calls_per_episode'], 1, rate=False)} |")
    aff = [r for r in records if r["kind"] == "affordance"]
    print(f"\nAffordance data per seed: {np.mean([r['tries'] for r in aff]):.0f} skill tries, "
          f"{np.mean([r['env_steps'] for r in aff]):.0f} env steps, {np.mean([r['success_rate'] for r in aff]):.2f} "
          f"of tries succeeded; held-out accuracy {fmt([r['held_out_accuracy'] for r in aff], 3)} (3 seeds).")
    # Where the planners go wrong: the first skill chosen that could not run, or done said too early.
    print("\n| level | planner | episodes | ended by done before success | chose a skill that failed |")
    print("|---|---|---|---|---|")
    for level in s["levels"]:
        for mode in s["levels"][level]:
            eps = [e for r in records if r["kind"] == "test" and r["level"] == level and r["mode"] == mode
                   for e in r["episodes"]]  # fmt: skip
            early = sum(e["said_done"] and not e["success"] for e in eps)
            failed = sum(e["failed_skills"] > 0 for e in eps)
            print(f"| {level.removeprefix('BabyAI-').removesuffix('-v0')} | {mode} | {len(eps)} | {early} | {failed} |")


def calm_tables(folder: Path) -> None:
    from llmrl.recipes.calm import summarise

    records = read_json_lines(folder / RECORDS["calm"])
    s = summarise(records)
    print("| level | proposer | recall@k of the walkthrough command | held-out score (of max) | held-out success | "
          "held-out steps | training success (last 20%) | LM prompts (training + test) |")
    print("|---|---|---|---|---|---|---|---|")
    for level, by in s["levels"].items():
        for name, m in by.items():
            rec = m.get("recall")
            prompts = sum(r["lm_calls"] for r in records if r["level"] == level and r["proposer"] == name)
            print(f"| {level} | {name} | {rec['mean']:.2f} (n={rec['n']}) | {cell(m.get('score'))} | "
                  f"{cell(m.get('success'))} | {cell(m.get('steps'), 1, rate=False)} | {cell(m.get('train_success'))} | "
                  f"{prompts} |" if rec else f"| {level} | {name} | — | | | | | |")


def world_model_tables(folder: Path) -> None:
    from llmrl.recipes.world_model import summarise

    s = summarise(read_json_lines(folder / RECORDS["world-model"]))
    print("| predictor | exact next view | recall: sentences about what was seen | recall: newly revealed | precision |")
    print("|---|---|---|---|---|")
    for name, m in s.get("predict", {}).items():
        print(f"| {name} | {cell(m['exact'])} | {cell(m['seen_recall'])} | {cell(m['revealed_recall'])} | "
              f"{cell(m['precision'])} |")
    print("\n| simulator | success | steps | simulator calls per decision |")
    print("|---|---|---|---|")
    for name, m in s.get("plan", {}).items():
        print(f"| {name} | {cell(m['success'])} | {cell(m['steps'], 1, rate=False)} | "
              f"{cell(m['sim_calls_per_decision'], 1, rate=False)} |")


def copy(folder: Path, dest: Path, kind: str) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "summary.json", "finetune.json"):
        if (folder / name).exists():
            shutil.copy(folder / name, dest / name)
    src = folder / RECORDS[kind]
    # mtime=0: the same records give the same bytes, so a re-copy does not show as a change.
    (dest / (src.name + ".gz")).write_bytes(gzip.compress(src.read_bytes(), mtime=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=tuple(RECORDS))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--copy-to", type=Path, default=None)
    args = parser.parse_args()
    if args.copy_to:
        copy(args.folder, args.copy_to, args.kind)
    {"saycan": saycan_tables, "calm": calm_tables, "world-model": world_model_tables}[args.kind](args.folder)


if __name__ == "__main__":
    main()
