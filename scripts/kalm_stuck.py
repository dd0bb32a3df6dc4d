"""Why greedy offline agents fail on CLEVR-Robot: how many failed episodes end stuck.

Replays one trained KALM offline agent (a snapshot of the recipe's train stage) on the recipe's
held-out episodes of each level, greedy and sampled, recording every push. An episode is
*stuck* when its last ``--tail`` pushes all moved no ball by more than ``--still`` (a push
against a wall or a blocking ball): a deterministic policy that sees the same state again picks
the same push again, to the step limit. More generally a greedy policy in this deterministic
environment loops for good once it *revisits* a state (within ``--still`` of an earlier one).
Prints, per level and policy: success, and the shares of failed episodes that end stuck, stuck
repeating one single push, and that revisit a state.

    python scripts/kalm_stuck.py --out runs/kalm --run minilm-bc-s0
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/kalm", help="the recipe's output folder")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--run", default="minilm-bc-s0", help="an offline run of the train stage")
    p.add_argument("--levels", default="seen,rephrase")
    p.add_argument("--tail", type=int, default=10, help="pushes at the end of an episode that must all be still")
    p.add_argument("--still", type=float, default=0.01, help="largest ball displacement of a push that 'moved nothing'")
    args = p.parse_args()

    from llmrl.envs.clevr_goals import goal_from_spec
    from llmrl.envs.clevr_robot import ClevrRobotEnv
    from llmrl.recipes import kalm
    from llmrl.rl.offline import OfflineAgent, snapshot_paths

    config = kalm.config_from(args.preset)
    trained = kalm.stage_dir(args.out, config, "train")  # its runs are usable before the stage ends
    snapshot = snapshot_paths(trained / args.run)[-1]
    agent = OfflineAgent.load(snapshot)
    encoder = next(e for e in kalm.GOAL_ENCODERS if args.run.startswith(e + "-"))
    report = {"run": args.run, "snapshot": snapshot.name}
    for level in args.levels.split(","):
        cases = kalm.evaluation_episodes(config, level)
        texts = [goal_from_spec(spec).text for spec, _ in cases]
        vectors = kalm.embed_goals(texts, trained / f"goal_embeddings-{encoder}.npz", encoder, config.grounding.model)
        for policy in ("greedy", "sampled"):
            rng = np.random.default_rng(config.eval_seed)
            outcomes = []
            for (spec, positions), vector in zip(cases, vectors):
                env, goal = ClevrRobotEnv(), goal_from_spec(spec)
                obs, _ = env.reset(options={"goal": goal, "positions": positions})
                pushes, done, success, seen, revisit = [], False, False, [obs], False
                while not done:
                    action = int(agent.act(obs[None], vector[None], greedy=policy == "greedy", rng=rng)[0])
                    new, _, success, truncated, _ = env.step(action)
                    pushes.append((action, float(np.abs(new - obs).max())))
                    revisit = revisit or min(float(np.abs(new - s).max()) for s in seen) < args.still
                    obs, done = new, success or truncated
                    seen.append(obs)
                tail = pushes[-args.tail:]
                stuck = len(tail) == args.tail and all(moved < args.still for _, moved in tail)
                outcomes.append((success, stuck, stuck and len({a for a, _ in tail}) == 1, revisit))
            won = np.array(outcomes)
            failed = won[~won[:, 0]]
            row = {"success": float(won[:, 0].mean()), "failed": int(len(failed)),
                   "failed_stuck": float(failed[:, 1].mean()) if len(failed) else 0.0,
                   "failed_stuck_one_push": float(failed[:, 2].mean()) if len(failed) else 0.0,
                   "failed_revisit": float(failed[:, 3].mean()) if len(failed) else 0.0}
            report[f"{level} {policy}"] = row
            print(f"{args.run} {level:9s} {policy:8s} success {row['success']:.2f}; of {row['failed']} failed "
                  f"episodes {row['failed_stuck']:.0%} end stuck ({row['failed_stuck_one_push']:.0%} repeating one push), "
                  f"{row['failed_revisit']:.0%} revisit a state")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
