"""GLAM's BabyAI levels (Carta et al. 2023): MixedTrainLocal, MixedTestLocal and their single tasks.

Written on MiniGrid's ``RoomGridLevel`` and instruction classes, so the BabyAI bot solves them
and MiniGrid's verifier judges success and pays ``1 - 0.9 * step_count / max_steps``.

Each episode draws one task, uniformly among ``tasks``:

- ``goto``: "go to the red ball" (one 8x8 room, 9 objects);
- ``pickup``: "pick up the red ball" (one room, 9 objects);
- ``putnext``: "put the red ball next to the blue key" (one room, 10 objects);
- ``pickup_seq_goto``: "pick up A, then go to B" or "go to B after you pick up A", half each
  (one room, 10 objects);
- ``open``: "open the (yellow) door": two rooms joined by a locked door, its key and 8
  distractors in the agent's room, the other room empty.

``max_steps`` comes from MiniGrid's rule, navigations x room_size^2 x rooms, which gives GLAM's
64 for goto and pickup and 128 for putnext, the sequence and open.

``split`` controls GLAM's held-out colour-object pairs (``HELD_OUT_PAIRS``): ``"train"`` never
names one in the mission (distractors may still show them, as in GLAM), ``"test"`` names only
those (open: only red or grey doors, colour always said), ``"all"`` has no restriction.
Unlike GLAM, two objects in one mission always differ in colour or type.
"""

from __future__ import annotations

from typing import Any, Literal

from minigrid.core.constants import COLOR_NAMES
from minigrid.core.roomgrid import RoomGrid
from minigrid.core.world_object import WorldObj
from minigrid.envs.babyai.core.roomgrid_level import RejectSampling, RoomGridLevel
from minigrid.envs.babyai.core.verifier import (
    AfterInstr,
    BeforeInstr,
    GoToInstr,
    ObjDesc,
    OpenInstr,
    PickupInstr,
    PutNextInstr,
)

__all__ = ["HELD_OUT_PAIRS", "MIXED_TASKS", "MixedLocal", "Split"]

Split = Literal["train", "test", "all"]
MIXED_TASKS: tuple[str, ...] = ("goto", "pickup", "putnext", "open", "pickup_seq_goto")
# (colour, type) pairs GLAM keeps out of MixedTrainLocal missions to test generalisation.
HELD_OUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {("yellow", "box"), ("red", "key"), ("red", "door"), ("green", "ball"), ("grey", "door")}
)
_TRAIN_DOOR_COLORS = ("yellow", "green", "blue", "purple")
_TEST_DOOR_COLORS = ("red", "grey")


class MixedLocal(RoomGridLevel):
    """One GLAM task per episode, drawn among ``tasks`` (see the module docstring)."""

    def __init__(
        self,
        tasks: tuple[str, ...] = MIXED_TASKS,
        split: Split = "all",
        room_size: int = 8,
        num_dists: int = 8,
        **kwargs: Any,
    ) -> None:
        unknown = set(tasks) - set(MIXED_TASKS)
        if not tasks or unknown:
            raise ValueError(f"tasks must be a non-empty subset of {MIXED_TASKS}; got unknown {sorted(unknown)}")
        if split not in ("train", "test", "all"):
            raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
        self.tasks = tuple(tasks)
        self.split: Split = split
        self.num_dists = num_dists
        self.task = self.tasks[0]
        # Two columns of rooms at most ("open"); the grid shrinks to one room per episode as needed.
        super().__init__(room_size=room_size, num_rows=1, num_cols=2 if "open" in tasks else 1, **kwargs)

    # -- episode generation ----------------------------------------------------------------
    def _gen_grid(self, width: int, height: int) -> None:
        # Draw the task once, outside the rejection loop, so rejection rates that differ between
        # tasks do not skew the task frequencies.
        self.task = self._rand_elem(self.tasks)
        self.num_cols = 2 if self.task == "open" else 1
        self.width = (self.room_size - 1) * self.num_cols + 1
        while True:
            RoomGrid._gen_grid(self, self.width, self.height)
            try:
                self.gen_mission()
                self.validate_instrs(self.instrs)
            except RejectSampling:  # silent retry: MiniGrid's own loop prints every rejection
                continue
            break
        self.surface = self.instrs.surface(self)
        self.mission = self.surface

    def gen_mission(self) -> None:
        if self.task == "open":
            self._gen_open()
            return
        self.place_agent()
        extra = 2 if self.task in ("putnext", "pickup_seq_goto") else 1
        objs = self.add_distractors(num_distractors=self.num_dists + extra, all_unique=False)
        if not self.check_objs_reachable(raise_exc=False):
            raise RejectSampling("unreachable object")
        a = self._pick(objs)
        if self.task == "goto":
            self.instrs = GoToInstr(_desc(a))
        elif self.task == "pickup":
            self.instrs = PickupInstr(_desc(a))
        else:
            b = self._pick(objs, unlike=a)
            if self.task == "putnext":
                self.instrs = PutNextInstr(_desc(a), _desc(b))
            elif self._rand_bool():
                self.instrs = BeforeInstr(PickupInstr(_desc(a)), GoToInstr(_desc(b)))
            else:
                self.instrs = AfterInstr(GoToInstr(_desc(b)), PickupInstr(_desc(a)))

    def _gen_open(self) -> None:
        locked_col = self._rand_int(0, 2)
        home = 1 - locked_col
        colors = {"train": _TRAIN_DOOR_COLORS, "test": _TEST_DOOR_COLORS, "all": tuple(COLOR_NAMES)}[self.split]
        color = self._rand_elem(colors)
        # Door index 0 is the east wall, 2 the west: the wall the two rooms share.
        door, _ = self.add_door(locked_col, 0, door_idx=0 if locked_col == 0 else 2, color=color, locked=True)
        self.place_agent(home, 0)
        self.add_object(home, 0, "key", color)
        self.add_distractors(home, 0, num_distractors=self.num_dists, all_unique=False)
        if not self.check_objs_reachable(raise_exc=False):
            raise RejectSampling("unreachable object")
        # GLAM sometimes leaves the colour out at train time ("open the door"); never at test.
        said = color if self.split == "test" or self._rand_bool() else None
        self.instrs = OpenInstr(ObjDesc(door.type, said))

    def _pick(self, objs: list[WorldObj], unlike: WorldObj | None = None) -> WorldObj:
        """A random object this split may name, different in colour or type from ``unlike``."""
        allowed = [
            o
            for o in objs
            if self._allowed(o.color, o.type)
            and (unlike is None or (o.color, o.type) != (unlike.color, unlike.type))
        ]
        if not allowed:
            raise RejectSampling("no nameable object")
        return self._rand_elem(allowed)

    def _allowed(self, color: str, kind: str) -> bool:
        held_out = (color, kind) in HELD_OUT_PAIRS
        return self.split == "all" or held_out == (self.split == "test")


def _desc(obj: WorldObj) -> ObjDesc:
    return ObjDesc(obj.type, obj.color)
