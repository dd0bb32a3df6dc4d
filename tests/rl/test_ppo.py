"""PPO's pieces, and a few PPO updates of the real LM policy with LoRA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmrl.rl.ppo import gae, ppo_losses


def test_gae_matches_a_hand_computation_and_stops_at_episode_ends():
    r = torch.tensor([[1.0], [0.0], [2.0]])
    v = torch.tensor([[0.5], [0.2], [0.1]])
    d = torch.tensor([[0.0], [1.0], [0.0]])
    adv, ret = gae(r, v, d, last_value=torch.tensor([0.3]), gamma=0.9, lam=0.8)
    # t=2: δ = 2 + 0.9*0.3 - 0.1; t=1 ends an episode: δ = 0 - 0.2; t=0: δ = 1 + 0.9*0.2 - 0.5
    a2 = 2 + 0.9 * 0.3 - 0.1
    a1 = -0.2
    a0 = (1 + 0.9 * 0.2 - 0.5) + 0.9 * 0.8 * a1
    torch.testing.assert_close(adv[:, 0], torch.tensor([a0, a1, a2]))
    torch.testing.assert_close(ret, adv + v)


def test_clipping_stops_the_gradient_beyond_the_trust_region():
    logits = torch.zeros(4, 3, requires_grad=True)
    logp_all = torch.log_softmax(logits, -1)
    actions = torch.tensor([0, 1, 2, 0])
    old = torch.full((4,), np.log(1 / 3)) - 1.0  # ratio = e ≈ 2.7 > 1 + ε for every sample
    adv = torch.ones(4)
    v = torch.zeros(4)
    out = ppo_losses(logp_all, actions, old, adv, v, v, v, normalise_advantages=False, ent_coef=0.0)
    out.policy.backward()
    assert logits.grad is not None and torch.count_nonzero(logits.grad) == 0
    assert out.clip_fraction == 1.0


def _prompt(named: str) -> str:
    from llmrl.envs.babyai_text import ACTIONS as BABYAI_ACTIONS
    from llmrl.roles.policy import glam_prompt

    return glam_prompt(BABYAI_ACTIONS, "do the rewarded action", [[f"The rewarded action is {named}"]], [])


@pytest.mark.slow
def test_a_few_lora_ppo_updates_raise_the_named_actions_probability():
    """One-step episodes whose observation names the rewarded action (reward 1 if taken)."""
    from llmrl.lm import load_model
    from llmrl.envs.babyai_text import ACTIONS as BABYAI_ACTIONS
    from llmrl.roles.policy import LMActorCritic

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    lm = load_model("gemma-3-270m", dtype="fp32")
    policy = LMActorCritic(lm, BABYAI_ACTIONS)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    assert 0 < sum(p.numel() for p in trainable) < 0.05 * sum(p.numel() for p in policy.parameters())
    optim = torch.optim.Adam(trainable, lr=1e-3)
    named_pool = ["go forward", "turn left", "toggle"]
    eval_named = named_pool * 2
    eval_idx = torch.tensor([BABYAI_ACTIONS.index(a) for a in eval_named])

    def p_named() -> float:
        with torch.no_grad():
            logp, _ = policy([_prompt(a) for a in eval_named])
        return float(logp.gather(1, eval_idx[:, None]).exp().mean())

    before = p_named()
    for _ in range(4):  # updates
        named = [named_pool[i] for i in rng.integers(len(named_pool), size=12)]
        prompts = [_prompt(a) for a in named]
        with torch.no_grad():
            logp, values = policy(prompts)
            actions = torch.distributions.Categorical(logits=logp).sample()
            rewards = torch.tensor([float(BABYAI_ACTIONS[a] == n) for a, n in zip(actions.tolist(), named)])
            adv, ret = gae(rewards[None], values[None], torch.ones(1, len(named)), torch.zeros(len(named)))
            old_logp = logp.gather(1, actions[:, None]).squeeze(1)
        for _ in range(2):  # epochs
            new_logp, new_values = policy(prompts)
            loss = ppo_losses(new_logp, actions, old_logp, adv[0], new_values, values, ret[0]).total
            optim.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 0.5)
            optim.step()
    after = p_named()
    print(f"p(named action): {before:.3f} -> {after:.3f}")
    assert after > before + 0.05, (before, after)
