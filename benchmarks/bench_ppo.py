"""PPO update throughput of the LM policy vs a bare forward+backward of the same model and batch.

    python benchmarks/bench_ppo.py                       # cpu preset: GoToLocalS5N2, 1 observation
    python benchmarks/bench_ppo.py --env BabyAI-Text-GoToLocal-v0 --n-observations 3

Both sides run the same LoRA-adapted model on the same micro-batches of real GLAM prompts:

- *PPO*: ``LMActorCritic`` (shared-prefix scoring of the six actions, value head) -> clipped PPO
  loss -> backward, as ``llmrl.recipes.glam.update`` does;
- *bare*: one causal-LM forward over the padded prompts, a scalar from the last position's
  hidden state, backward — the least any training step on these prompts must cost.

Throughput is prompt tokens per second (candidate tokens are PPO's extra work). Goal: PPO >= 70%
of bare. Also printed: LM forward passes per environment step during a rollout (prompts scored per
env step; 1 + 1/n_steps with the bootstrap value), measured by running ``collect``.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch

import llmrl.envs  # noqa: F401  (registers the BabyAI-Text ids)
from llmrl.envs.babyai_text import ACTIONS
from llmrl.recipes.glam import GLAMConfig, build_policy, collect, start_rollouts
from llmrl.rl.ppo import PPOConfig, ppo_losses
from llmrl.roles.policy import PromptHistory


def rollout_prompts(env_id: str, n: int, n_observations: int, seed: int = 0) -> list[str]:
    """Prompts from random-action episodes, so they hold real observation histories."""
    rng = np.random.default_rng(seed)
    prompts: list[str] = []
    env = gym.make(env_id)
    while len(prompts) < n:
        _, info = env.reset(seed=int(rng.integers(1 << 30)))
        history = PromptHistory(ACTIONS, n_observations)
        for _ in range(8):
            prompts.append(history.prompt(info["mission"], info["descriptions"]))
            a = int(rng.integers(len(ACTIONS)))
            history.record(ACTIONS[a])
            _, _, term, trunc, info = env.step(a)
            if term or trunc:
                break
    return prompts[:n]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="BabyAI-Text-GoToLocalS5N2-v0")
    p.add_argument("--n-observations", type=int, default=1)
    p.add_argument("--micro-batch", type=int, default=16)
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--dtype", default="auto")
    args = p.parse_args()

    config = GLAMConfig(env_id=args.env, n_observations=args.n_observations, dtype=args.dtype, n_envs=16,
                        ppo=PPOConfig(n_steps=8, minibatch_size=16), micro_batch_size=16, total_env_steps=128)
    policy = build_policy(config)
    lm = policy.lm
    prompts = rollout_prompts(args.env, args.micro_batch * args.batches, args.n_observations)
    batches = [prompts[i : i + args.micro_batch] for i in range(0, len(prompts), args.micro_batch)]
    n_tokens = sum(len(lm.encode(x)) + 1 for x in prompts)  # + BOS
    print(f"{args.env}, {args.n_observations} observation(s): {len(prompts)} prompts, "
          f"{n_tokens / len(prompts):.0f} tokens each on average, dtype {lm.dtype}")

    def ppo_step(batch: list[str]) -> None:
        logp_all, v = policy(batch)
        n = len(batch)
        with torch.no_grad():
            actions = logp_all.argmax(-1)
            old = logp_all.gather(1, actions[:, None]).squeeze(1) - 0.01
        adv = torch.linspace(-1, 1, n)
        out = ppo_losses(logp_all, actions, old, adv, v, v.detach(), v.detach() + 1, normalise_advantages=False)
        out.total.backward()

    def bare_step(batch: list[str]) -> None:
        ids = [lm._bos + lm.encode(x) for x in batch]
        T = max(map(len, ids))
        x = torch.full((len(ids), T), lm.tokenizer.pad_token_id)
        mask = torch.zeros((len(ids), T), dtype=torch.long)
        for i, t in enumerate(ids):
            x[i, T - len(t):] = torch.tensor(t)
            mask[i, T - len(t):] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        h = lm._decoder()(input_ids=x, attention_mask=mask, position_ids=pos).last_hidden_state
        h[:, -1].float().pow(2).mean().backward()

    def timed(step) -> float:
        best = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            for b in batches:
                step(b)
                policy.zero_grad(set_to_none=True)
            best = min(best, time.perf_counter() - t)
        return best

    policy.train()
    ppo_step(batches[0]), bare_step(batches[0])  # warm-up
    policy.zero_grad(set_to_none=True)
    t_ppo, t_bare = timed(ppo_step), timed(bare_step)
    print(f"bare forward+backward: {t_bare:.2f} s  ({n_tokens / t_bare:.0f} prompt tokens/s)")
    print(f"PPO update:            {t_ppo:.2f} s  ({n_tokens / t_ppo:.0f} prompt tokens/s)")
    print(f"PPO / bare throughput: {t_bare / t_ppo:.0%}  (goal >= 70%)")

    # Rollout: count the prompts the policy scores per environment step.
    policy.eval()
    scored = 0
    forward = policy.forward

    def counting_forward(prompts: list[str]):
        nonlocal scored
        scored += len(prompts)
        return forward(prompts)

    policy.forward = counting_forward  # type: ignore[method-assign]
    ro = start_rollouts(config)
    t = time.perf_counter()
    collect(policy, config, ro)
    dt = time.perf_counter() - t
    steps = config.batch_size
    print(f"rollout: {scored / steps:.3f} LM forward passes (prompts scored) per env step "
          f"over {steps} steps; {steps / dt:.1f} env steps/s")


if __name__ == "__main__":
    main()
