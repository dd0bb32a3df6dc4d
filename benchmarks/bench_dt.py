"""Decision Transformer costs on CPU: training steps/s, evaluation actions/s, ODT's online iteration.

    python benchmarks/bench_dt.py                  # DT gym sizes: batch 64, K 20, embed 128, 3 layers
    python benchmarks/bench_dt.py --threads 2 --steps 100

Measured in one run, one thread by default (the machine is shared):

- *train*: ``train_dt`` steps/s on 100 synthetic Pendulum-shaped episodes of 200 steps, next to a
  bare forward+backward+AdamW step on one fixed batch: the ratio is what batch sampling and
  bookkeeping cost (goal >= 90%).
- *evaluate*: ``evaluate_dt`` on Pendulum-v1 with 1 and 10 episodes side by side (one batched
  forward per step), in actions/s, next to the env's own random-action steps/s.
- *ODT iteration*: one online iteration with online-dt's 300 updates and 1 rollout, its replay
  full (1000 trajectories of 200 steps), split into rollout, buffer-to-batches rebuild and updates.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import gymnasium as gym
import numpy as np
import torch

from llmrl.data import Episode
from llmrl.rl.dt import PRESETS, TrajectoryBuffer, WindowSampler, evaluate_dt, make_dt, rollout, sequence_loss, train_dt


def pendulum_like(n: int, length: int = 200, seed: int = 0) -> list[Episode]:
    rng = np.random.default_rng(seed)
    return [Episode(rng.normal(size=(length + 1, 3)), rng.uniform(-2, 2, (length, 1)), rng.uniform(-16, 0, length),
                    [False] * length, [False] * (length - 1) + [True], goal="") for _ in range(n)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60, help="training steps timed")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--updates", type=int, default=300, help="updates per ODT online iteration (online-dt: 300)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    config = replace(PRESETS["paper"], train_steps=args.steps, warmup_steps=10, action_scale=2.0, log_every=10**9)
    episodes = pendulum_like(100)
    print(f"batch {config.batch_size}, K {config.context_len}, embed {config.hidden_size}, {config.n_layer} layers, "
          f"{config.n_head} head, {args.threads} thread(s)\n")

    # Training: train_dt against a bare step on one fixed batch.
    train_dt(replace(config, train_steps=5), episodes)  # warm-up
    t = time.perf_counter()
    train_dt(config, episodes)
    dt_rate = args.steps / (time.perf_counter() - t)
    model = make_dt(config, 3, 1, 2.0).train()
    sampler = WindowSampler(episodes, config.context_len, np.zeros(3, np.float32), np.ones(3, np.float32), 1000.0,
                            np.array([2.0], np.float32), config.max_episode_length)
    batch = sampler.sample(config.batch_size, torch.Generator().manual_seed(0))
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    t = time.perf_counter()
    for _ in range(args.steps):
        optim.zero_grad()
        sequence_loss(model, batch)["loss"].backward()
        optim.step()
    bare_rate = args.steps / (time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(200):
        sampler.sample(config.batch_size, torch.Generator().manual_seed(0))
    sample_ms = (time.perf_counter() - t) / 200 * 1e3

    # Evaluation: actions/s of evaluate_dt, and of the env alone.
    model.eval()
    eval_rates = {}
    for n in (1, 10):
        t = time.perf_counter()
        evaluate_dt(model, "Pendulum-v1", -200.0, n, seed=0)
        eval_rates[n] = n * 200 / (time.perf_counter() - t)
    env = gym.make("Pendulum-v1")
    env.reset(seed=0)
    t = time.perf_counter()
    for _ in range(2000):
        env.step(env.action_space.sample())
    env_rate = 2000 / (time.perf_counter() - t)

    # ODT: one online iteration with a full replay.
    odt = replace(config, stochastic=True)
    odt_model = make_dt(odt, 3, 1, 2.0)
    buffer = TrajectoryBuffer(odt.replay_size, pendulum_like(odt.replay_size, seed=1))
    t = time.perf_counter()
    new = rollout(odt_model, "Pendulum-v1", 0.0, odt.rollouts_per_iteration, seed=1, sample=True, context_len=5)
    t_rollout = time.perf_counter() - t
    t = time.perf_counter()
    buffer.add(new)
    odt_sampler = WindowSampler(buffer.episodes, odt.context_len, np.zeros(3, np.float32), np.ones(3, np.float32),
                                1000.0, np.array([2.0], np.float32), odt.max_episode_length)
    t_rebuild = time.perf_counter() - t
    odt_model.train()
    log_temperature = torch.tensor(np.log(0.1), requires_grad=True)
    optim = torch.optim.AdamW(odt_model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    n_timed = min(args.updates, args.steps)  # time a slice, scale to the iteration's updates
    t = time.perf_counter()
    for _ in range(n_timed):
        out = sequence_loss(odt_model, odt_sampler.sample(odt.batch_size, g), log_temperature.exp())
        optim.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(odt_model.parameters(), 0.25)
        optim.step()
    t_updates = (time.perf_counter() - t) / n_timed * args.updates

    print("| measure | value |")
    print("|---|---|")
    print(f"| train_dt steps/s | {dt_rate:.1f} |")
    print(f"| bare forward+backward+AdamW steps/s (one fixed batch) | {bare_rate:.1f} |")
    print(f"| train_dt / bare | {dt_rate / bare_rate:.0%} (goal >= 90%) |")
    print(f"| one batch from WindowSampler | {sample_ms:.2f} ms |")
    print(f"| evaluate_dt, 1 episode, actions/s | {eval_rates[1]:.0f} |")
    print(f"| evaluate_dt, 10 episodes side by side, actions/s | {eval_rates[10]:.0f} |")
    print(f"| Pendulum-v1 alone, random actions, steps/s | {env_rate:.0f} |")
    print(f"| ODT iteration: 1 sampled rollout (200 steps, context 5) | {t_rollout:.2f} s |")
    print(f"| ODT iteration: replay (1000 x 200 steps) to batches | {t_rebuild:.2f} s |")
    print(f"| ODT iteration: {args.updates} updates (timed {n_timed}) | {t_updates:.1f} s |")
    print(f"| ODT iteration total | {t_rollout + t_rebuild + t_updates:.1f} s |")


if __name__ == "__main__":
    main()
