"""CLEVR-Robot goals: what a sentence asks for, and the judge that says whether a state does it.

KALM (Pang et al. 2024) trains on one kind of goal — "put ball A {behind, left of, in front of,
right of} ball B" — phrased by 18 sentence patterns, and tests on four levels:

============  ===============================================  =====================================
level         goals                                            judge
============  ===============================================  =====================================
seen          the 80 relation configurations, training phrasing  ‖p_A − p_B‖ < 0.39 and the angle of
rephrase      the same configurations, held-out phrasings        p_A − p_B within ±45° of the direction
easy          "push the red ball to the left" (one step)       after one step, the ball moved ≥ 0.15
                                                               along the direction
hard          2–3 relations at once; line the balls up red →   every sub-goal at the same time
              cyan from left to right; gather around green
============  ===============================================  =====================================

Directions follow KALM's goal vector, not the original environment's camera frame: BEHIND = +y,
LEFT = −x, FRONT = −y, RIGHT = +x. The rephrasings are our own and appear in no training data.

A state is the environment's 10-d observation ``[x0, y0, …, x4, y4]``; every judge also sees the
episode's ``start`` state (the easy level measures displacement from it).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

COLOURS = ("red", "blue", "green", "purple", "cyan")
DIRECTIONS = ("behind", "left", "front", "right")
UNIT = np.array([[0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [1.0, 0.0]])
LEVELS = ("seen", "rephrase", "easy", "hard")
MAX_STEPS = 50

RELATION_DISTANCE = 0.39  # centres closer than this (the balls' radius is 0.13)
RELATION_HALF_ANGLE = 45.0  # degrees either side of the direction
SPOT_DISTANCE = 0.27  # where a relation is best met: this far from the reference ball, on the direction
EASY_DISPLACEMENT = 0.15  # state-based judge of "push the X ball <direction>"
LINE_HALF_ANGLE = 30.0  # consecutive balls of a line-up: within 30° of +x
GATHER_RADIUS = 0.325  # every other ball this close to the green one

# 20 ordered colour pairs × 4 directions: the 80 goal configurations of the training data.
CONFIGURATIONS = tuple(
    (ball, ref, d) for ball, ref in itertools.permutations(range(len(COLOURS)), 2) for d in range(len(DIRECTIONS))
)

# Training phrasing: 18 sentence patterns × 3 prepositional forms per direction (KALM's scheme).
TRAIN_PATTERNS = (
    "Push the {a} ball {rel} the {b} ball",
    "Move the {a} ball {rel} the {b} ball",
    "Keep the {a} ball {rel} the {b} ball",
    "Can you push the {a} ball {rel} the {b} ball",
    "Can you move the {a} ball {rel} the {b} ball",
    "Can you keep the {a} ball {rel} the {b} ball",
    "Can you help me push the {a} ball {rel} the {b} ball",
    "Can you help me move the {a} ball {rel} the {b} ball",
    "Can you help me keep the {a} ball {rel} the {b} ball",
    "Is the {a} ball {rel} the {b} ball",
    "Is there any {a} ball {rel} the {b} ball",
    "The {a} ball moves {rel} the {b} ball",
    "The {a} ball is pushed {rel} the {b} ball",
    "The {a} ball is moved {rel} the {b} ball",
    "The {a} ball is being pushed {rel} the {b} ball",
    "The {a} ball is being moved {rel} the {b} ball",
    "The {a} ball was pushed {rel} the {b} ball",
    "The {a} ball was moved {rel} the {b} ball",
)
TRAIN_PREPOSITIONS = (
    ("behind", "to the back of", "in back of"),
    ("to the left of", "left of", "on the left of"),
    ("in front of", "to the front of", "in the front of"),
    ("to the right of", "right of", "on the right of"),
)

# Held-out phrasing (the rephrasing level): other verbs, other nouns, other prepositions.
REPHRASE_PATTERNS = (
    "I'd like the {a} ball to end up {rel} the {b} one",
    "Could you get the {a} sphere {rel} the {b} sphere, please",
    "Make sure the {a} ball sits {rel} the {b} ball",
    "Place the {a} ball so that it is {rel} the {b} ball",
    "Arrange things so the {a} ball lies {rel} the {b} ball",
    "I need the {a} one {rel} the {b} one",
    "Shove the {a} ball over until it rests {rel} the {b} ball",
    "Get the {a} ball positioned {rel} the {b} ball",
    "Bring the {a} ball {rel} the {b} ball",
    "Your job: the {a} ball, {rel} the {b} ball",
)
REPHRASE_PREPOSITIONS = (
    ("at the rear of", "further back than", "just past"),
    ("on the left-hand side of", "to the west of", "leftward of"),
    ("ahead of", "before", "nearer to me than"),
    ("on the right-hand side of", "to the east of", "rightward of"),
)

EASY_PATTERNS = (
    "Push the {a} ball {dir}",
    "Move the {a} ball {dir}",
    "Nudge the {a} ball {dir}",
    "Give the {a} ball a push {dir}",
    "Shift the {a} ball {dir} a little",
)
EASY_DIRECTIONS = (
    ("backward", "to the back"),
    ("to the left", "leftward"),
    ("forward", "to the front"),
    ("to the right", "rightward"),
)

LINE_UP_SENTENCES = (
    "Line up the balls from left to right in the order red, blue, green, purple, cyan",
    "Put the balls in a row, left to right: red, blue, green, purple, cyan",
    "Arrange red, blue, green, purple and cyan from left to right",
)
GATHER_SENTENCES = (
    "Gather all the balls around the green ball",
    "Bring every other ball close to the green ball",
    "Cluster the balls around the green one",
)


def position(state: np.ndarray, ball: int) -> np.ndarray:
    return np.asarray(state, dtype=np.float64)[2 * ball : 2 * ball + 2]


def _angle_between(v: np.ndarray, direction: np.ndarray) -> float:
    """Unsigned angle in degrees between vector ``v`` and unit vector ``direction``."""
    cos = float(v @ direction) / max(float(np.linalg.norm(v)), 1e-12)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def relation_holds(state: np.ndarray, ball: int, ref: int, direction: int) -> bool:
    """KALM's judge: close enough, and on the right side within ±45°."""
    v = position(state, ball) - position(state, ref)
    return bool(np.linalg.norm(v) < RELATION_DISTANCE and _angle_between(v, UNIT[direction]) <= RELATION_HALF_ANGLE)


