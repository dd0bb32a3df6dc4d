"""BabyAI's symbolic view of a BabyAI-Text environment, as Stable-Baselines3 spaces.

What BabyAI agents usually see, and what GLAM's non-language baseline sees: the 7x7x3 egocentric
grid of (object, colour, state) codes, the heading, and the instruction as word ids — never the
description sentences. :class:`SymbolicObservation` turns BabyAI-Text's Dict observation
(whose ``Text`` fields SB3 cannot take) into that view.
"""

from __future__ import annotations

import re
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from minigrid.core.constants import COLOR_NAMES, OBJECT_TO_IDX, STATE_TO_IDX

__all__ = ["MISSION_VOCAB", "PAD", "UNK", "SymbolicObservation", "encode_mission", "symbolic_observation"]

PAD, UNK = 0, 1
# BabyAI's grammar (minigrid.envs.babyai.core.verifier): verbs, articles, the sequencing words and
# ObjDesc's locations. Colours and object names come from minigrid so a new one cannot be missed.
_INSTRUCTION_WORDS = (
    "go", "to", "the", "a", "pick", "up", "put", "next", "open", "then", "after", "you", "and",
    "on", "your", "left", "right", "in", "front", "of", "behind",
)  # fmt: skip
MISSION_VOCAB: tuple[str, ...] = tuple(
    dict.fromkeys(("<pad>", "<unk>", *COLOR_NAMES, *OBJECT_TO_IDX, *_INSTRUCTION_WORDS))
)
_WORD_ID = {w: i for i, w in enumerate(MISSION_VOCAB)}
# Largest code per image channel; bounds other than [0, 255] also keep SB3 from treating the grid
# as a picture (it would divide by 255 and transpose it).
_CODE_MAX = np.array([max(OBJECT_TO_IDX.values()), len(COLOR_NAMES) - 1, max(STATE_TO_IDX.values())], np.uint8)


def encode_mission(mission: str, length: int = 16) -> np.ndarray:
    """Word ids of ``mission`` over ``MISSION_VOCAB``, cut or padded (0) to ``length``.

    Punctuation is dropped: ``then`` and ``after`` already say in which order sub-goals come.
    """
    words = re.sub(r"[^a-z ]", " ", mission.lower()).split()
    ids = np.full(length, PAD, dtype=np.int64)
    tokens = [_WORD_ID.get(w, UNK) for w in words[:length]]
    ids[: len(tokens)] = tokens
    return ids


def symbolic_observation(obs: dict[str, Any], mission_len: int = 16) -> dict[str, Any]:
    """A raw BabyAI-Text observation as :class:`SymbolicObservation` returns it."""
    return {
        "image": np.asarray(obs["image"], dtype=np.uint8),
        "direction": int(obs["direction"]),
        "mission": encode_mission(obs["mission"], mission_len),
    }


class SymbolicObservation(gym.ObservationWrapper):
    """BabyAI-Text's Dict observation as spaces SB3 accepts: grid, heading, mission word ids.

    The ``text`` field (GLAM's sentences) is dropped: the baseline must not see the language view.
    """

    def __init__(self, env: gym.Env, mission_len: int = 16) -> None:
        super().__init__(env)
        self.mission_len = mission_len
        shape = env.observation_space["image"].shape
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, np.broadcast_to(_CODE_MAX, shape), shape, np.uint8),
                "direction": spaces.Discrete(4),
                "mission": spaces.Box(0, len(MISSION_VOCAB) - 1, (mission_len,), np.int64),
            }
        )

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        return symbolic_observation(observation, self.mission_len)
