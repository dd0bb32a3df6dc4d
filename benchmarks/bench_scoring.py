"""Scoring throughput: naive per-candidate forwards vs the shared-prefix scorer, side by side;
then the shared-prefix scorer's contexts/s against its chunk size (contexts per forward).

    python benchmarks/bench_scoring.py                 # gemma-3-270m, bf16 where the CPU has it
    python benchmarks/bench_scoring.py --ks 2,6 --dtype fp32
    python benchmarks/bench_scoring.py --ks 6 --contexts 256 --chunks 16,64,256 --device cuda

Contexts are real GLAM prompts from BabyAI-Text GoToLocal episodes (8 by default); candidates are
the six BabyAI actions, extended with more action strings for K > 6. Naive = every (context,
candidate) pair is its own sequence with full logits, as plain transformers scoring does. Goal:
>= 8x at K = 6 and >= 30x at K = 40.
"""

from __future__ import annotations

import argparse
import itertools
import time

import gymnasium as gym
import numpy as np

import llmrl.envs  # noqa: F401  (registers the BabyAI-Text ids)
from llmrl.lm import load_model
from llmrl.envs.babyai_text import ACTIONS as BABYAI_ACTIONS
from llmrl.roles.policy import glam_prompt

COLOURS = ("red", "green", "blue", "purple", "yellow", "grey")
OBJECTS = ("ball", "key", "box", "door")


def candidate_pool() -> list[str]:
    extra = [f"{verb} the {c} {o}" for verb, c, o in itertools.product(("go to", "pick up"), COLOURS, OBJECTS)]
    return list(BABYAI_ACTIONS) + extra


def glam_contexts(n: int, env_id: str) -> list[str]:
    contexts = []
    for seed in range(n):
        env = gym.make(env_id)
        _, info = env.reset(seed=seed)
        obs, acts = [info["descriptions"]], []
        for a in (2, 0):  # two steps so the prompt holds three observations, like GLAM's
            _, _, _, _, info = env.step(a)
            acts.append(BABYAI_ACTIONS[a])
            obs.append(info["descriptions"])
        contexts.append(glam_prompt(BABYAI_ACTIONS, info["mission"], obs, acts))
    return contexts


def timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="gemma-3-270m")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--contexts", type=int, default=8)
    p.add_argument("--ks", default="2,6,20,40")
    p.add_argument("--env", default="BabyAI-Text-GoToLocal-v0")
    p.add_argument("--repeats", type=int, default=1, help="best of N runs, for both scorers alike")
    p.add_argument("--device", default="cpu")
    p.add_argument("--chunks", default="4,16,64", help="contexts per forward to compare (K = 6 candidates)")
    args = p.parse_args()

    lm = load_model(args.model, dtype=args.dtype, device=args.device)
    contexts = glam_contexts(args.contexts, args.env)
    n_tok = [len(lm.encode(c)) for c in contexts]
    print(f"model {args.model} ({lm.dtype}), {len(contexts)} contexts of {min(n_tok)}-{max(n_tok)} tokens")
    pool = candidate_pool()
    lm.score(contexts[:1], pool[:2])  # warm-up
    print("| K | naive (s) | shared prefix (s) | speed-up | max abs diff |")
    print("|---:|---:|---:|---:|---:|")
    for k in (int(x) for x in args.ks.split(",")):
        cands = pool[:k]
        naive_res: list = []
        t_naive = timed(lambda: naive_res.append(lm.score_naive(contexts, cands)), args.repeats)
        fast_res: list = []
        t_fast = timed(lambda: fast_res.append(lm.score(contexts, cands)), args.repeats)
        diff = max(float(np.abs(a.logprob - b.logprob).max()) for a, b in zip(naive_res[0], fast_res[0]))
        print(f"| {k} | {t_naive:.2f} | {t_fast:.3f} | {t_naive / t_fast:.1f}x | {diff:.3g} |", flush=True)

    default = lm.context_batch_size
    print(f"\nchunk size on {args.device} (default here: {default} contexts per forward), K = 6:")
    print("| contexts per forward | contexts/s | vs default |")
    print("|---:|---:|---:|")
    rates = {}
    for chunk in sorted({*(int(x) for x in args.chunks.split(",")), default}):
        lm.context_batch_size, lm.pair_batch_size = chunk, 8 * chunk
        rates[chunk] = len(contexts) / timed(lambda: lm.score(contexts, BABYAI_ACTIONS), args.repeats)
    for chunk, rate in rates.items():
        print(f"| {chunk} | {rate:.1f} | {rate / rates[default]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
