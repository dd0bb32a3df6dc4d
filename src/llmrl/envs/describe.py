"""BabyAI-Text descriptions: GLAM's sentences from the agent's egocentric, occluded view.

The input is MiniGrid's symbolic observation ``obs["image"]``: a ``(V, V, 3)`` uint8 array of
``(object, colour, state)`` indexed ``[x, y]``, already rotated so the agent sits at
``(V // 2, V - 1)`` facing up (decreasing ``y``), with occluded cells encoded as ``unseen`` (0)
and the carried object drawn on the agent's own cell. Working on that array, not on the grid,
keeps the text a pure function of what the agent observes and lets numpy do the scanning.

Sentences follow GLAM (Carta et al. 2023, babyai-text), in this order:

1. the carried object: ``You carry a {color} {type}``;
2. walls straight ahead, then directly left, then directly right, each only when the nearest
   non-empty visible cell on that straight line is a wall: ``You see a wall 3 steps forward``;
3. every other visible object, column by column from left to right and, within a column, from
   far to near (GLAM's iteration order, kept so that prompts match GLAM's checkpoints):
   ``You see a red ball 2 steps left and 3 steps forward``, or one axis when aligned
   (``You see a purple key 2 steps forward``, ``You see a red ball 1 step left``).

Doors carry their state: ``You see a locked purple door 2 steps right and 3 steps forward``.
The article is "an" before a word starting with a vowel, else "a"; in BabyAI's vocabulary only
the door state "open" triggers it, so open doors read ``You see an open red door ...`` where
GLAM's code printed "a open" (its open-state test compared a string with 0 and never matched).

Empty cells, floor and unseen cells are not described and do not block the view of a wall.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX
from minigrid.minigrid_env import MiniGridEnv

__all__ = ["describe", "describe_env"]

_UNSEEN, _EMPTY, _WALL, _FLOOR = (OBJECT_TO_IDX[k] for k in ("unseen", "empty", "wall", "floor"))
_DOOR = OBJECT_TO_IDX["door"]
# Cells that a wall is seen "through": nothing stands between the agent and the wall.
_CLEAR = np.zeros(256, dtype=bool)
_CLEAR[[_UNSEEN, _EMPTY, _FLOOR]] = True
# Cells described as objects (key, ball, box, door, goal, lava); walls have their own sentence.
_OBJECT = np.zeros(256, dtype=bool)
_OBJECT[[i for k, i in OBJECT_TO_IDX.items() if k not in ("unseen", "empty", "wall", "floor", "agent")]] = True


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _steps(n: int) -> str:
    return f"{n} step{'s' if n > 1 else ''}"


def _noun_table() -> dict[tuple[int, int, int], str]:
    """Noun phrase with article for every (object, colour, state) code, e.g. ``an open red door``."""
    table = {}
    for obj, t in OBJECT_TO_IDX.items():
        for color, c in COLOR_TO_IDX.items():
            for state, s in STATE_TO_IDX.items():
                words = f"{state} {color} {obj}" if t == _DOOR else f"{color} {obj}"
                table[t, c, s] = f"{_article(words)} {words}"
    return table


_NOUN = _noun_table()


@lru_cache(maxsize=8)
def _position_table(view_size: int) -> tuple[tuple[str, ...], ...]:
    """``[x][y]`` -> egocentric offset phrase, e.g. ``2 steps left and 3 steps forward``."""
    ax, ay = view_size // 2, view_size - 1
    rows = []
    for x in range(view_size):
        row = []
        for y in range(view_size):
            dx, fwd = x - ax, ay - y
            side = f"{_steps(abs(dx))} {'right' if dx > 0 else 'left'}"
            if dx == 0:
                row.append(f"{_steps(fwd)} forward")
            elif fwd == 0:
                row.append(side)
            else:
                row.append(f"{side} and {_steps(fwd)} forward")
        rows.append(tuple(row))
    return tuple(rows)


def _wall_distance(line: np.ndarray) -> int:
    """Steps to the wall on a line of object codes ordered from the agent outwards, or 0."""
    blocked = np.flatnonzero(~_CLEAR[line])
    if blocked.size and line[blocked[0]] == _WALL:
        return int(blocked[0]) + 1
    return 0


def describe(image: np.ndarray) -> list[str]:
    """GLAM's sentences for one egocentric MiniGrid observation (see the module docstring).

    Args:
        image: ``obs["image"]``, shape ``(V, V, 3)``, MiniGrid's ``(object, colour, state)``
            encoding indexed ``[x, y]``, agent at ``(V // 2, V - 1)`` facing up.
    """
    view = image.shape[0]
    ax, ay = view // 2, view - 1
    kinds = image[:, :, 0]
    sentences: list[str] = []

    held = int(kinds[ax, ay])
    if _OBJECT[held]:
        t, c, s = image[ax, ay].tolist()
        sentences.append(f"You carry {_NOUN[t, c, 0]}")

    for steps, direction in (
        (_wall_distance(kinds[ax, ay - 1 :: -1]), "forward"),
        (_wall_distance(kinds[ax - 1 :: -1, ay]) if ax > 0 else 0, "left"),
        (_wall_distance(kinds[ax + 1 :, ay]), "right"),
    ):
        if steps:
            sentences.append(f"You see a wall {_steps(steps)} {direction}")

    seen = _OBJECT[kinds]
    seen[ax, ay] = False  # the agent's own cell holds the carried object
    xs, ys = np.nonzero(seen)  # row-major over [x, y]: left to right, then far to near
    if xs.size:
        where = _position_table(view)
        codes = image[xs, ys].tolist()
        for x, y, (t, c, s) in zip(xs.tolist(), ys.tolist(), codes):
            sentences.append(f"You see {_NOUN[t, c, s]} {where[x][y]}")
    return sentences


def describe_env(env: MiniGridEnv) -> list[str]:
    """Sentences for the current state of a MiniGrid env, from its own ``gen_obs()``."""
    return describe(env.unwrapped.gen_obs()["image"])
