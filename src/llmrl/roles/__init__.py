"""The roles a language model takes in an RL agent: policy (here), and later explorer, reward
designer, state encoder, planner and imagination."""

from llmrl.roles.policy import BABYAI_ACTIONS, LLMPolicyAgent, glam_prompt

__all__ = ["BABYAI_ACTIONS", "LLMPolicyAgent", "glam_prompt"]
