"""The roles a language model takes in an RL agent. Each is one of three things, so several can act
in one run (docs/architecture.md, "Roles compose"):

- an **agent** that acts: the LM policy (``policy``: GLAM's prompt, the zero-shot policy, the
  trainable actor-critic);
- a **Gymnasium wrapper** or an **intrinsic reward** that changes what the learner is paid
  (``explorer``: ELLM's suggested goals);
- a **data source**: imagination (``imagination``: KALM's grounded LM writing rollouts).
"""

from llmrl.roles.policy import LLMPolicyAgent, glam_prompt

__all__ = ["LLMPolicyAgent", "glam_prompt"]
