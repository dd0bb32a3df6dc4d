"""Choose the offline-RL learning rate and length for the KALM recipe on the *seen* level only.

Trains BC and CQL on the real data alone (MiniLM goals) for each learning rate, keeping a
snapshot every ``--every`` steps, and judges every snapshot on seen-goal episodes from a
validation seed range (``--val-seed``, disjoint from the recipe's evaluation seeds 100000+):
novel levels and evaluation episodes never choose a setting. Prints one row per
(algorithm, learning rate, step) and writes them to ``<out>/tuning.json``.

    python scripts/kalm_tune_offline.py --collect runs/kalm/collect-<key> --out runs/kalm-tune
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--collect", required=True, help="a finished collect stage folder (holds real.npz)")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=60_000)
    p.add_argument("--every", type=int, default=10_000)
    p.add_argument("--bc-lrs", default="1e-3,3e-4")
    p.add_argument("--cql-lrs", default="6.25e-5,3e-4,1e-3")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--val-seed", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import torch

    from llmrl.data import EpisodeDataset
    from llmrl.envs.clevr_goals import goal_from_spec
    from llmrl.recipes.kalm import config_from, embed_goals, evaluation_episodes, run_episodes
    from llmrl.rl.offline import PRESETS, OfflineAgent, snapshot_paths, train_offline

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    real = EpisodeDataset.load(Path(args.collect) / "real.npz").transitions()
    real_emb = embed_goals(real.goals, out / "goal_embeddings.npz")
    cases = evaluation_episodes(config_from("cpu", eval_episodes=args.episodes, eval_seed=args.val_seed), "seen")
    texts = sorted({goal_from_spec(spec).text for spec, _ in cases})
    emb = dict(zip(texts, embed_goals(texts, out / "goal_embeddings.npz")))
    rows = json.loads((out / "tuning.json").read_text()) if (out / "tuning.json").exists() else []
    done = {(r["algo"], r["learning_rate"], r["step"]) for r in rows}
    n_snap = args.steps // args.every
    for algo, lrs in (("bc", args.bc_lrs), ("cql", args.cql_lrs)):
        for lr in map(float, lrs.split(",")):
            run = out / f"{algo}-lr{lr:g}"
            config = replace(PRESETS[algo], learning_rate=lr, gradient_steps=args.steps, seed=args.seed,
                             snapshots=n_snap, snapshot_every=args.every)
            train_offline(config, real, real_emb, out_dir=run, resume=run.exists())
            for snap in snapshot_paths(run):
                step = int(snap.stem.split("_")[1])
                if (algo, lr, step) in done:
                    continue
                agent = OfflineAgent.load(snap)
                success = run_episodes(lambda obs, goals, starts, a=agent: a.act(obs, np.stack([emb[g.text] for g in goals])),
                                       cases)
                rows.append({"algo": algo, "learning_rate": lr, "step": step, "seen_success": float(success.mean())})
                print(f"{algo} lr {lr:g} step {step}: seen {success.mean():.2f}", flush=True)
                (out / "tuning.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
