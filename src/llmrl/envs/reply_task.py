"""A text task for RLHF on a laptop: answer a BabyAI-style mission with a short first step.

The prompt states a mission ("pick up the red key") and lets the LM say what the robot will do
first; the reply is its first line.
A rule-based *gold* judge scores the reply; it stands in for the human whose preferences RLHF
learns, so the true reward of any policy can be measured (as in Gao et al.'s over-optimisation
study, where a gold model plays the human). The gold reward:

- the reply is its first line;
- +1 when the reply names the mission's colour, +1 when it names the mission's object;
- −0.5 per word beyond ``MAX_WORDS``;
- −1 when any word appears three times or more (a reply that repeats itself);
- −1 for an empty reply.

Missions are the colours × objects × verbs of BabyAI's GoTo/PickUp/Open levels; a seeded split
keeps some (colour, object) pairs out of training, for held-out prompts.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

COLOURS = ("red", "green", "blue", "purple", "yellow", "grey")
OBJECTS = ("ball", "box", "key", "door")
MAX_WORDS = 8


def mission(verb: str, colour: str, obj: str) -> str:
    return f"{verb} the {colour} {obj}"


def missions() -> list[tuple[str, str, str]]:
    """(verb, colour, object) for every BabyAI mission of this form: doors are opened or gone to."""
    out = []
    for colour in COLOURS:
        for obj in OBJECTS:
            for verb in (("go to", "open") if obj == "door" else ("go to", "pick up")):
                out.append((verb, colour, obj))
    return out


def prompt(verb: str, colour: str, obj: str) -> str:
    return f"Robot mission: {mission(verb, colour, obj)}.\nThe robot's first step: it will"


def split_prompts(seed: int, held_out: float = 0.25) -> tuple[list[str], list[str]]:
    """(training prompts, held-out prompts): held-out (colour, object) pairs never appear in training."""
    pairs = sorted({(c, o) for _, c, o in missions()})
    rng = np.random.default_rng(seed)
    test_pairs = {pairs[i] for i in rng.permutation(len(pairs))[: max(1, int(round(held_out * len(pairs))))]}
    train = [prompt(*m) for m in missions() if (m[1], m[2]) not in test_pairs]
    test = [prompt(*m) for m in missions() if (m[1], m[2]) in test_pairs]
    return train, test


_MISSION = re.compile(r"mission: (?:go to|pick up|open) the (\w+) (\w+)\.")


def gold_reward(prompts: Sequence[str], replies: Sequence[str]) -> np.ndarray:
    """The gold judge's score of each reply to its prompt (see the module docstring)."""
    out = np.zeros(len(prompts))
    for i, (p, reply) in enumerate(zip(prompts, replies)):
        found = _MISSION.search(p)
        if found is None:
            raise ValueError(f"not a reply-task prompt (no mission in it): {p[:80]!r}")
        colour, obj = found.groups()
        words = re.findall(r"[a-z]+", reply.split("\n", 1)[0].lower())
        if not words:
            out[i] = -1.0
            continue
        score = float(colour in words) + float(obj in words or obj + "s" in words)
        score -= 0.5 * max(0, len(words) - MAX_WORDS)
        if max(Counter(words).values()) >= 3:
            score -= 1.0
        out[i] = score
    return out
