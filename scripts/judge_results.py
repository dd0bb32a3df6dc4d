"""The tables of docs/results/judge.md and rlhf.md, from a run folder or its committed copy.

    python scripts/judge_results.py judge docs/results/data/judge
    python scripts/judge_results.py rlhf docs/results/data/rlhf --plot docs/results/img/rlhf-overoptimisation.png
    python scripts/judge_results.py judge runs/judge-cpu --copy-to docs/results/data/judge
    python scripts/judge_results.py motif docs/results/data/motif/none docs/results/data/motif/motif

Every number is recomputed from the per-item labels (``labels.jsonl``/``.gz``), the per-agent rows
(``agents.csv``), the reward models' epochs and each PPO run's ``progress.csv``; intervals are
Student-t over seeds. ``--copy-to`` copies what the tables need (the big JSON lines compressed).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from llmrl.runs import read_json_lines  # noqa: E402
from llmrl.stats import t_interval  # noqa: E402

# Kwon et al.'s Ultimatum numbers as our research note records them (GPT-3 text-davinci-002;
# ../shared/research/reward_state_plan.md): LM 10-shot labels, LM 1-shot+CoT labels, SL-10, SL-1,
# DQN on GPT-3 labels, DQN on SL labels.
ANCHOR = {
    "percentage-0.3": (0.94, 0.80, 0.86, 0.32, 0.96, 0.86),
    "percentage-0.6": (0.96, 0.90, 1.00, 0.68, 0.96, 1.00),
    "payoff-10": (0.94, 0.98, 0.76, 0.56, 0.87, 0.76),
    "payoff-100": (0.94, 0.84, 0.98, 0.20, 0.92, 0.97),
    "inequity-aversion": (1.00, 1.00, 1.00, 1.00, 1.00, 1.00),
}


def rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():  # a run still labelling has no agents yet
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def fmt(values: list[float], digits: int = 2, clip: bool = True) -> str:
    if not values:
        return "—"
    mean, lo, hi = t_interval(values)
    if clip:
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    if len(values) == 1 or np.isnan(lo):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def per_seed(records: list[dict], metric: str, **where: str) -> list[float]:
    """One value per seed: the metric averaged over the matching records of that seed."""
    by: dict[int, list[float]] = {}
    for r in records:
        if all(r[k] == v for k, v in where.items()):
            by.setdefault(int(r["seed"]), []).append(float(r[metric]))
    return [float(np.mean(v)) for _, v in sorted(by.items())]


def auroc(scores: list, positive: list[bool]) -> float | None:
    """P(score of a positive > score of a negative), ties half; None without both classes
    (abstentions, scored None, are left out)."""
    pairs = [(float(s), bool(y)) for s, y in zip(scores, positive) if s is not None]
    pos = np.array([s for s, y in pairs if y])
    neg = np.array([s for s, y in pairs if not y])
    if not len(pos) or not len(neg):
        return None
    return float(((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean())


def objective_table(records: list[dict], metric: str, objectives: list[str], labellers: list[str],
                    paper_col: dict[str, int], headers: list[str], extra: tuple[str, dict[str, str]] | None = None) -> None:
    """One row per objective and a mean row: the metric per labeller over seeds, the paper's cell
    (ANCHOR column ``paper_col[labeller]``) in parentheses, and an optional extra column."""
    name, column = extra or ("", {})
    print("| objective | " + " | ".join(headers) + (f" | {name} |" if extra else " |"))
    print("|---|" + "---|" * (len(headers) + bool(extra)))
    for o in objectives:
        cells = []
        for lab in labellers:
            cell = fmt(per_seed(records, metric, objective=o, labeller=lab))
            if lab in paper_col and o in ANCHOR:
                cell += f" ({ANCHOR[o][paper_col[lab]]:.2f})"
            cells.append(cell)
        print(f"| {o} | " + " | ".join(cells) + (f" | {column.get(o, '')} |" if extra else " |"))
    print("| mean | " + " | ".join(fmt(per_seed(records, metric, labeller=lab)) for lab in labellers)
          + (" | |" if extra else " |"))


def judge_tables(folder: Path) -> None:
    labels = read_json_lines(folder / "labels.jsonl")
    agents = [dict(r) for r in rows(folder / "agents.csv")]
    ult = [r for r in labels if r["game"] == "ultimatum"]
    ult_agents = [r for r in agents if r["game"] == "ultimatum"]
    objectives = list(dict.fromkeys(r["objective"] for r in ult))
    order = ("lm-10", "lm-10-cal", "lm-1", "lm-0", "lm-blank", "sl-10", "sl-1", "true")  # the recipe's
    labellers = sorted(dict.fromkeys(r["labeller"] for r in ult), key=lambda x: order.index(x) if x in order else 99)
    if ult:
        print("### Ultimatum: label accuracy (ours; paper in parentheses where it has the cell)\n")
        majority = {o: np.mean([max(np.mean(r["truth"]), 1 - np.mean(r["truth"])) for r in ult
                                if r["objective"] == o and r["labeller"] == "true"]) for o in objectives}  # fmt: skip
        objective_table(ult, "label_accuracy", objectives, labellers, {"lm-10": 0, "lm-1": 1, "sl-10": 2, "sl-1": 3},
                        list(labellers), ("majority label", {o: f"{m:.2f}" for o, m in majority.items()}))
        print("\n### Ultimatum: the DQN agent's accuracy against the objective (trained on each labelling)\n")
        objective_table(ult_agents, "agent_accuracy", objectives, labellers, {"lm-10": 4, "sl-10": 5},
                        [f"DQN on {lab}" for lab in labellers])
        lm = [r for r in ult if r.get("p_yes")]
        lm_labs = [lab for lab in labellers if any(r["labeller"] == lab for r in lm)]
        print("\n### Ultimatum: does p(yes) rank the offers right? AUROC of p(yes) for 'reject is desirable' "
              "(0.5: no information; threshold-free)\n")
        print("| objective | " + " | ".join(lm_labs) + " |")
        print("|---|" + "---|" * len(lm_labs))
        for o in objectives + ["mean"]:
            cells = []
            for lab in lm_labs:
                per = {}
                for r in lm:
                    if r["labeller"] == lab and (o == "mean" or r["objective"] == o):
                        a = auroc(r["p_yes"], [t == 0 for t in r["truth"]])
                        if a is not None:
                            per.setdefault(int(r["seed"]), []).append(a)
                cells.append(fmt([float(np.mean(v)) for _, v in sorted(per.items())]))
            print(f"| {o} | " + " | ".join(cells) + " |")
        abst = sum(r.get("abstained", 0) for r in lm)
        judged = sum(len(r["p_yes"]) for r in lm)
        yes = [p for r in lm for p in r["p_yes"] if p is not None]
        print(f"\nJudge: {judged} Ultimatum verdicts, {abst} abstentions; p(yes) spans {min(yes):.3f}–{max(yes):.3f} "
              f"(median {np.median(yes):.3f}); share labelled 'reject' by labeller: " + ", ".join(
                  f"{lab} {np.mean([x == 0 for r in ult if r['labeller'] == lab for x in r['labels']]):.2f}" for lab in labellers))
    mat = [r for r in labels if r["game"] != "ultimatum"]
    mat_agents = [r for r in agents if r["game"] != "ultimatum"]
    if mat:
        mlabs = list(dict.fromkeys(r["labeller"] for r in mat))
        print("\n### Matrix games: label accuracy over the four outcomes (mean over the four games) | the DQN's choice is desirable\n")
        print("| objective | " + " | ".join(f"{lab} labels" for lab in mlabs) + " | " + " | ".join(f"DQN on {lab}" for lab in mlabs) + " |")
        print("|---|" + "---|" * (2 * len(mlabs)))
        for o in dict.fromkeys(r["objective"] for r in mat):
            print(f"| {o} | " + " | ".join(fmt(per_seed(mat, "label_accuracy", objective=o, labeller=lab)) for lab in mlabs)
                  + " | " + " | ".join(fmt(per_seed(mat_agents, "agent_accuracy", objective=o, labeller=lab)) for lab in mlabs) + " |")
        print("| mean | " + " | ".join(fmt(per_seed(mat, "label_accuracy", labeller=lab)) for lab in mlabs)
              + " | " + " | ".join(fmt(per_seed(mat_agents, "agent_accuracy", labeller=lab)) for lab in mlabs) + " |")
        lm = [r for r in mat if r.get("p_yes")]
        yes_share = np.mean([lab for r in lm for lab in r["labels"]])
        print(f"\nMatrix judge: share of outcomes called desirable {yes_share:.2f}; truly desirable "
              f"{np.mean([x for r in mat if r['labeller'] == 'true' for x in r['truth']]):.2f}")


def rlhf_tables(folder: Path, plot: Path | None) -> None:
    rm = [r for r in rows(folder / "reward_models.csv")]
    last = max(int(r["epoch"]) for r in rm)
    fin = [r for r in rm if int(r["epoch"]) == last]
    print("### Reward model (last epoch), per seed\n")
    print("| seed | train pairs accuracy | held-out accuracy | held-out, against the gold order | rater's ceiling |")
    print("|---|---|---|---|---|")
    for r in fin:
        print(f"| {r['seed']} | {float(r['train_accuracy']):.2f} | {float(r['test_accuracy']):.2f} | "
              f"{float(r['gold_order_accuracy']):.2f} | {float(r['rater_ceiling']):.2f} |")
    print(f"| mean | {fmt([float(r['train_accuracy']) for r in fin])} | {fmt([float(r['test_accuracy']) for r in fin])} | "
          f"{fmt([float(r['gold_order_accuracy']) for r in fin])} | {fmt([float(r['rater_ceiling']) for r in fin])} |")
    arms: dict[str, dict[int, list[dict[str, str]]]] = {}
    for p in sorted((folder / "ppo").glob("*/progress.csv")):
        name, _, seed = p.parent.name.rpartition("-seed")
        arms.setdefault(name, {})[int(seed)] = [r for r in rows(p) if r["phase"] == "eval"]
    print("\n### PPO-KL on held-out prompts: KL to the start, proxy (reward model) and gold reward\n")
    print("A reward model's scale is its own, so the proxy is shown as its change since iteration 0, per seed.\n")
    print("| arm | iteration | KL (nats per reply) | proxy reward − start | gold reward | seeds |")
    print("|---|---|---|---|---|---|")
    curves = {}
    for arm, by_seed in arms.items():
        its = sorted({int(r["iteration"]) for rs in by_seed.values() for r in rs})
        start = {s: float(rs[0]["proxy"]) for s, rs in by_seed.items() if rs and int(rs[0]["iteration"]) == 0}
        curve = []
        for it in its:
            got = [(s, r) for s, rs in by_seed.items() for r in rs if int(r["iteration"]) == it]
            kl, gold = ([float(r[k]) for _, r in got] for k in ("kl", "gold"))
            proxy = [float(r["proxy"]) - start[s] for s, r in got if s in start]
            got = [r for _, r in got]
            print(f"| {arm} | {it} | {fmt(kl, 2, False)} | {fmt(proxy, 2, False)} | {fmt(gold, 2, False)} | {len(got)} |")
            curve.append((np.mean(kl), np.mean(proxy), np.mean(gold)))
        curves[arm] = curve
    neg = [float(r["kl_sampled"]) for p in (folder / "ppo").glob("*/progress.csv") for r in rows(p)]
    print(f"\nThe sampled log-ratio estimate (kl_sampled) was negative in {sum(v < 0 for v in neg)} of {len(neg)} "
          f"rows (min {min(neg):.3f}); the exact KL logged as `kl` never is.")
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
        for arm, curve in curves.items():
            kl, proxy, gold = zip(*curve)
            axes[0].plot(np.sqrt(kl), proxy, marker="o", label=arm)
            axes[1].plot(np.sqrt(kl), gold, marker="o", label=arm)
        for ax, title in zip(axes, ("proxy reward (reward model), change since the start", "gold reward")):
            ax.set_xlabel("sqrt(KL to the starting policy), nats")
            ax.set_title(title)
            ax.grid(alpha=0.3)
        axes[1].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(plot, dpi=110)
        print(f"\nplot: {plot}")


def motif_tables(folders: list[Path]) -> None:
    """Motif vs no bonus: ELLM-recipe folders (summary.json per folder, motif.json per motif run)."""
    seeds: dict[str, dict[int, dict]] = {}
    for folder in folders:
        summary = json.loads((folder / "summary.json").read_text())
        for method, entry in summary["methods"].items():
            for run in entry["seeds"]:
                seeds.setdefault(method, {})[int(run["run"].rpartition("-s")[2])] = run
    keys = (("achievements", "achievements per episode, last 25% of training"),
            ("crafter_score", "Crafter score, last 25% of training"),
            ("eval_achievements", "achievements per episode, final evaluation (ε 0.001)"),
            ("eval_crafter_score", "Crafter score, final evaluation"))
    print("| measure | " + " | ".join(seeds) + " | motif − none, paired by seed |")
    print("|---|" + "---|" * (len(seeds) + 1))
    for k, name in keys:
        cells = [fmt([float(r[k]) for _, r in sorted(by.items())], 2, False) for by in seeds.values()]
        paired = ""
        if {"motif", "none"} <= set(seeds):
            common = sorted(set(seeds["motif"]) & set(seeds["none"]))
            paired = fmt([float(seeds["motif"][s][k]) - float(seeds["none"][s][k]) for s in common], 2, False)
        print(f"| {name} | " + " | ".join(cells) + f" | {paired} |")
    print()
    for folder in folders:
        for m in sorted(folder.glob("*/motif.json")):
            r = json.loads(m.read_text())
            top = sorted(r["captions"].items(), key=lambda kv: -kv[1]["reward"])[:5]
            print(f"- {m.parent.name}: {r['distinct_captions']} distinct captions in {r['steps']} random steps; the LM "
                  f"decided {r['decided']} of {len(r['pairs'])} pairs; the reward model orders {r['train_agreement']:.2f} of "
                  f"them as the LM did; top rewards: " + ", ".join(f"'{c or '(nothing)'}' {v['reward']:.2f}" for c, v in top))


def copy(folder: Path, dest: Path, kind: str) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    if kind == "motif":
        shutil.copy(folder / "summary.json", dest / "summary.json")
        shutil.copy(folder / "config.json", dest / "config.json")
        for run in sorted(p for p in folder.iterdir() if p.is_dir()):
            (dest / run.name).mkdir(exist_ok=True)
            for n in ("progress.csv", "motif.json", "explorer.json", "config.json"):
                if (run / n).exists():
                    shutil.copy(run / n, dest / run.name / n)
            for n in ("episodes.jsonl", "eval_episodes.jsonl"):
                with (run / n).open("rb") as src, gzip.open(dest / run.name / (n + ".gz"), "wb", compresslevel=9) as out:
                    shutil.copyfileobj(src, out)
        print(f"copied to {dest}")
        return
    if kind == "judge":
        names = ["config.json", "agents.csv", "summary.json"]
        packed = ["labels.jsonl"]
    else:
        names = ["config.json", "reward_models.csv", "summary.json"]
        packed = [str(p.relative_to(folder)) for p in (folder / "preferences").glob("*.jsonl")]
        for p in (folder / "ppo").glob("*/progress.csv"):
            (dest / p.parent.relative_to(folder)).mkdir(parents=True, exist_ok=True)
            shutil.copy(p, dest / p.relative_to(folder))
    for n in names:
        shutil.copy(folder / n, dest / n)
    for n in packed:
        (dest / n).parent.mkdir(parents=True, exist_ok=True)
        with (folder / n).open("rb") as src, gzip.open(dest / (n + ".gz"), "wb", compresslevel=9) as out:
            shutil.copyfileobj(src, out)
    print(f"copied to {dest}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("judge", "rlhf", "motif"))
    parser.add_argument("folder", type=Path, nargs="+")
    parser.add_argument("--copy-to", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    if args.kind == "motif":
        if args.copy_to:
            for f in args.folder:
                copy(f, args.copy_to / f.name, "motif")
        motif_tables(args.folder)
        return
    folder = args.folder[0]
    if args.copy_to:
        copy(folder, args.copy_to, args.kind)
    if args.kind == "judge":
        judge_tables(folder)
    else:
        rlhf_tables(folder, args.plot)


if __name__ == "__main__":
    main()