@dataclass(frozen=True, kw_only=True)
class Goal:
    """A goal sentence and its judge. Subclasses define ``subgoals``; success is all of them."""

    text: str
    level: str
    max_steps: int = MAX_STEPS
    kind: ClassVar[str] = "goal"

    def subgoals(self, state: np.ndarray, start: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def success(self, state: np.ndarray, start: np.ndarray) -> bool:
        return bool(self.subgoals(state, start).all())

    def reward(self, prev: np.ndarray, state: np.ndarray, start: np.ndarray) -> float:
        """+10 for each newly completed sub-goal, 100 on success (KALM's hard-level reward)."""
        done_now, done_before = self.subgoals(state, start), self.subgoals(prev, start)
        newly = int(np.sum(done_now & ~done_before))
        return 10.0 * newly + (100.0 if done_now.all() else 0.0)

    def spec(self) -> dict[str, Any]:
        """JSON-able description, inverse of ``goal_from_spec``."""
        out = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = [r.spec() for r in value] if f.name == "relations" else value
        return out


@dataclass(frozen=True, kw_only=True)
class Relation(Goal):
    """Ball ``ball`` ends {behind, left of, in front of, right of} ball ``ref``."""

    ball: int
    ref: int
    direction: int
    kind: ClassVar[str] = "relation"

    def subgoals(self, state: np.ndarray, start: np.ndarray) -> np.ndarray:
        return np.array([relation_holds(state, self.ball, self.ref, self.direction)])

    def spot(self, state: np.ndarray) -> np.ndarray:
        return position(state, self.ref) + SPOT_DISTANCE * UNIT[self.direction]

    def distance(self, state: np.ndarray) -> float:
        return float(np.linalg.norm(position(state, self.ball) - self.spot(state)))

    def reward(self, prev: np.ndarray, state: np.ndarray, start: np.ndarray) -> float:
        """10·(d_prev − d_now), 100 on success. KALM's d is a ball distance; ours is the distance to
        the spot that satisfies the relation best, so that progress in the wrong direction pays nothing."""
        shaped = 10.0 * (self.distance(prev) - self.distance(state))
        return shaped + (100.0 if self.success(state, start) else 0.0)


@dataclass(frozen=True, kw_only=True)
class Move(Goal):
    """Unseen-easy: push ``ball`` one step towards ``direction``; judged after that one step."""

    ball: int
    direction: int
    max_steps: int = 1
    kind: ClassVar[str] = "move"

    def subgoals(self, state: np.ndarray, start: np.ndarray) -> np.ndarray:
        moved = (position(state, self.ball) - position(start, self.ball)) @ UNIT[self.direction]
        return np.array([moved >= EASY_DISPLACEMENT])

    def reward(self, prev: np.ndarray, state: np.ndarray, start: np.ndarray) -> float:
        return 1.0 if self.success(state, start) else 0.0


@dataclass(frozen=True, kw_only=True)
class Conjunction(Goal):
    """Unseen-hard: 2 or 3 relations that must hold at the same time."""

    relations: tuple[Relation, ...]
    kind: ClassVar[str] = "conjunction"

    def subgoals(self, state: np.ndarray, start: np.ndarray) -> np.ndarray:
        return np.array([r.subgoals(state, start)[0] for r in self.relations])


@dataclass(frozen=True, kw_only=True)
class LineUp(Goal):
    """Unseen-hard: red, blue, green, purple, cyan from left to right; each step within 30° of +x."""

    kind: ClassVar[str] = "line_up"

    def subgoals(self, state: np.ndarray, start: np.ndarray) -> np.ndarray:
        p = np.asarray(state, dtype=np.float64).reshape(len(COLOURS), 2)
        return np.array([_angle_between(p[i + 1] - p[i], UNIT[3]) <= LINE_HALF_ANGLE for i in range(len(COLOURS) - 1)])


@dataclass(frozen=True, kw_only=True)
class Gather(Goal):
    """Unseen-hard: every other ball within 0.325 of the green one."""

    centre: int = 2
    kind: ClassVar[str] = "gather"

    def subgoals(self, state: np.ndarray, start: np.ndarray) -> np.ndarray:
        p = np.asarray(state, dtype=np.float64).reshape(len(COLOURS), 2)
        others = [i for i in range(len(COLOURS)) if i != self.centre]
        return np.linalg.norm(p[others] - p[self.centre], axis=1) < GATHER_RADIUS


GOAL_KINDS: dict[str, type[Goal]] = {g.kind: g for g in (Relation, Move, Conjunction, LineUp, Gather)}


def goal_from_spec(spec: dict[str, Any]) -> Goal:
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in GOAL_KINDS:
        raise ValueError(f"unknown goal kind {kind!r} in {spec}: expected one of {sorted(GOAL_KINDS)}")
    if kind == "conjunction":
        spec["relations"] = tuple(goal_from_spec(r) for r in spec["relations"])
    return GOAL_KINDS[kind](**spec)


# -- phrasing ------------------------------------------------------------------------------------


def training_sentences(ball: int, ref: int, direction: int) -> list[str]:
    """All 54 training phrasings of one configuration (18 patterns × 3 prepositions)."""
    return [
        p.format(a=COLOURS[ball], b=COLOURS[ref], rel=rel)
        for p in TRAIN_PATTERNS
        for rel in TRAIN_PREPOSITIONS[direction]
    ]


def rephrasings(ball: int, ref: int, direction: int) -> list[str]:
    """All held-out phrasings of one configuration (10 patterns × 3 prepositions)."""
    return [
        p.format(a=COLOURS[ball], b=COLOURS[ref], rel=rel)
        for p in REPHRASE_PATTERNS
        for rel in REPHRASE_PREPOSITIONS[direction]
    ]


def _pick(options: list[str] | tuple[str, ...], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def relation_goal(ball: int, ref: int, direction: int, level: str, rng: np.random.Generator) -> Relation:
    phrasings = training_sentences if level in ("seen", "hard") else rephrasings
    return Relation(text=_pick(phrasings(ball, ref, direction), rng), level=level, ball=ball, ref=ref,
                    direction=direction)


def _conjunction(n: int, rng: np.random.Generator) -> Conjunction:
    # Distinct moving balls whose references are not themselves moved: always satisfiable.
    movers = rng.choice(len(COLOURS), size=n, replace=False)
    fixed = [i for i in range(len(COLOURS)) if i not in movers]
    relations = tuple(
        relation_goal(int(b), int(rng.choice(fixed)), int(rng.integers(len(DIRECTIONS))), "hard", rng)
        for b in movers
    )
    text = " and ".join([relations[0].text] + [r.text[0].lower() + r.text[1:] for r in relations[1:]])
    return Conjunction(text=text, level="hard", relations=relations)


def sample_goal(level: str, rng: np.random.Generator) -> Goal:
    """One goal of ``level`` with a random phrasing."""
    if level in ("seen", "rephrase"):
        ball, ref, direction = CONFIGURATIONS[int(rng.integers(len(CONFIGURATIONS)))]
        return relation_goal(ball, ref, direction, level, rng)
    if level == "easy":
        ball, direction = int(rng.integers(len(COLOURS))), int(rng.integers(len(DIRECTIONS)))
        text = _pick(EASY_PATTERNS, rng).format(a=COLOURS[ball], dir=_pick(EASY_DIRECTIONS[direction], rng))
        return Move(text=text, level="easy", ball=ball, direction=direction)
    if level == "hard":
        # KALM's hard level: 2- and 3-goal conjunctions, line-up and gather.
        kind = rng.choice(["tau2", "tau3", "line_up", "gather"], p=[0.35, 0.35, 0.15, 0.15])
        if kind == "tau2":
            return _conjunction(2, rng)
        if kind == "tau3":
            return _conjunction(3, rng)
        if kind == "line_up":
            return LineUp(text=_pick(LINE_UP_SENTENCES, rng), level="hard")
        return Gather(text=_pick(GATHER_SENTENCES, rng), level="hard")
    raise ValueError(f"unknown goal level {level!r}: expected one of {LEVELS}")
