"""KALM grounding and imagination throughput on CPU.

    python benchmarks/bench_grounding.py                       # both models, bf16 (if native) and fp32
    python benchmarks/bench_grounding.py --models smollm2-135m-instruct --dtypes fp32 --threads 2

Training: tokens/s of forward + backward + AdamW step with LoRA (r=8) on KALM's four tasks built
from synthetic CLEVR-like episodes (5-30 steps, so sequences of ~30-110 tokens), batch 8.
Imagination: rollout steps/s (one action + one state each) of greedy decoding with the KV cache,
batched vs one rollout at a time, and vs re-running the whole sequence every step without a
cache (what KALM's generation script does).
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from llmrl.lm import load_model
from llmrl.lm.hf import cpu_supports_bf16
from llmrl.lm.numeric import GroundedLM
from llmrl.roles.imagination import _epoch_batches, imagine, kalm_sequences, rollout_generation

COLOURS = ("red", "blue", "green", "purple", "cyan")
RELATIONS = ("to the left of", "to the right of", "in front of", "behind")


def clevr_like_episodes(n: int, rng: np.random.Generator, t_range: tuple[int, int] = (5, 30)) -> list[dict]:
    episodes = []
    for _ in range(n):
        T = int(rng.integers(*t_range, endpoint=True))
        obs = np.cumsum(rng.normal(0, 0.05, (T + 1, 10)), 0) + rng.uniform(-0.4, 0.4, 10)
        c1, c2 = rng.choice(len(COLOURS), 2, replace=False)
        goal = f"Push the {COLOURS[c1]} ball {RELATIONS[rng.integers(4)]} the {COLOURS[c2]} ball"
        episodes.append({"observations": obs.astype(np.float32), "actions": rng.integers(0, 40, T), "goal": goal})
    return episodes


def bench_training(g: GroundedLM, episodes: list[dict], batch_size: int, steps: int) -> tuple[float, tuple[int, int]]:
    rng = np.random.default_rng(0)
    encoded = [g.encode(s) for s in kalm_sequences(episodes, (0, 1, 2, 3), rng)]
    lengths = np.array([len(e) for e in encoded])
    batches = _epoch_batches(lengths, batch_size, rng)
    opt = torch.optim.AdamW([p for p in g.parameters() if p.requires_grad], lr=1e-3)
    g.train()
    tokens, busy = 0, 0.0
    for k in range(steps + 1):  # the first step warms up
        batch = g.collate([encoded[i] for i in batches[k % len(batches)]])
        t = time.perf_counter()
        loss = g(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if k:
            busy += time.perf_counter() - t
            tokens += batch.n_tokens
    g.eval()
    return tokens / busy, (int(lengths.min()), int(lengths.max()))


@torch.no_grad()
def naive_imagine(g: GroundedLM, goal: str, s0: np.ndarray, max_steps: int) -> dict:
    """No KV cache: the whole rollout so far runs through the LM at every step (as KALM does)."""
    ep = {"observations": s0[None], "actions": np.zeros(0, dtype=np.int64), "goal": goal}
    for _ in range(max_steps):
        batch = g.batch([rollout_generation(ep)])
        a = int(g.action_logits(g.hidden_states(batch)[0, -1]).argmax())
        ep["actions"] = np.append(ep["actions"], a)
        ep["observations"] = np.concatenate([ep["observations"], s0[None]])  # placeholder state
        batch = g.batch([rollout_generation(ep)])
        s = g.adapters.destandardise(g.state_prediction(g.hidden_states(batch)[0, -2]))
        ep["observations"][-1] = s.numpy()
    return ep


def bench_imagination(
    g: GroundedLM, episodes: list[dict], n_batched: int, n_alone: int, steps: int
) -> dict[str, float]:
    goals = [e["goal"] for e in episodes]
    s0 = np.stack([e["observations"][0] for e in episodes])
    imagine(g, goals[:2], s0[:2], max_steps=2)  # warm-up
    t = time.perf_counter()
    imagine(g, goals[:n_batched], s0[:n_batched], max_steps=steps, batch_size=n_batched)
    batched = n_batched * steps / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(n_alone):
        imagine(g, goals[i : i + 1], s0[i : i + 1], max_steps=steps)
    alone = n_alone * steps / (time.perf_counter() - t)
    t = time.perf_counter()
    naive_imagine(g, goals[0], s0[0], steps)
    naive = steps / (time.perf_counter() - t)
    return {"batched": batched, "alone": alone, "no_cache": naive}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="smollm2-135m-instruct,gemma-3-270m")
    p.add_argument("--dtypes", default="bf16,fp32" if cpu_supports_bf16() else "fp32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--train-steps", type=int, default=6)
    p.add_argument("--rollouts", type=int, default=32, help="rollouts imagined in one batch")
    p.add_argument("--alone", type=int, default=4, help="rollouts imagined one at a time")
    p.add_argument("--imagine-steps", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    episodes = clevr_like_episodes(max(64, args.rollouts), np.random.default_rng(0))
    print(f"threads={args.threads} batch={args.batch_size} cpu_bf16={cpu_supports_bf16()}")
    print(f"{'model':24s} {'dtype':5s} {'seq len':>8s} {'train tok/s':>11s} {'imagine steps/s: batched':>25s} "
          f"{'alone':>6s} {'no cache':>8s} {'batched/alone':>13s} {'alone/no cache':>14s}")
    for name in args.models.split(","):
        for dtype in args.dtypes.split(","):
            base = load_model(name, dtype=dtype)
            torch.manual_seed(0)
            g = GroundedLM(copy.deepcopy(base))
            g.adapters.fit_normalisation(np.concatenate([e["observations"] for e in episodes]))
            tok_s, (lo, hi) = bench_training(g, episodes, args.batch_size, args.train_steps)
            im = bench_imagination(g, episodes, args.rollouts, args.alone, args.imagine_steps)
            print(f"{name:24s} {dtype:5s} {f'{lo}-{hi}':>8s} {tok_s:11.0f} {im['batched']:25.1f} {im['alone']:6.1f} "
                  f"{im['no_cache']:8.1f} {im['batched'] / im['alone']:13.1f}x {im['alone'] / im['no_cache']:13.1f}x",
                  flush=True)
            del g, base


if __name__ == "__main__":
    main()
