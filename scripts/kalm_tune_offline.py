"""Choose the offline-RL learning rate and length for the KALM recipe on the *seen* level only.

Trains BC and CQL on the real data alone for each learning rate, keeping a snapshot every
``--every`` steps, and judges every snapshot on seen-goal episodes from a validation seed range
(``--val-seed``, disjoint from the recipe's evaluation seeds 100000+): novel levels and
evaluation episodes never choose a setting. Each snapshot acts greedily (KALM: d3rlpy's
``predict``) and sampled from the softmax of its scores. Prints one row per (algorithm, learning
rate, step) and writes them to ``<out>/tuning.json``; a random policy's success on the same
episodes comes first.

``--encoder`` picks the goal vectors: a recipe encoder (minilm, lm-mean, bow), or ``oracle``, the
goal's own ball, reference ball and direction one-hot: not a KALM agent (no language), an upper
bound that tells a learner problem from a goal-encoding problem.

    python scripts/kalm_tune_offline.py --collect runs/kalm/collect-<key> --out runs/kalm-tune
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np


def oracle_vector(goal) -> np.ndarray:
    """One-hot ball (5), reference ball (5) and direction (4) of a relation goal."""
    v = np.zeros(14, np.float32)
    v[goal.ball], v[5 + goal.ref], v[10 + goal.direction] = 1, 1, 1
    return v


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--collect", required=True, help="a finished collect stage folder (holds real.npz)")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=60_000)
    p.add_argument("--every", type=int, default=10_000)
    p.add_argument("--bc-lrs", default="1e-3,3e-4")
    p.add_argument("--cql-lrs", default="6.25e-5,3e-4,1e-3")
    p.add_argument("--encoder", default="minilm", choices=("minilm", "lm-mean", "bow", "oracle"))
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--val-seed", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import torch

    from llmrl.data import EpisodeDataset
    from llmrl.envs.clevr_goals import goal_from_spec
    from llmrl.recipes.kalm import (
        config_from,
        embed_goals,
        evaluation_episodes,
        run_episodes,
    )
    from llmrl.rl.offline import PRESETS, OfflineAgent, snapshot_paths, train_offline

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = EpisodeDataset.load(Path(args.collect) / "real.npz")
    real = data.transitions()
    cases = evaluation_episodes(config_from("cpu", eval_episodes=args.episodes, eval_seed=args.val_seed), "seen")
    texts = sorted({goal_from_spec(spec).text for spec, _ in cases})
    if args.encoder == "oracle":
        spec_of = {ep.goal: ep.infos["goal_spec"] for ep in data.episodes}
        real_emb = np.stack([oracle_vector(goal_from_spec(spec_of[g])) for g in data.goals()])
        goals = [goal_from_spec(spec) for spec, _ in cases]
        emb = {g.text: oracle_vector(g) for g in goals}
    else:
        cache = out / f"goal_embeddings-{args.encoder}.npz"
        real_emb = embed_goals(data.goals(), cache, args.encoder)
        emb = dict(zip(texts, embed_goals(texts, cache, args.encoder)))
    rows = json.loads((out / "tuning.json").read_text()) if (out / "tuning.json").exists() else []
    if not rows:
        rng = np.random.default_rng(args.seed)
        success = run_episodes(lambda obs, goals, starts: rng.integers(40, size=len(goals)), cases)
        rows.append({"algo": "random", "seen_success": float(success.mean())})
        print(f"random: seen {success.mean():.2f}", flush=True)
    done = {(r["algo"], r.get("learning_rate"), r.get("step")) for r in rows}
    n_snap = args.steps // args.every
    for algo, lrs in (("bc", args.bc_lrs), ("cql", args.cql_lrs)):
        for lr in map(float, filter(None, lrs.split(","))):
            run = out / f"{algo}-lr{lr:g}"
            config = replace(PRESETS[algo], learning_rate=lr, gradient_steps=args.steps, seed=args.seed,
                             snapshots=n_snap, snapshot_every=args.every)
            train_offline(config, real, real_emb, out_dir=run, resume=run.exists())
            for snap in snapshot_paths(run):
                step = int(snap.stem.split("_")[1])
                if (algo, lr, step) in done:
                    continue
                agent, rng = OfflineAgent.load(snap), np.random.default_rng(args.seed)
                row = {"algo": algo, "encoder": args.encoder, "learning_rate": lr, "step": step}
                for mode, greedy in (("greedy", True), ("sampled", False)):
                    success = run_episodes(lambda obs, goals, starts, g=greedy, a=agent, r=rng: a.act(
                        obs, np.stack([emb[x.text] for x in goals]), greedy=g, rng=r), cases)
                    row[f"seen_success_{mode}"] = float(success.mean())
                rows.append(row)
                print(f"{algo} lr {lr:g} step {step}: seen greedy {row['seen_success_greedy']:.2f}, "
                      f"sampled {row['seen_success_sampled']:.2f}", flush=True)
                (out / "tuning.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
