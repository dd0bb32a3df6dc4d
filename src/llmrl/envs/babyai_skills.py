"""Skills for BabyAI: short instructions, each with a low-level policy that runs it in the level.

A skill is a sentence ("pick up the red key", "open the yellow door", "put the red key next to the
blue ball", "go to the grey box") and a controller: breadth-first search over (cell, heading)
through free cells and open doors to a pose that faces the target, then the primitive action
(pick up, toggle, drop). Like SayCan's skills, a controller may fail — a locked door, a target
behind a closed door, full hands — and ``run`` reports whether the skill's effect happened. The
controllers read the whole grid (a motion planner's map); which skill to run, in what order, is
the planner's problem (:mod:`llmrl.roles.planner`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from minigrid.core.constants import COLOR_NAMES, DIR_TO_VEC
from minigrid.minigrid_env import MiniGridEnv

__all__ = ["DONE", "VERBS", "Skill", "features", "run_skill", "skills_of"]

LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE = range(6)
VERBS = ("go to", "pick up", "open", "put next to", "done")
OBJECT_TYPES = ("key", "ball", "box", "door")
DONE = "done"


@dataclass(frozen=True)
class Skill:
    """A skill's sentence and its parts (``target`` and ``other`` are (type, colour) or None)."""

    text: str
    verb: str
    target: tuple[str, str] | None = None
    other: tuple[str, str] | None = None


def _name(obj: tuple[str, str]) -> str:
    return f"{obj[1]} {obj[0]}"


def skills_of(env: MiniGridEnv) -> list[Skill]:
    """Every skill that names the level's objects (each distinct (type, colour) once), then done."""
    objs = sorted({(o.type, o.color) for o in env.grid.grid if o is not None and o.type in OBJECT_TYPES})
    out = []
    for o in objs:
        out.append(Skill(f"go to the {_name(o)}", "go to", o))
        if o[0] == "door":
            out.append(Skill(f"open the {_name(o)}", "open", o))
        else:
            out.append(Skill(f"pick up the {_name(o)}", "pick up", o))
    for o in objs:
        if o[0] != "door":
            out += [Skill(f"put the {_name(o)} next to the {_name(y)}", "put next to", o, y)
                    for y in objs if y != o and y[0] != "door"]  # fmt: skip
    out.append(Skill(DONE, DONE))
    return out


