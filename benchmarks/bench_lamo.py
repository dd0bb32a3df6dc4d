"""LaMo's cost against the small Decision Transformer: training steps/s and actions/s, side by side.

    python benchmarks/bench_lamo.py                       # gemma-3-270m, Pendulum shapes, K 5 and 20
    python benchmarks/bench_lamo.py --model smollm2-135m-instruct --contexts 5 --threads 2

Each model is built as ``llmrl train lamo`` builds it (recipes/lamo.build) and trained on random
Pendulum-shaped episodes (3-d states, 1-d actions; timing does not depend on the values).
``lamo`` includes the language loss (one 32-token window per step), ``lamo (no LM loss)`` shows its
share; ``lamo-random`` trains every weight of the same architecture. The ratio column is against
the small DT at the same context.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from llmrl.data import Episode


def episodes(n: int, T: int, seed: int = 0) -> list[Episode]:
    rng = np.random.default_rng(seed)
    return [Episode(rng.normal(size=(T + 1, 3)), rng.uniform(-2, 2, (T, 1)), rng.normal(size=T), [False] * T,
                    [False] * (T - 1) + [True], goal="") for _ in range(n)]


def time_variant(variant: str, config, data: list[Episode], steps: int, backbones, co_lambda: float) -> tuple[float, float]:
    from llmrl.recipes.lamo import build
    from llmrl.rl.dt import train_dt

    c, model, aux = build(variant, replace(config, co_lambda=co_lambda), 3, 1, [2.0], 0, backbones)
    c = replace(c, train_steps=1, warmup_steps=1)
    train_dt(c, data, model=model, aux_loss=aux)  # warm-up step
    t = time.perf_counter()
    train_dt(replace(c, train_steps=steps), data, model=model, aux_loss=aux)
    step_s = (time.perf_counter() - t) / steps
    K = config.context
    x = dict(states=torch.zeros(1, K, 3), actions=torch.zeros(1, K, 1), returns_to_go=torch.zeros(1, K, 1),
             timesteps=torch.arange(K)[None])
    model.eval()
    with torch.inference_mode():
        model(**x)
        t = time.perf_counter()
        for _ in range(20):
            model(**x)
    act_s = (time.perf_counter() - t) / 20
    return step_s, act_s


def main() -> None:
    from llmrl.recipes.lamo import LaMoConfig, _Backbones

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--contexts", default="5,20")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = episodes(20, 200)
    backbones = _Backbones(args.model)
    print(f"{args.model}, batch {args.batch_size}, {args.threads} thread(s), {args.steps} timed steps")
    print("| context K | model | s/step | ratio to DT | ms/action |")
    print("|---:|---|---:|---:|---:|")
    for K in (int(k) for k in args.contexts.split(",")):
        config = LaMoConfig(model=args.model, context=K, batch_size=args.batch_size)
        base = None
        for name, variant, co in (("dt", "dt", 0.0), ("lamo", "lamo", 0.1), ("lamo (no LM loss)", "lamo", 0.0),
                                  ("lamo-random", "lamo-random", 0.0)):
            step_s, act_s = time_variant(variant, config, data, args.steps, backbones, co)
            base = base or step_s
            print(f"| {K} | {name} | {step_s:.3f} | {step_s / base:.1f}x | {1000 * act_s:.1f} |", flush=True)


if __name__ == "__main__":
    main()
