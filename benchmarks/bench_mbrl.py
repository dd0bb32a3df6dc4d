"""PETS planning speed (actions/s) and ensemble training speed, at mbrl-lib's cartpole sizes, on CPU.

    python benchmarks/bench_mbrl.py                 # 1 thread
    python benchmarks/bench_mbrl.py --threads 2 --actions 5

Planning: one MPC action = CEM with 5 iterations × 350 sequences × 20 particles × horizon 15
through the ensemble (mbrl-lib ``pets_cartpole``), on the cart-pole swing-up (5-d observations,
1-d action) with its known reward. "vectorised" is :class:`llmrl.rl.mbrl.PETSAgent` (all
350 × 20 rollouts in one batch per step); "per-candidate loop" evaluates each sequence's 20
particles on its own, as a naive MPC would — timed on a few sequences and scaled to the 1,750 of
one action. Users of mbrl-lib report about 1 s per action. Training: one epoch of
:func:`llmrl.rl.mbrl.fit_ensemble` (each member its own bootstrap, batch 256) on 5,000
transitions.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from llmrl.rl.mbrl import (
    PRESETS,
    PETSAgent,
    ProbabilisticEnsemble,
    cartpole_swingup_reward,
    fit_ensemble,
    imagine,
)

OBS_DIM, ACT_DIM = 5, 1
ENSEMBLES = {  # name: (members, hidden layers, elites)
    "5 × 3×200 (PETS notebook)": (5, (200, 200, 200), 5),
    "7 × 4×200, 5 elites (mbrl-lib config)": (7, (200, 200, 200, 200), 5),
}


def ensemble(members: int, hidden: tuple[int, ...], elites: int) -> ProbabilisticEnsemble:
    g = torch.Generator().manual_seed(0)
    return ProbabilisticEnsemble(OBS_DIM, ACT_DIM, ensemble_size=members, hidden_sizes=hidden,
                                 num_elites=elites, generator=g)


def seconds_per_action(model: ProbabilisticEnsemble, actions: int) -> float:
    """Mean wall time of ``actions`` MPC steps after one warm-up step."""
    agent = PETSAgent(model, cartpole_swingup_reward, PRESETS["paper"], [-1.0], [1.0])
    obs = np.array([0.0, 0.0, -1.0, 0.0, 0.0], np.float32)
    agent.act(obs)
    t = time.perf_counter()
    for _ in range(actions):
        agent.act(obs)
    return (time.perf_counter() - t) / actions


@torch.no_grad()
def seconds_per_action_naive(model: ProbabilisticEnsemble, sequences: int) -> float:
    """One sequence at a time (its 20 particles batched), scaled to 5 × 350 sequences."""
    c = PRESETS["paper"]
    g = torch.Generator().manual_seed(0)
    obs = torch.tensor([0.0, 0.0, -1.0, 0.0, 0.0])
    candidates = torch.rand(sequences, c.horizon, ACT_DIM, generator=g) * 2 - 1
    imagine(model, cartpole_swingup_reward, obs, candidates[:1], particles=c.particles, generator=g)  # warm-up
    t = time.perf_counter()
    for seq in candidates:
        imagine(model, cartpole_swingup_reward, obs, seq[None], particles=c.particles, generator=g,
                keep_states=False).returns()
    return (time.perf_counter() - t) / sequences * c.population * c.cem_iterations


def seconds_per_epoch(model: ProbabilisticEnsemble, transitions: int, epochs: int) -> float:
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(transitions, OBS_DIM, generator=g)
    action = torch.rand(transitions, ACT_DIM, generator=g) * 2 - 1
    next_obs = obs + 0.1 * torch.randn(transitions, OBS_DIM, generator=g)
    optimiser = torch.optim.Adam(model.parameters(), lr=7.5e-4, weight_decay=3e-5)
    t = time.perf_counter()
    fit = fit_ensemble(model, optimiser, obs, action, next_obs, epochs=epochs, batch_size=256,
                       patience=epochs, validation_ratio=0.0, generator=g)  # fmt: skip
    return (time.perf_counter() - t) / fit["epochs"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--actions", type=int, default=3, help="timed MPC steps per ensemble")
    parser.add_argument("--naive-sequences", type=int, default=20, help="sequences timed one by one")
    parser.add_argument("--transitions", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    c = PRESETS["paper"]
    print(f"CEM {c.cem_iterations} iterations × {c.population} sequences × {c.particles} particles × horizon "
          f"{c.horizon}, TS∞; torch {torch.__version__}, {args.threads} thread(s)")
    print("| ensemble | planning, vectorised (actions/s) | s/action | per-candidate loop (actions/s) | speed-up "
          f"| training (s/epoch, {args.transitions:,} transitions) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, spec in ENSEMBLES.items():
        model = ensemble(*spec)
        fast = seconds_per_action(model, args.actions)
        naive = seconds_per_action_naive(model, args.naive_sequences)
        train = seconds_per_epoch(ensemble(*spec), args.transitions, args.epochs)
        print(f"| {name} | {1 / fast:.2f} | {fast:.2f} | {1 / naive:.3f} | {naive / fast:.0f}× | {train:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