def _cells(env: MiniGridEnv, obj: tuple[str, str]) -> list[tuple[int, int]]:
    g = env.grid
    return [(i % g.width, i // g.width) for i, o in enumerate(g.grid)
            if o is not None and (o.type, o.color) == obj]  # fmt: skip


def _free(env: MiniGridEnv, x: int, y: int) -> bool:
    o = env.grid.get(x, y)
    return o is None or o.can_overlap()


def _plan_to_face(env: MiniGridEnv, goal: set[tuple[int, int]]) -> list[int] | None:
    """Shortest primitive-action sequence after which the agent faces a cell of ``goal``."""
    start = (*map(int, env.agent_pos), int(env.agent_dir))
    queue, seen = deque([start]), {start: None}
    while queue:
        x, y, d = state = queue.popleft()
        dx, dy = DIR_TO_VEC[d]
        if (x + dx, y + dy) in goal:
            actions = []
            while seen[state] is not None:
                state, a = seen[state]
                actions.append(a)
            return actions[::-1]
        nexts = [((x, y, (d - 1) % 4), LEFT), ((x, y, (d + 1) % 4), RIGHT)]
        fx, fy = x + dx, y + dy
        if 0 <= fx < env.grid.width and 0 <= fy < env.grid.height and _free(env, fx, fy):
            nexts.append(((fx, fy, d), FORWARD))
        for nxt, a in nexts:
            if nxt not in seen:
                seen[nxt] = (state, a)
                queue.append(nxt)
    return None


def _empty_next_to(env: MiniGridEnv, cells: list[tuple[int, int]]) -> set[tuple[int, int]]:
    out = set()
    for x, y in cells:
        for dx, dy in DIR_TO_VEC:
            cx, cy = x + int(dx), y + int(dy)
            if 0 <= cx < env.grid.width and 0 <= cy < env.grid.height and env.grid.get(cx, cy) is None:
                out.add((cx, cy))
    return out


def _step(env: Any, action: int, budget: list[int]) -> tuple[float, bool]:
    _, reward, terminated, truncated, _ = env.step(action)
    budget[0] -= 1
    return float(reward), bool(terminated or truncated)


def run_skill(env: Any, skill: Skill, max_steps: int = 64) -> dict[str, Any]:
    """Run ``skill`` in ``env`` (a Gymnasium-wrapped or bare MiniGrid level); returns whether its
    effect happened (``ok``), the env steps taken, reward and whether the episode ended."""
    level: MiniGridEnv = env.unwrapped
    budget, reward, ended = [max_steps], 0.0, False
    result = {"ok": False, "steps": 0, "reward": 0.0, "ended": False}
    if skill.verb == DONE or skill.target is None:
        return result
    if skill.verb == "put next to":
        carried = level.carrying
        if carried is None or (carried.type, carried.color) != skill.target:
            return result
        goal = _empty_next_to(level, _cells(level, skill.other))
    else:
        goal = set(_cells(level, skill.target))
        if skill.verb == "pick up" and level.carrying is not None:
            return result
    plan = _plan_to_face(level, goal)
    if plan is None or len(plan) + 1 > max_steps:
        return result
    for a in plan:
        r, ended = _step(env, a, budget)
        reward += r
        if ended:
            break
    front = tuple(int(v) for v in level.front_pos)
    if not ended:
        if skill.verb == "pick up":
            r, ended = _step(env, PICKUP, budget)
            ok = level.carrying is not None and (level.carrying.type, level.carrying.color) == skill.target
        elif skill.verb == "open":
            r, ended = _step(env, TOGGLE, budget)
            door = level.grid.get(*front)
            ok = door is not None and door.type == "door" and door.is_open
        elif skill.verb == "put next to":
            r, ended = _step(env, DROP, budget)
            ok = level.carrying is None
        else:
            r, ok = 0.0, front in goal
        reward += r
    else:
        ok = False
    return {"ok": bool(ok), "steps": max_steps - budget[0], "reward": reward, "ended": ended}


# --- what the affordance model sees ---------------------------------------------------------------

_STATES = ("none", "open", "closed", "locked")
_TYPES = ("none", *OBJECT_TYPES)
_COLOURS = ("none", *COLOR_NAMES)


def _one_hot(value: str, values: tuple[str, ...]) -> list[float]:
    return [float(value == v) for v in values]


def _visible(level: MiniGridEnv, obj: tuple[str, str] | None) -> float:
    if obj is None:
        return 0.0
    return float(any(level.in_view(x, y) for x, y in _cells(level, obj)))


def _door_state(level: MiniGridEnv, obj: tuple[str, str] | None) -> str:
    if obj is None or obj[0] != "door":
        return "none"
    door = level.grid.get(*_cells(level, obj)[0])
    return "locked" if door.is_locked else "open" if door.is_open else "closed"


def features(env: Any, skill: Skill) -> np.ndarray:
    """What the learned affordance sees: the skill (verb, target, other) and what the agent
    observes about them — target and other visible in its 7x7 view, a door's state — and what
    it carries. No map, no path: whether a skill can succeed is learned from trying."""
    level: MiniGridEnv = env.unwrapped
    carried = (level.carrying.type, level.carrying.color) if level.carrying is not None else ("none", "none")
    target, other = skill.target or ("none", "none"), skill.other or ("none", "none")
    f = _one_hot(skill.verb, VERBS)
    for obj in (target, other, carried):
        f += _one_hot(obj[0], _TYPES) + _one_hot(obj[1], _COLOURS)
    f += _one_hot(_door_state(level, skill.target), _STATES)
    f += [_visible(level, skill.target), _visible(level, skill.other), float(carried[1] == target[1] != "none"),
          float(carried == target)]  # fmt: skip
    return np.asarray(f, dtype=np.float32)
