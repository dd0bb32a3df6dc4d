"""A parameterised BabyAI task space for curriculum learning: tasks are small dicts, each one a level.

A task fixes four factors of variation of a BabyAI level (Chevalier-Boisvert et al. 2019)::

    {"family": "pickup", "room_size": 6, "num_dists": 2, "door": "locked"}

- ``family``: the mission: ``goto`` ("go to the red ball"), ``pickup`` ("pick up the red
  ball"), ``open`` ("open the yellow door") or ``putnext`` ("put the red ball next to the blue key");
- ``room_size``: the side of each room in cells, walls included (BabyAI's S5..S8);
- ``num_dists``: distractor objects besides those the mission names;
- ``door``: ``"none"`` (one room), ``"closed"`` or ``"locked"``: two rooms side by side joined by
  that door, the agent in the west room and the mission's objects in the east one; a locked
  door's key lies in the agent's room, the distractors are split between the rooms (the
  agent's gets half, rounded down). ``open`` needs a door.

All objects differ in (type, colour), so every mission names exactly one object and a door
really has to be crossed. Success and reward are BabyAI's verifier and ``1 − 0.9·t/max_steps``.
``max_steps`` follows BabyAI's rule, navigations × room_size² × rooms, plus one navigation for
fetching the key of a locked door.

``TaskGrid(...).tasks()`` lists the feasible tasks of a grid of factor values (what a room
holds may fill at most half of its interior); ``make_task_env(task)`` builds a ``TaskLevel`` (a MiniGrid
``RoomGridLevel``, so the BabyAI bot and symbolic agents take it unchanged) or, with
``text=True``, GLAM's text view of it (:class:`~llmrl.envs.babyai_text.BabyAITextEnv`). A
curriculum switches task between episodes with ``env.reset(options={"task": task})`` or
``set_task``. ``held_out_split`` keeps a share of each family's tasks out of training.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from minigrid.core.constants import COLOR_NAMES
from minigrid.core.roomgrid import RoomGrid
from minigrid.core.world_object import WorldObj
from minigrid.envs.babyai.core.roomgrid_level import RejectSampling, RoomGridLevel
from minigrid.envs.babyai.core.verifier import GoToInstr, ObjDesc, OpenInstr, PickupInstr, PutNextInstr

__all__ = ["DOORS", "FAMILIES", "TaskGrid", "TaskLevel", "check_task", "feasible", "held_out_split",
           "make_task_env", "task_name"]

FAMILIES: tuple[str, ...] = ("goto", "pickup", "open", "putnext")
DOORS: tuple[str, ...] = ("none", "closed", "locked")
_KEYS = ("family", "room_size", "num_dists", "door")
_NAMED = {"goto": 1, "pickup": 1, "open": 0, "putnext": 2}  # objects the mission names


def check_task(task: dict[str, Any]) -> dict[str, Any]:
    """The task with plain Python values, or a ValueError saying what is wrong with it."""
    if not isinstance(task, dict) or set(task) != set(_KEYS):
        raise ValueError(f"a task is a dict with keys {_KEYS}, got {task!r}")
    family, room_size, num_dists, door = (task[k] for k in _KEYS)
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if door not in DOORS:
        raise ValueError(f"door must be one of {DOORS}, got {door!r}")
    if not isinstance(room_size, (int, np.integer)) or room_size < 4:
        raise ValueError(f"room_size must be an int >= 4 (walls included), got {room_size!r}")
    if not isinstance(num_dists, (int, np.integer)) or num_dists < 0:
        raise ValueError(f"num_dists must be an int >= 0, got {num_dists!r}")
    if family == "open" and door == "none":
        raise ValueError("an 'open' task needs a door: door='closed' or 'locked'")
    task = {"family": str(family), "room_size": int(room_size), "num_dists": int(num_dists), "door": str(door)}
    if not feasible(task):
        raise ValueError(f"task {task_name(task)} holds too many objects for its rooms: "
                         "fewer num_dists or a bigger room_size")
    return task


def feasible(task: dict[str, Any]) -> bool:
    """Whether an ``open`` task has a door and what each room holds (agent, key, named objects,
    its share of distractors) takes at most half of its interior, so levels generate quickly and
    objects leave paths free."""
    if task["family"] == "open" and task["door"] == "none":
        return False
    return max(_room_loads(task)) <= (task["room_size"] - 2) ** 2 // 2


def _room_loads(task: dict[str, Any]) -> tuple[int, ...]:
    """Things in each room: with a door, the agent's room gets the key and half the distractors
    (rounded down), the other room the named objects and the rest."""
    named, dists = _NAMED[task["family"]], task["num_dists"]
    if task["door"] == "none":
        return (1 + named + dists,)
    return (1 + (task["door"] == "locked") + dists // 2, named + dists - dists // 2)


def task_name(task: dict[str, Any]) -> str:
    """A short id for logs: ``pickup-S6-N2-locked``."""
    return f"{task['family']}-S{task['room_size']}-N{task['num_dists']}-{task['door']}"


@dataclass
class TaskGrid:
    """The factor values a task space combines; ``tasks()`` keeps the feasible combinations."""

    families: tuple[str, ...] = FAMILIES
    room_sizes: tuple[int, ...] = (5, 6, 8)
    num_dists: tuple[int, ...] = (0, 2, 4, 8)
    doors: tuple[str, ...] = DOORS

    def __post_init__(self) -> None:
        for name, allowed in (("families", FAMILIES), ("doors", DOORS)):
            values = getattr(self, name)
            if not values or set(values) - set(allowed):
                raise ValueError(f"{name} must be a non-empty subset of {allowed}, got {values}")
        if not self.room_sizes or min(self.room_sizes) < 4 or not self.num_dists or min(self.num_dists) < 0:
            raise ValueError(f"room_sizes must be ints >= 4 and num_dists ints >= 0, "
                             f"got {self.room_sizes}, {self.num_dists}")

    def tasks(self) -> list[dict[str, Any]]:
        grid = itertools.product(self.families, self.room_sizes, self.num_dists, self.doors)
        tasks = [dict(zip(_KEYS, values, strict=True)) for values in grid]
        return [t for t in tasks if feasible(t)]


def held_out_split(tasks: Sequence[dict[str, Any]], fraction: float = 0.2,
                   seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, test): ``round(fraction · n)`` of each family's n tasks go to test, drawn with
    ``seed``, at least one staying in train; order within each list is the input's."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must lie in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    test_ids: set[int] = set()
    for family in FAMILIES:
        ids = [i for i, t in enumerate(tasks) if t["family"] == family]
        n_test = min(round(fraction * len(ids)), len(ids) - 1)
        if n_test > 0:
            test_ids.update(int(i) for i in rng.choice(ids, size=n_test, replace=False))
    train = [dict(t) for i, t in enumerate(tasks) if i not in test_ids]
    test = [dict(t) for i, t in enumerate(tasks) if i in test_ids]
    return train, test


class TaskLevel(RoomGridLevel):
    """A BabyAI level built from one task dict (see the module docstring)."""

    def __init__(self, task: dict[str, Any], **kwargs: Any) -> None:
        self.task_params = check_task(task)
        super().__init__(room_size=task["room_size"], num_rows=1, num_cols=self._cols(self.task_params), **kwargs)
        self.task = self.task_params["family"]  # BabyAITextEnv reports it as info["task"]
        self.next_task: dict[str, Any] | None = None

    @staticmethod
    def _cols(task: dict[str, Any]) -> int:
        return 1 if task["door"] == "none" else 2

    def set_task(self, task: dict[str, Any]) -> None:
        """Use ``task`` from the next reset on; the episode under way keeps its own."""
        self.next_task = check_task(task)

    def _apply(self, task: dict[str, Any]) -> None:
        self.task_params = task
        self.task = task["family"]
        self.room_size = task["room_size"]
        self.num_cols = self._cols(task)
        self.width = (self.room_size - 1) * self.num_cols + 1
        self.height = self.room_size

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        if options and "task" in options:
            self.set_task(options["task"])
        if self.next_task is not None:
            self._apply(self.next_task)
            self.next_task = None
        obs = super().reset(seed=seed, options=options)
        if self.task_params["door"] == "locked" and not self.fixed_max_steps:  # one more navigation: the key
            self.max_steps += self.room_size**2 * self.num_rows * self.num_cols
        return obs

    # -- episode generation ----------------------------------------------------------------
    def _gen_grid(self, width: int, height: int) -> None:
        while True:
            RoomGrid._gen_grid(self, width, height)
            try:
                self.gen_mission()
                self.validate_instrs(self.instrs)
            except (RejectSampling, RecursionError):  # silent retry (MiniGrid's own loop prints each)
                continue
            break
        self.surface = self.instrs.surface(self)
        self.mission = self.surface

    def gen_mission(self) -> None:
        task = self.task_params
        self.place_agent(0, 0)
        goal_room = 0
        door = None
        if task["door"] != "none":
            color = self._rand_elem(COLOR_NAMES)
            # Door index 0 is the east wall of the west room, the wall the two rooms share.
            door, _ = self.add_door(0, 0, door_idx=0, color=color, locked=task["door"] == "locked")
            if task["door"] == "locked":
                self.add_object(0, 0, "key", color)
            goal_room = 1
        named = [self._add_unique(goal_room) for _ in range(_NAMED[task["family"]])]
        near = task["num_dists"] // 2 if goal_room else 0
        self.add_distractors(0, 0, num_distractors=near, all_unique=True)
        self.add_distractors(goal_room, 0, num_distractors=task["num_dists"] - near, all_unique=True)
        if not self.check_objs_reachable(raise_exc=False):
            raise RejectSampling("unreachable object")
        family = task["family"]
        if family == "open":
            assert door is not None
            self.instrs = OpenInstr(ObjDesc(door.type, door.color))
        elif family == "goto":
            self.instrs = GoToInstr(_desc(named[0]))
        elif family == "pickup":
            self.instrs = PickupInstr(_desc(named[0]))
        else:
            self.instrs = PutNextInstr(_desc(named[0]), _desc(named[1]))

    def _add_unique(self, room: int) -> WorldObj:
        """An object of a (type, colour) not yet in the level, placed in ``room``."""
        taken = {(o.type, o.color) for row in self.room_grid for r in row for o in r.objs}
        while True:
            kind, color = self._rand_elem(["key", "ball", "box"]), self._rand_elem(COLOR_NAMES)
            if (kind, color) not in taken:
                obj, _ = self.add_object(room, 0, kind, color)
                return obj


def _desc(obj: WorldObj) -> ObjDesc:
    return ObjDesc(obj.type, obj.color)


def make_task_env(task: dict[str, Any], text: bool = False, render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """The level of ``task``: a ``TaskLevel`` (MiniGrid observations), or with ``text=True`` a
    ``BabyAITextEnv`` over it (GLAM's sentences; ``env.level`` is the ``TaskLevel``)."""
    level = TaskLevel(task, render_mode=render_mode)
    if not text:
        if kwargs:
            raise TypeError(f"keyword arguments {sorted(kwargs)} are for the text view: pass text=True")
        return level
    from llmrl.envs.babyai_text import BabyAITextEnv

    return BabyAITextEnv(level=level, **kwargs)

