"""The GLAM comparison of docs/results/glam.md from run folders (or their published copies):
per agent, the env steps at which the last 100 training episodes first reach 0.8 success (and
0.5), the training success at the GLAM budget, and the held-out evaluation; mean over seeds with
a 95% t-interval. Also draws the training curves.

    python scripts/glam_report.py runs/glam docs/results/img/glam-curves.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from llmrl.report.plot import find_runs, metric_curve, plot_runs, steps_to_reach
from llmrl.stats import t_interval

BUDGET = 8192


def fmt(values: list[float], digits: int = 2, rate: bool = True) -> str:
    """Mean [95% t-interval] over seeds, clipped at 0 (and at 1 for a success rate)."""
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    mean, lo, hi = t_interval(values)
    lo, hi = max(lo, 0.0), min(hi, 1.0) if rate else hi
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def reach(run, threshold: float) -> float | None:
    return steps_to_reach(run, threshold)


def evals(run, name: str) -> dict[str, float]:
    """Held-out success by agent name in <run>/<name>/results.json."""
    path = run.path / name / "results.json"
    if not path.exists():
        return {}
    return {r["summary"]["agent"]: r["summary"]["success_rate"] for r in json.loads(path.read_text())["results"]}


def main(root: str, png: str | None = None) -> None:
    runs = [r for r in find_runs([root]) if not r.path.name.startswith("sweep-")]
    groups: dict[str, list] = {}
    for r in runs:
        groups.setdefault(r.config.get("label", r.path.name), []).append(r)
    print("| agent | seeds | steps to 0.5, per seed | steps to 0.8, per seed (– never) | mean steps to 0.8 | "
          f"training success at {BUDGET:,} steps | held-out success |")
    print("|---|---|---|---|---|---|---|")
    for label, group in sorted(groups.items()):
        half = [reach(r, 0.5) for r in group]
        eight = [reach(r, 0.8) for r in group]
        at_budget = []
        for r in group:
            x, y = metric_curve(r, "success_rate", 100)
            at_budget.append(float(y[np.searchsorted(x, BUDGET, side="right") - 1]) if len(x) and x[0] <= BUDGET else None)
        final = {}
        for r in group:
            for agent, rate in {**evals(r, "eval"), **evals(r, f"eval-{BUDGET}")}.items():
                final.setdefault(agent, []).append(rate)
        held = "; ".join(f"{a}: {fmt(v)}" for a, v in sorted(final.items()))
        reached = [e for e in eight if e is not None]
        seeds = lambda xs: " / ".join("–" if x is None else f"{x:,.0f}" for x in xs)  # noqa: E731
        print(f"| {label} | {len(group)} | {seeds(half)} | {seeds(eight)} | "
              f"{fmt(reached, 0, rate=False) if len(reached) == len(group) else '–'} | {fmt(at_budget)} | {held} |")
    if png:
        plot_runs(runs, png, metric="success_rate", window=100, max_steps=4 * BUDGET)
        print(f"\nwrote {png}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
