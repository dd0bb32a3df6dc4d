"""Scaling out on a local Ray: environment steps/s against env runners, LM contexts/s against LM
replicas, each beside the one-process baseline in the same run, then the scaling these per-step
costs predict for a cluster.

    python benchmarks/bench_scale.py                 # all of it (~5 minutes on 2 cores)
    python benchmarks/bench_scale.py --part envs     # envs | lm | glam

- envs: 16 BabyAI-Text GoToLocal environments stepped in lockstep with random actions, as GLAM
  steps them (``EnvGroup`` here vs ``RayEnvGroup`` over 1, 2, 4 runners); 8 Crafter-Text
  environments (ELLM's), a subprocess vector env here vs ``RayVectorEnv`` over 1 and 2 runners.
- lm: gemma-3-270m scoring GLAM's six actions after real prompts, 64 contexts per call, in this
  process (1 and all threads) vs ``RayLM`` with 1 and 2 replicas of one thread each.
- glam: GLAM's training loop on a small run, sync vs async rollouts (``ray.mode``): async lets
  the rollout worker use a core the learner leaves idle.

A machine with 2 cores cannot show speed-ups from more workers; what it measures is each
worker's cost (Ray's round trip, an environment step with its serialisation as one runner pays
it, a scored context), from which the last table predicts throughput with W workers: envs,
N / (rtt + N·c / W) steps/s with c = (N / rate_1 − rtt) / N from the 1-runner rate; LM,
W / t_context contexts/s while the driver's share (rtt per call) stays small.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import llmrl.envs  # noqa: E402,F401  (registers the BabyAI-Text ids)
from llmrl.envs.vector import EnvGroup  # noqa: E402
from llmrl.scale import RayConfig, connect  # noqa: E402


def babyai_group(n: int) -> EnvGroup:
    group = EnvGroup([gym.make("BabyAI-Text-GoToLocal-v0") for _ in range(n)])
    group.reset(list(range(n)))
    return group


def steps_per_s(group, n: int, steps: int) -> float:
    rng = np.random.default_rng(0)
    group.step(rng.integers(0, 6, n))  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        group.step(rng.integers(0, 6, n))
    return n * steps / (time.perf_counter() - t0)


def vector_steps_per_s(env, n: int, steps: int) -> float:
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    env.step(rng.integers(0, env.single_action_space.n, n))
    t0 = time.perf_counter()
    for _ in range(steps):
        env.step(rng.integers(0, env.single_action_space.n, n))
    return n * steps / (time.perf_counter() - t0)


def ray_round_trip_ms(ray) -> float:
    @ray.remote(num_cpus=0)
    class Echo:
        def ping(self, x):
            return x

    echo = Echo.remote()
    ray.get(echo.ping.remote(0))
    t0 = time.perf_counter()
    for _ in range(200):
        ray.get(echo.ping.remote(0))
    ray.kill(echo)
    return (time.perf_counter() - t0) / 200 * 1e3


def part_envs(ray, args) -> dict:
    from llmrl.envs import crafter_text as ct
    from llmrl.scale.env_runners import RayEnvGroup, RayVectorEnv

    n, out = 16, {}
    local = steps_per_s(babyai_group(n), n, args.steps)
    print(f"BabyAI-Text, {n} envs in lockstep: one process {local:9.0f} steps/s")
    for runners in (1, 2, 4):
        group = RayEnvGroup(babyai_group(n).local_envs(), RayConfig(address="local", env_runners=runners))
        rate = steps_per_s(group, n, args.steps)
        group.close()
        if runners == 1:
            out["babyai"] = (n, rate)
        print(f"{'':>34}{runners} runner{'s' if runners > 1 else ' '} {rate:9.0f} steps/s ({rate / local:.2f}x)")
    n = 8
    make = functools.partial(ct.make_vec, observation="symbolic")
    env = make(n)
    local = vector_steps_per_s(env, n, args.crafter_steps)
    env.close()
    print(f"Crafter-Text, {n} envs: subprocesses {local:9.0f} steps/s")
    for runners in (1, 2):
        env = RayVectorEnv(functools.partial(make, asynchronous=False), n,
                           RayConfig(address="local", env_runners=runners, env_runner_cpus=1))
        rate = vector_steps_per_s(env, n, args.crafter_steps)
        env.close()
        if runners == 1:
            out["crafter"] = (n, rate)
        print(f"{'':>22}{runners} runner{'s' if runners > 1 else ' '} {rate:9.0f} steps/s ({rate / local:.2f}x)")
    return out


def part_lm(ray, args) -> dict:
    import torch
    from bench_ppo import rollout_prompts

    from llmrl.envs.babyai_text import ACTIONS
    from llmrl.lm import load_model
    from llmrl.scale.lm_replicas import RayLM

    prompts = rollout_prompts("BabyAI-Text-GoToLocal-v0", args.contexts, 3)
    lm = load_model("gemma-3-270m")

    def rate(model) -> float:
        model.score(prompts[:8], ACTIONS)  # warm-up
        t0 = time.perf_counter()
        model.score(prompts, ACTIONS)
        return len(prompts) / (time.perf_counter() - t0)

    threads = torch.get_num_threads()
    base = rate(lm)
    torch.set_num_threads(1)
    one = rate(lm)
    torch.set_num_threads(threads)
    print(f"gemma-3-270m scoring 6 actions, {len(prompts)} contexts a call: one process, {threads} threads "
          f"{base:6.2f} contexts/s; 1 thread {one:6.2f}")
    for replicas in (1, 2):
        remote = RayLM("gemma-3-270m", RayConfig(address="local", lm_replicas=replicas, lm_num_cpus=1))
        r = rate(remote)
        remote.close()
        print(f"{'':>40}RayLM, {replicas} replica{'s' if replicas > 1 else ' '} {r:6.2f} contexts/s "
              f"({r / base:.2f}x the {threads}-thread process)")
    return {"context_s": 1 / one}


def part_glam(ray, args) -> dict:
    """GLAM's training loop, sync vs async rollouts, on a small run (the first update, which loads
    the async worker's model, left out)."""
    import csv
    import tempfile

    from llmrl.recipes.glam import config_from, run

    rates = {}
    for mode in ("sync", "async"):
        config = config_from("cpu", n_envs=8, total_env_steps=8 * 16 * 5, eval_episodes=0, torch_threads=1,
                             **{"ppo.n_steps": 16, "ppo.minibatch_size": 32, "micro_batch_size": 16,
                                "ray.address": "local", "ray.mode": mode})
        with tempfile.TemporaryDirectory() as tmp:
            run(config, tmp, progress=False)
            with open(f"{tmp}/progress.csv") as f:
                rows = list(csv.DictReader(f))[1:]
        seconds = sum(float(r["rollout_s"]) + float(r["update_s"]) for r in rows)
        rates[mode] = config.batch_size * len(rows) / seconds
        lag = ",".join(r["policy_lag"] for r in rows)
        print(f"GLAM cpu preset, 8 envs x 16 steps, 1 learner thread, {mode:<5}: {rates[mode]:6.2f} env steps/s "
              f"(policy lag {lag})")
    print(f"{'':>52}async / sync: {rates['async'] / rates['sync']:.2f}x")
    return {}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", default="all", choices=("all", "envs", "lm", "glam"))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--crafter-steps", type=int, default=100)
    p.add_argument("--contexts", type=int, default=64)
    args = p.parse_args()
    ray = connect(RayConfig(address="local"))
    rtt = ray_round_trip_ms(ray)
    print(f"Ray actor round trip: {rtt:.2f} ms")
    costs = {}
    if args.part in ("all", "envs"):
        costs.update(part_envs(ray, args))
    if args.part in ("all", "lm"):
        costs.update(part_lm(ray, args))
    if args.part in ("all", "glam"):
        part_glam(ray, args)
    print("\nPredicted on a cluster from these costs (one lockstep step or one call, W workers):")
    for key, what in (("babyai", "BabyAI-Text steps/s"), ("crafter", "Crafter-Text steps/s")):
        if key in costs:
            n, rate_1 = costs[key]
            c = max(n / rate_1 - rtt / 1e3, 0.0) / n  # one env's step as a runner pays it, serialisation included
            cells = "  ".join(f"W={w}: {n / (rtt / 1e3 + n * c / w):8.0f}" for w in (1, 4, 16))
            print(f"  {what + f', {n} envs':<30} {cells}   (c = {c * 1e6:.0f} us per env step)")
    if "context_s" in costs:
        cells = "  ".join(f"W={w}: {w / costs['context_s']:8.1f}" for w in (1, 4, 16))
        print(f"  {'LM contexts/s (1-core replicas)':<30} {cells}")


if __name__ == "__main__":
    main()
