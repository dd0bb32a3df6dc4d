"""Roles compose: an LM explorer's bonus (a Gymnasium wrapper) and the LM policy (an agent that
PPO trains) act in one run on one environment, each unaware of the other."""

from __future__ import annotations

from functools import partial

import gymnasium as gym
import pytest
import torch

import llmrl.envs  # noqa: F401
from llmrl.envs.babyai_text import BabyAICaptions
from llmrl.recipes import glam
from llmrl.roles.explorer import ELLMWrapper, ExplorerConfig, GoalExplorer, goal_prompt

ENV = "BabyAI-Text-GoToLocalS5N2-v0"
# ELLM's prompt shape with BabyAI's verbs and two worked examples in BabyAI-Text's captions.
BABYAI_PROMPT = partial(
    goal_prompt,
    header="Valid actions: go to, pick up, drop, open\n\nYou are an agent in a grid world. Suggest the best "
           "actions the agent can take based on the things it sees and carries.\n\n",
    examples=(("You see a red key 1 step forward, You see a wall 2 steps left.", ("Pick up the red key",)),
              ("You see a closed blue door 1 step forward, You carry a yellow key.",
               ("Open the blue door", "Drop the yellow key"))),
)


class Paid(gym.Wrapper):
    """Records what the wrapped environment pays at each step: as a reward (``log``), or, when it
    is the innermost layer, into ``info["extrinsic"]``."""

    def __init__(self, env: gym.Env, log: list | None = None) -> None:
        super().__init__(env)
        self.log = log

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.log is None:
            info["extrinsic"] = float(reward)
        else:
            self.log.append((float(reward), info["extrinsic"], info["intrinsic"]))
        return obs, reward, terminated, truncated, info


def test_captions_name_what_an_action_did_to_an_object():
    env = BabyAICaptions(gym.make("BabyAI-Text-PickupLocal-v0"))
    _, info = env.reset(seed=0)
    assert info["caption"].startswith("You see") and info["transition_caption"] == ""
    level = env.unwrapped.level
    seen = set()
    for seed in range(40):  # walk randomly until something is picked up, then drop it
        env.reset(seed=seed)
        rng = torch.Generator().manual_seed(seed)
        for _ in range(60):
            _, _, term, trunc, info = env.step(int(torch.randint(6, (1,), generator=rng)))
            if info["transition_caption"]:
                seen.add(info["transition_caption"].split(" the ")[0])
                if "pick up" in info["transition_caption"]:
                    assert level.carrying is not None and "You carry a" in info["caption"]
            if term or trunc:
                break
        if {"pick up", "drop"} <= seen:
            break
    assert {"pick up", "drop"} <= seen


def test_an_lm_explorer_bonus_and_the_lm_policy_train_in_one_run(smollm2_fp32):
    explorer_lm = smollm2_fp32  # frozen: the policy loads its own copy, which PPO trains
    explorers, paid = [], []

    def make_env() -> gym.Env:
        explorer = GoalExplorer("llm", 1, ExplorerConfig(max_new_tokens=24), lm=explorer_lm, prompt=BABYAI_PROMPT)
        explorers.append(explorer)
        return Paid(ELLMWrapper(Paid(BabyAICaptions(gym.make(ENV))), explorer, intrinsic_weight=0.5), paid)

    config = glam.config_from("cpu", model="smollm2-135m-instruct", dtype="fp32", n_envs=2, micro_batch_size=4,
                              total_env_steps=16, eval_episodes=0, **{"ppo.n_steps": 4, "ppo.minibatch_size": 4,
                                                                      "ppo.learning_rate": 1e-3})
    policy = glam.build_policy(config)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    optim = torch.optim.Adam(trainable, lr=config.ppo.learning_rate)
    rollouts = glam.start_rollouts(config, make_env)
    for _ in range(config.n_updates):
        batch = glam.collect(policy, config, rollouts)
        glam.update(policy, optim, config, batch, rollouts.rng)

    # The explorer asked its LM about every state the policy acted in (once per new caption) ...
    assert len(explorers) == 2 and all(e.stats.suggested_states >= 8 and e.stats.lm_prompts >= 8 for e in explorers)
    assert any(goals for e in explorers for goals in e.suggestions.values())
    # ... the learner was paid the environment's reward plus half the explorer's bonus ...
    assert len(paid) == config.total_env_steps
    assert all(r == pytest.approx(extrinsic + 0.5 * bonus) for r, extrinsic, bonus in paid)
    # ... and PPO changed the policy's adapters and value head.
    assert any(not torch.equal(a, b) for a, b in zip(before, trainable))
