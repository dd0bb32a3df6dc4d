"""ELLM's costs side by side: Crafter-Text steps, and steps/s with the LM suggesting goals.

1. Crafter-Text steps/s with the symbolic observation vs the 64x64 image, and the reset time;
   8 worlds in subprocesses with each reset generating its world in place vs built ahead.
2. The LM in the loop. A random agent's trajectory of ``--steps`` steps in ``--envs`` Crafter
   worlds is recorded first; then its goals are suggested and its rewards paid
   (``GoalExplorer``) four ways, each timed, and reported as steps/s including the env time:
   no LM (the oracle's goals); the LM asked every step for that step's new captions (cold cache);
   the LM asked lazily in batches of ``--lm-batch`` new captions (cold cache, as the ``ellm``
   recipe does); and the same lazily-labelled run again from the persistent cache (warm).
3. One generate call of 16 goal prompts, with transformers' ``stop_strings`` and with ours.

    OMP_NUM_THREADS=2 python benchmarks/bench_ellm.py --steps 800 --envs 8

``--presets STEPS`` instead trains the ``cpu`` and ``paper`` presets' learners side by side for
STEPS env steps each (the novelty method: no LM, whose cost is measured above and in the runs;
replay capped at 20k so the paper preset fits in memory), and extrapolates each preset's full
budget from its steps/s; it also prints the replay memory each preset's buffer size needs.

    python benchmarks/bench_ellm.py --presets 4000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def env_speed(n: int) -> dict[str, float]:
    from llmrl.envs.crafter_text import CrafterTextEnv

    out = {}
    for observation in ("symbolic", "pixels"):
        env = CrafterTextEnv(observation=observation, length=100_000)
        start = time.perf_counter()
        env.reset(seed=0)
        out["reset_s"] = time.perf_counter() - start
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        for _ in range(n):
            env.step(int(rng.integers(env.action_space.n)))
        out[f"{observation}_steps_per_s"] = n / (time.perf_counter() - start)
    return out


def vector_speed(steps: int, n_envs: int) -> dict[bool, float]:
    """Steps/s of ``n_envs`` worlds in subprocesses with and without building next worlds ahead."""
    from llmrl.envs import crafter_text as ct

    out = {}
    for ahead in (False, True):
        ct._Crafter.prefetch = ahead  # the subprocesses fork with this setting
        envs = ct.make_vec(n_envs, length=400)
        envs.reset(seed=list(range(n_envs)))
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        for _ in range(steps // n_envs):
            envs.step(rng.integers(17, size=n_envs))
        out[ahead] = steps / (time.perf_counter() - start)
        envs.close()
    ct._Crafter.prefetch = True
    return out


def record(steps: int, n_envs: int) -> tuple[list[list[dict]], float]:
    """A random agent's infos: per vector step, the state infos and the transition infos."""
    from llmrl.envs import crafter_text as ct
    from llmrl.envs.vector import unstack_infos

    envs = ct.make_vec(n_envs, asynchronous=False, length=400)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    _, infos = envs.reset(seed=list(range(n_envs)))
    trace = []
    for _ in range(steps // n_envs):
        state = unstack_infos(infos, n_envs)
        _, _, term, trunc, infos = envs.step(rng.integers(17, size=n_envs))
        step = unstack_infos(infos, n_envs)
        if (term | trunc).any():
            final = unstack_infos(infos["final_info"], n_envs)
            step = [final[i] if term[i] or trunc[i] else step[i] for i in range(n_envs)]
        trace.append((state, step, term | trunc))
    return trace, time.perf_counter() - start


def label(trace, explorer, lazy_batch: int | None) -> float:
    """Seconds to suggest goals and pay rewards along the trace (lazily when lazy_batch)."""
    start = time.perf_counter()
    pending, unknown = [], set()
    for state, step, done in trace:
        pending.append((state, step, done))
        if lazy_batch and explorer.source == "llm":
            unknown.update(explorer.unknown([s["caption"] for s in state]))
            if len(unknown) < lazy_batch:
                continue
            explorer.prefetch(sorted(unknown))
            unknown.clear()
        for s, t, d in pending:
            explorer.suggest(s)
            explorer.reward(t)
            for i in np.flatnonzero(d):
                explorer.end_episode(int(i))
        pending = []
    if unknown:
        explorer.prefetch(sorted(unknown))
    for s, t, _ in pending:
        explorer.suggest(s)
        explorer.reward(t)
    return time.perf_counter() - start


def preset_cost(steps: int) -> None:
    """Steps/s of the cpu and paper presets' training loops, measured one after the other."""
    from llmrl.config import replace
    from llmrl.recipes.ellm import PRESETS, _goal_dim, _obs_shape, train_run

    print("| preset | observation | learner | steps/s (train) | full budget | hours at that rate | "
          "replay transitions | replay memory |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ("cpu", "paper"):
        full = PRESETS[name]
        config = replace(full, {"total_env_steps": steps, "eval_episodes": 0, "log_every": steps,
                                "checkpoint_every": 10 * steps, "dqn.buffer_size": 20_000,
                                "dqn.learning_starts": steps // 4})
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            train_run(config, "novelty", 1, Path(tmp) / "run", progress=False)
            rate = steps / (time.perf_counter() - start)
        # NStepReplay keeps obs and next_obs whole (uint8) and both goal vectors (float16)
        per_transition = 2 * int(np.prod(_obs_shape(full))) + 4 * _goal_dim(full) + 20
        memory = per_transition * full.dqn.buffer_size
        learner = "CNN, goal-conditioned" if full.goal_conditioned else "MLP"
        print(f"| {name} | {full.observation} | {learner} | {rate:.0f} | {full.total_env_steps:,} | "
              f"{full.total_env_steps / rate / 3600:.1f} | {full.dqn.buffer_size:,} | {memory / 2**20:,.0f} MiB |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--lm-batch", type=int, default=16)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--presets", type=int, default=0, metavar="STEPS",
                        help="only time the cpu and paper presets' training for STEPS env steps each")
    args = parser.parse_args()
    if args.presets:
        preset_cost(args.presets)
        return

    from llmrl.envs import crafter_text as ct
    from llmrl.lm import load_model
    from llmrl.lm.cache import CachedLM, ResultCache
    from llmrl.roles.explorer import GoalExplorer, goal_prompt

    print(f"torch threads: {torch.get_num_threads()}")
    speed = env_speed(2000)
    print(f"Crafter-Text: symbolic {speed['symbolic_steps_per_s']:.0f} steps/s, pixels "
          f"{speed['pixels_steps_per_s']:.0f} steps/s (x{speed['symbolic_steps_per_s'] / speed['pixels_steps_per_s']:.1f}); "
          f"reset {speed['reset_s']:.2f} s")

    vec = vector_speed(4000, 8)
    print(f"8 worlds in subprocesses, random actions: {vec[False]:.0f} steps/s resetting in place, "
          f"{vec[True]:.0f} steps/s with next worlds built ahead (x{vec[True] / vec[False]:.2f})")

    trace, env_s = record(args.steps, args.envs)
    n = len(trace) * args.envs
    captions = {s["caption"] for state, _, _ in trace for s in state}
    print(f"trace: {n} steps in {args.envs} envs, {len(captions)} distinct captions, env time {env_s:.1f} s "
          f"({n / env_s:.0f} steps/s, one process)")
    goal_captions = [ct.ACHIEVEMENT_CAPTIONS[a] for a in ct.ACHIEVEMENTS]
    base = load_model(args.model)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = ResultCache(Path(tmp) / "cache.sqlite")
        oracle = GoalExplorer("oracle", args.envs, goal_captions=goal_captions)
        oracle.embed(goal_captions)  # load MiniLM outside the timing
        rows.append(("no LM (oracle goals)", label(trace, oracle, None), oracle))
        per_step = GoalExplorer("llm", args.envs, lm=CachedLM(base, ResultCache(Path(tmp) / "a.sqlite")))
        rows.append(("LM every step, cold cache", label(trace, per_step, None), per_step))
        lazy = GoalExplorer("llm", args.envs, lm=CachedLM(base, cache))
        rows.append((f"LM lazily, batches of {args.lm_batch}, cold cache", label(trace, lazy, args.lm_batch), lazy))
        warm = GoalExplorer("llm", args.envs, lm=CachedLM(base, cache))
        rows.append(("LM lazily, warm persistent cache", label(trace, warm, args.lm_batch), warm))
    print("\n| labelling | s | steps/s with env | LM calls | new prompts | LM share of wall |")
    print("|---|---|---|---|---|---|")
    for name, seconds, ex in rows:
        total = seconds + env_s
        print(f"| {name} | {seconds:.1f} | {n / total:.0f} | {ex.stats.lm_calls} | {ex.stats.lm_new_prompts} | "
              f"{ex.stats.lm_seconds / total:.0%} |")
    cold, lazy_s = rows[1][1], rows[2][1]
    print(f"\nlazy batching vs every step: x{cold / lazy_s:.2f} faster labelling; warm cache vs cold (lazy): "
          f"x{lazy_s / rows[3][1]:.1f}")

    prompts = [goal_prompt(c) for c in sorted(captions)[:16]]
    kwargs = dict(max_new_tokens=32, do_sample=False, temperature=None, top_p=None, top_k=None)
    tok = base.tokenizer
    enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left")
    times = {}
    for name in ("transformers stop_strings", "llmrl stop check"):
        start = time.perf_counter()
        if name.startswith("transformers"):
            with torch.inference_mode():
                base.model.generate(**enc, stop_strings=["\n\n"], tokenizer=tok, pad_token_id=tok.pad_token_id, **kwargs)
        else:
            base.generate(prompts, max_new_tokens=32, stop=["\n\n"])
        times[name] = time.perf_counter() - start
    print(f"\ngenerate 16 goal prompts: transformers stop_strings {times['transformers stop_strings']:.2f} s, "
          f"ours {times['llmrl stop check']:.2f} s (x{times['transformers stop_strings'] / times['llmrl stop check']:.2f})")


if __name__ == "__main__":
    main()
