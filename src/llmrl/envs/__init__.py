"""Environments: BabyAI-Text, GLAM's text version of BabyAI (Carta et al. 2023).

CLEVR-Robot: KALM's MuJoCo table of five balls pushed by 40 discrete actions, with goal sentences
at four levels (``llmrl.envs.clevr_goals``).

Importing this package registers the ``BabyAI-Text-*`` ids (``TEXT_ENV_IDS``) and
``CLEVR-Robot-v0`` with gymnasium::

    import gymnasium as gym
    import llmrl.envs

    env = gym.make("BabyAI-Text-MixedTrainLocal-v0")
    obs, info = env.reset(seed=0)
    info["mission"], info["descriptions"]  # "go to the blue key", ["You see a wall 2 steps forward", ...]
"""

from llmrl.envs.babyai_levels import HELD_OUT_PAIRS, MIXED_TASKS, MixedLocal
from llmrl.envs.babyai_text import ACTIONS, TEXT_ENV_IDS, BabyAITextEnv, make, make_vec, register_envs
from llmrl.envs.clevr_robot import ClevrRobotEnv, register_clevr_robot
from llmrl.envs.describe import describe, describe_env

__all__ = [
    "ACTIONS",
    "HELD_OUT_PAIRS",
    "MIXED_TASKS",
    "TEXT_ENV_IDS",
    "BabyAITextEnv",
    "ClevrRobotEnv",
    "MixedLocal",
    "describe",
    "describe_env",
    "make",
    "make_vec",
    "register_envs",
]

register_envs()
register_clevr_robot()
