"""BabyAI-Text descriptions: GLAM's sentences from the agent's egocentric, occluded view.

The input is MiniGrid's symbolic observation ``obs["image"]``: a ``(V, V, 3)`` uint8 array of
``(object, colour, state)`` indexed ``[x, y]``, already rotated so the agent sits at
``(V // 2, V - 1)`` facing up (decreasing ``y``), with occluded cells encoded as ``unseen`` (0)
and the carried object drawn on the agent's own cell. Working on that array, not on the grid,
keeps the text a pure function of what the agent observes.

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
GLAM's code printed "a open" (its open-state test compared a string with 0 and never matched):
``describe(image, articles="glam")`` writes GLAM's "a" everywhere, as its checkpoints saw it.

Empty cells, floor and unseen cells are not described and do not block the view of a wall.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX
from minigrid.minigrid_env import MiniGridEnv

__all__ = ["describe", "describe_env"]

_WALL, _DOOR = OBJECT_TO_IDX["wall"], OBJECT_TO_IDX["door"]
# Cells that do not hide a wall behind them: nothing stands between the agent and the wall.
_CLEAR = frozenset(OBJECT_TO_IDX[k] for k in ("unseen", "empty", "floor"))
# Cells described as objects (key, ball, box, door, goal, lava); walls have their own sentence.
_IS_OBJECT = [False] * 256
for _kind, _code in OBJECT_TO_IDX.items():
    _IS_OBJECT[_code] = _kind not in ("unseen", "empty", "wall", "floor", "agent")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _steps(n: int) -> str:
    return f"{n} step{'s' if n > 1 else ''}"


ARTICLES = ("english", "glam")


def _noun_table(articles: str) -> dict[tuple[int, int, int], str]:
    """Noun phrase with article for every (object, colour, state) code, e.g. ``an open red door``
    (``articles="glam"``: ``a open red door``)."""
    table = {}
    for obj, t in OBJECT_TO_IDX.items():
        for color, c in COLOR_TO_IDX.items():
            for state, s in STATE_TO_IDX.items():
                words = f"{state} {color} {obj}" if t == _DOOR else f"{color} {obj}"
                table[t, c, s] = f"{_article(words) if articles == 'english' else 'a'} {words}"
    return table


_NOUNS = {articles: _noun_table(articles) for articles in ARTICLES}


def _where(view_size: int, x: int, y: int) -> str:
    """Egocentric offset of view cell (x, y), e.g. ``2 steps left and 3 steps forward``."""
    dx, forward = x - view_size // 2, view_size - 1 - y
    side = f"{_steps(abs(dx))} {'right' if dx > 0 else 'left'}"
    if dx == 0:
        return f"{_steps(forward)} forward"
    if forward == 0:
        return side
    return f"{side} and {_steps(forward)} forward"


@lru_cache(maxsize=8)
def _sentence_cache(view_size: int, articles: str) -> dict[tuple[int, bytes], str]:
    # (cell index, 3-byte cell code) -> sentence; at most V*V x (object codes) entries, and it
    # turns the per-object work of a step into one dict lookup.
    return {}


def _wall_distance(line: bytes) -> int:
    """Steps to the wall on a line of object codes ordered from the agent outwards, or 0."""
    for steps, kind in enumerate(line, 1):
        if kind not in _CLEAR:
            return steps if kind == _WALL else 0
    return 0


def describe(image: np.ndarray, articles: str = "english") -> list[str]:
    """GLAM's sentences for one egocentric MiniGrid observation (see the module docstring).

    Args:
        image: ``obs["image"]``, shape ``(V, V, 3)``, MiniGrid's ``(object, colour, state)``
            encoding indexed ``[x, y]``, agent at ``(V // 2, V - 1)`` facing up.
        articles: "english" ("an open door") or "glam" (GLAM's "a open door").
    """
    if articles not in _NOUNS:
        raise ValueError(f"articles must be one of {ARTICLES}, got {articles!r}")
    nouns = _NOUNS[articles]
    # A 7x7 view is too small for numpy calls (~1 us each) to pay off: one copy to bytes,
    # then byte slices and cached sentences keep a step at a few microseconds.
    view = image.shape[0]
    ax, ay = view // 2, view - 1
    cells = np.asarray(image, dtype=np.uint8).tobytes()  # C order: cell (x, y) at 3 * (x * view + y)
    kinds = cells[0::3]
    me = ax * view + ay
    sentences: list[str] = []

    if _IS_OBJECT[kinds[me]]:  # MiniGrid draws the carried object on the agent's cell
        t, c, s = cells[3 * me : 3 * me + 3]
        sentences.append(f"You carry {nouns[t, c, s]}")

    column = kinds[ax * view : (ax + 1) * view]  # cells (ax, y), y = 0 (far) .. ay
    row = kinds[ay::view]  # cells (x, ay), x = 0 (left) .. V - 1
    for steps, direction in (
        (_wall_distance(column[ay - 1 :: -1]), "forward"),
        (_wall_distance(row[ax - 1 :: -1] if ax else b""), "left"),
        (_wall_distance(row[ax + 1 :]), "right"),
    ):
        if steps:
            sentences.append(f"You see a wall {_steps(steps)} {direction}")

    cache = _sentence_cache(view, articles)
    for i, kind in enumerate(kinds):  # i = x * view + y: left to right, then far to near
        if _IS_OBJECT[kind] and i != me:
            code = cells[3 * i : 3 * i + 3]
            sentence = cache.get((i, code))
            if sentence is None:
                x, y = divmod(i, view)
                sentence = cache[i, code] = f"You see {nouns[tuple(code)]} {_where(view, x, y)}"
            sentences.append(sentence)
    return sentences


def describe_env(env: MiniGridEnv, articles: str = "english") -> list[str]:
    """Sentences for the current state of a MiniGrid env, from its own ``gen_obs()``."""
    return describe(env.unwrapped.gen_obs()["image"], articles)
