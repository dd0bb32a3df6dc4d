"""Environments: BabyAI-Text (GLAM's text version of BabyAI, Carta et al. 2023), CLEVR-Robot (KALM's
MuJoCo table of five balls) and Crafter-Text (Crafter with ELLM's captions).

Importing this package registers their ids with gymnasium::

    import gymnasium as gym
    import llmrl.envs

    env = gym.make("BabyAI-Text-MixedTrainLocal-v0")
    obs, info = env.reset(seed=0)
    info["mission"], info["descriptions"]  # "go to the blue key", ["You see a wall 2 steps forward", ...]

CLEVR-Robot (``CLEVR-Robot-v0``, needs mujoco) and Crafter-Text (``CrafterText-v0`` with Crafter's
17 actions, ``CrafterText-VerbNoun-v0`` with ELLM's 139; needs crafter) are registered by name
only: their modules, and those packages, load when an environment is made, so a missing one
never stops the others. ``llmrl/ContinuousCartPoleSwingUp-v0`` is the PETS cart-pole swing-up
(continuous force, 200-step trials) that ``llmrl.rl.mbrl`` plans in.
"""

from typing import Any

import gymnasium as gym

from llmrl.envs.babyai_levels import HELD_OUT_PAIRS, MIXED_TASKS, MixedLocal
from llmrl.envs.babyai_text import ACTIONS, TEXT_ENV_IDS, BabyAITextEnv, make, make_vec, register_envs
from llmrl.envs.describe import describe, describe_env

__all__ = [
    "ACTIONS",
    "CARTPOLE_SWINGUP_ID",
    "HELD_OUT_PAIRS",
    "LAZY_ENV_IDS",
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

LAZY_ENV_IDS: dict[str, tuple[str, dict[str, Any]]] = {
    "CLEVR-Robot-v0": ("llmrl.envs.clevr_robot:ClevrRobotEnv", {}),
    "CrafterText-v0": ("llmrl.envs.crafter_text:CrafterTextEnv", {"action_set": "standard"}),
    "CrafterText-VerbNoun-v0": ("llmrl.envs.crafter_text:CrafterTextEnv", {"action_set": "verb_noun"}),
}
"""Environment ids registered by entry-point name, with their default keyword arguments."""

CARTPOLE_SWINGUP_ID = "llmrl/ContinuousCartPoleSwingUp-v0"
"""The PETS swing-up on mbrl-lib's continuous cart-pole (:mod:`llmrl.envs.cartpole_swingup`), 200-step trials."""

register_envs()
for _id, (_entry, _kwargs) in LAZY_ENV_IDS.items():
    if _id not in gym.registry:
        gym.register(_id, entry_point=_entry, kwargs=_kwargs)
if CARTPOLE_SWINGUP_ID not in gym.registry:
    gym.register(CARTPOLE_SWINGUP_ID, entry_point="llmrl.envs.cartpole_swingup:ContinuousCartPoleSwingUp",
                 max_episode_steps=200)


def __getattr__(name: str) -> Any:
    if name == "ClevrRobotEnv":  # loads mujoco
        from llmrl.envs.clevr_robot import ClevrRobotEnv

        return ClevrRobotEnv
    raise AttributeError(f"module 'llmrl.envs' has no attribute {name!r}")
