"""Crafter-Text: Crafter (Hafner 2022) with ELLM's captions (Du et al. 2023).

The game is the ``crafter`` package, unchanged (ELLM also changed the game: melee damage 5, a
table for 1 wood; we keep Crafter's rules, so scores compare with Crafter's). This module adds
what ELLM needs from it, following ELLM's published code (``caption="ellm"``, the default):

* a **state caption** of the 9x7 local view, as ELLM's LM reads it::

      You see cow, grass, path, and tree. You are targeting tree. You have in your inventory
      wood, wood_pickaxe. You feel sleepy.

  (what is in view, sorted, without sand, arrows or the player, the table named "crafting
  table" and the sapling "plant", listed "a", "a, and b", "a, b, and c"; the cell the player
  faces unless it is path, sand or lava; the items held; and, of the needs, only "sleepy",
  when energy is below 9). ``caption="llmrl"`` is this library's earlier caption (all four needs,
  sand and arrows listed, "table", "sapling", "a and b");
* a **transition caption**, the string matched against goals. With ELLM's 139 verb x noun
  actions it is the action's own name when the action *succeeds* by ELLM's loose rule: the
  player faces the named thing, or holds the named item, or the action did something
  (``success="loose"``). Otherwise (Crafter's 17 actions, or ``success="strict"``) it is the
  verb-noun name of what the action actually did ("chop tree", "attack cow", "place crafting
  table"), or "" when it did nothing;
* two action sets: Crafter's 17 primitive actions, and ELLM's verb x noun set (6 verb-only
  actions + 7 verbs x 19 nouns = 139, in ELLM's order), where "mine stone" hits only if the
  player faces stone and is otherwise a no-op;
* the goals ELLM's **oracle** would propose now (``info["oracle_goals"]``: every action whose
  prerequisites are in view and in the inventory, "sleep" only when sleepy, no "place crafting
  table" with one in view), and ELLM's **equivalent goals** (``EQUIVALENT_GOALS``);
* the achievements unlocked this episode and those one action could unlock now, as boolean masks
  in ``ACHIEVEMENTS`` order.

Observations are a flat uint8 vector (``observation="symbolic"``): the 9x7 local semantic map
(material and creature ids, ``N_CLASSES`` of them), then the 16 inventory counts, the facing
direction (one-hot) and a sleeping flag; or the 64x64 RGB image (``"pixels"``); or ELLM's view,
the image in grayscale resized to 84x84 (``"gray84"``, shape (84, 84, 1); ``make_vec(...,
frame_stack=4)`` stacks ELLM's four frames on the channel axis); or symbolic and pixels together
(``"both"``, a Dict). Skipping the image makes a step ~5x cheaper (docs/benchmarks.md).

World generation takes about a second per reset, so training runs these environments in
subprocesses (``make_vec``).
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import crafter
import gymnasium as gym
import numpy as np
from crafter import constants as C
from crafter import engine, worldgen
from crafter import objects as O
from gymnasium import spaces

ACHIEVEMENTS: tuple[str, ...] = tuple(C.achievements)
ITEMS: tuple[str, ...] = tuple(C.items)  # health, food, drink, energy, sapling, wood, ...
STATUS_WORDS = {"health": "hurt", "food": "hungry", "drink": "thirsty", "energy": "sleepy"}
STATUS_MAX = 9

# ELLM's verb x noun action set, in its order: the verb-only actions, then verb-major pairs.
VERB_ONLY = ("do nothing", "move left", "move right", "move up", "move down", "sleep")
VERBS = ("mine", "eat", "attack", "chop", "drink", "place", "make")
NOUNS = (
    "zombie", "skeleton", "cow", "tree", "stone", "coal", "iron", "diamond", "water", "grass",
    "crafting table", "furnace", "plant", "wood pickaxe", "stone pickaxe", "iron pickaxe", "wood sword",
    "stone sword", "iron sword",
)
VERB_NOUN_ACTIONS: tuple[str, ...] = VERB_ONLY + tuple(f"{v} {n}" for v in VERBS for n in NOUNS)
STANDARD_ACTIONS: tuple[str, ...] = tuple(C.actions)  # noop, move_left, ..., make_iron_sword
ACTION_SETS = {"standard": STANDARD_ACTIONS, "verb_noun": VERB_NOUN_ACTIONS}
CAPTIONS = ("ellm", "llmrl")
OBSERVATIONS = ("symbolic", "pixels", "gray84", "both")
GRAY_SIZE = 84  # ELLM resizes the 64x64 frame to 84x84 grayscale
SUCCESS_RULES = ("loose", "strict")

#: The 29 verb-noun actions that can do something in the game (ELLM's "good actions").
VALID_GOALS: tuple[str, ...] = (
    "do nothing", "move left", "move right", "move up", "move down", "sleep",
    "mine stone", "mine coal", "mine iron", "mine diamond", "eat cow", "eat plant", "attack zombie",
    "attack skeleton", "attack cow", "chop tree", "chop grass", "drink water", "place stone",
    "place crafting table", "place furnace", "place plant", "make crafting table", "make wood pickaxe",
    "make stone pickaxe", "make iron pickaxe", "make wood sword", "make stone sword", "make iron sword",
)  # fmt: skip

#: Goals that count as one (ELLM): achieving either removes both from this episode's goals.
EQUIVALENT_GOALS: dict[str, str] = {
    "eat cow": "attack cow", "attack cow": "eat cow",
    "make crafting table": "place crafting table", "place crafting table": "make crafting table",
}

# ELLM's oracle: each goal's inventory needs (item: count) and what must be in view (substrings
# of the caption). "sleep" needs sleepiness instead, checked apart. These are ELLM's numbers,
# written for its modified game: a table there costs 1 wood (Crafter's, which we keep, costs 2).
ORACLE_PREREQUISITES: dict[str, tuple[dict[str, int], tuple[str, ...]]] = {
    "eat plant": ({}, ("plant",)), "attack zombie": ({}, ("zombie",)), "attack skeleton": ({}, ("skeleton",)),
    "attack cow": ({}, ("cow",)), "eat cow": ({}, ("cow",)), "chop tree": ({}, ("tree",)),
    "mine stone": ({"wood_pickaxe": 1}, ("stone",)), "mine coal": ({"wood_pickaxe": 1}, ("coal",)),
    "mine iron": ({"stone_pickaxe": 1}, ("iron",)), "mine diamond": ({"iron_pickaxe": 1}, ("diamond",)),
    "drink water": ({}, ("water",)), "chop grass": ({}, ("grass",)), "sleep": ({}, ()),
    "place stone": ({"stone": 1}, ()), "place crafting table": ({"wood": 1}, ()),
    "make crafting table": ({"wood": 1}, ()), "place furnace": ({"stone": 4}, ()),
    "place plant": ({"sapling": 1}, ()),
    "make wood pickaxe": ({"wood": 1}, ("table",)), "make stone pickaxe": ({"wood": 1, "stone": 1}, ("table",)),
    "make iron pickaxe": ({"wood": 1, "coal": 1, "iron": 1}, ("table", "furnace")),
    "make wood sword": ({"wood": 1}, ("table",)), "make stone sword": ({"wood": 1, "stone": 1}, ("table",)),
    "make iron sword": ({"wood": 1, "coal": 1, "iron": 1}, ("table", "furnace")),
}  # fmt: skip

# "chop tree" hits only when the player faces a tree, and so on; what a hit does is Crafter's.
_FACING_VERBS = {
    "attack cow": "cow", "attack zombie": "zombie", "attack skeleton": "skeleton",
    "chop tree": "tree", "chop grass": "grass", "drink water": "water",
    "mine stone": "stone", "mine coal": "coal", "mine iron": "iron", "mine diamond": "diamond",
    "eat cow": "cow", "eat plant": "plant",
}
_VERB_ONLY_PRIMITIVE = {
    "do nothing": "noop", "move left": "move_left", "move right": "move_right",
    "move up": "move_up", "move down": "move_down", "sleep": "sleep",
}

#: The caption of the action that unlocks each achievement: the novelty and oracle baselines'
#: goals, and the yardstick for "the agent did something meaningful".
ACHIEVEMENT_CAPTIONS: dict[str, str] = {
    "collect_coal": "mine coal", "collect_diamond": "mine diamond", "collect_drink": "drink water",
    "collect_iron": "mine iron", "collect_sapling": "chop grass", "collect_stone": "mine stone",
    "collect_wood": "chop tree", "defeat_skeleton": "attack skeleton",
    "defeat_zombie": "attack zombie", "eat_cow": "eat cow", "eat_plant": "eat plant",
    "make_iron_pickaxe": "make iron pickaxe", "make_iron_sword": "make iron sword",
    "make_stone_pickaxe": "make stone pickaxe", "make_stone_sword": "make stone sword",
    "make_wood_pickaxe": "make wood pickaxe", "make_wood_sword": "make wood sword",
    "place_furnace": "place furnace", "place_plant": "place plant", "place_stone": "place stone",
    "place_table": "place crafting table", "wake_up": "sleep",
}

VIEW = (9, 7)  # Crafter's 9x9 view less the two inventory rows: 9 wide, 7 tall
_CREATURES = (O.Player, O.Cow, O.Zombie, O.Skeleton, O.Arrow, O.Plant)
_MATERIAL_IDS = {name: i + 1 for i, name in enumerate(C.materials)}  # 0 = outside the world
_OBJECT_IDS = {cls: len(C.materials) + 1 + i for i, cls in enumerate(_CREATURES)}
N_CLASSES = len(C.materials) + 1 + len(_CREATURES)  # 19
N_EXTRA = len(ITEMS) + 4 + 1  # inventory, facing one-hot, sleeping
SYMBOLIC_SIZE = VIEW[0] * VIEW[1] + N_EXTRA
_FACINGS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def _name(thing: Any) -> str:
    """A material name or a creature's class name, as captions spell it."""
    if isinstance(thing, str):
        return thing
    return type(thing).__name__.lower()


def _join(words: list[str]) -> str:
    """English list: "a", "a and b", "a, b, and c" (this library's earlier captions)."""
    if len(words) <= 2:
        return " and ".join(words)
    return ", ".join(words[:-1]) + ", and " + words[-1]


def _join_ellm(words: list[str]) -> str:
    """ELLM's list: "a", "a, and b", "a, b, and c" (the last item always after ", and ")."""
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + ", and " + words[-1]


@dataclass(frozen=True)
class _Before:
    """What the transition caption compares against: the state before the action."""

    facing_material: str | None
    facing_object: Any
    achievements: dict[str, int]
    inventory: dict[str, int]
    pos: tuple[int, int]


class _Crafter(crafter.Env):
    """crafter.Env that draws its image only when asked (drawing costs ~80% of a step) and builds
    the next episode's world in a background thread while this episode runs.

    Generating a world takes about a second of Python, and a vector env waits for its slowest
    member, so a reset in one of eight worlds used to stall all eight. The world of episode k+1
    depends only on (seed, k+1), so building it early gives the same world crafter.Env.reset
    would (tests/envs/test_crafter_text.py checks this step by step). The worker's main thread
    idles in a pipe read between steps, which is when the builder runs.
    """

    draw = True
    prefetch = True

    def _obs(self):  # noqa: D401 - crafter's hook
        return self.render() if self.draw else None

    def _balance_chunk(self, chunk, objs):
        # crafter keeps a chunk's creatures in a set, ordered by memory address, and despawns
        # creatures[random index]: which one differs from process to process. In position order
        # the same seed gives the same game everywhere.
        super()._balance_chunk(chunk, sorted(objs, key=lambda o: (int(o.pos[0]), int(o.pos[1]))))

    def _build(self, seed: int):
        """What crafter.Env.reset does to make a world, on a new World object."""
        world = engine.World(self._area, C.materials, (12, 12))
        world.reset(seed=seed)
        player = O.Player(world, (world.area[0] // 2, world.area[1] // 2))
        world.add(player)
        worldgen.generate_world(world, player)
        return world, player

    def reset(self):
        self._episode += 1
        self._step = 0
        key = (self._seed, self._episode)
        seed = hash(key) % (2**31 - 1)
        ahead = getattr(self, "_ahead", None)
        if ahead is not None and ahead[0] == key:
            world, player = ahead[1].result()
        else:
            world, player = self._build(seed)
        self._use(world, player)
        self._update_time()
        self._last_health = player.health
        self._unlocked = set()
        if self.prefetch:
            nxt = (self._seed, self._episode + 1)
            self._ahead = (nxt, _BUILDER.submit(self._build, hash(nxt) % (2**31 - 1)))
        return self._obs()

    def _use(self, world, player) -> None:
        """Swap in a world: crafter's views hold the world they draw, so they are rebuilt."""
        self._world, self._player = world, player
        item_rows = int(np.ceil(len(C.items) / self._view[0]))
        self._local_view = engine.LocalView(world, self._textures, [self._view[0], self._view[1] - item_rows])
        self._sem_view = engine.SemanticView(world, list(_CREATURES))


def _new_builder() -> None:
    global _BUILDER
    _BUILDER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crafter-world")


_new_builder()
# A forked child (a vector env's worker) inherits the executor but not its thread: give it its own.
os.register_at_fork(after_in_child=_new_builder)


class CrafterTextEnv(gym.Env):
    """Crafter with ELLM's state and transition captions.

    Args:
        action_set: "standard" (Crafter's 17 primitives) or "verb_noun" (ELLM's 139).
        observation: "symbolic" (flat uint8 vector), "pixels" (64x64 RGB) or "both" (Dict).
        length: steps before truncation (Crafter's default is 10,000; ELLM trains with 400).
        reward: "crafter" (health change / 10 + 1 per new achievement), "health" (the health term
            alone) or "none" (ELLM's pretraining: its code zeroes the health term).
        size: the rendered image size.
        caption: "ellm" (ELLM's state caption, the default) or "llmrl" (this library's earlier one).
        success: "loose" (ELLM's rule, verb x noun actions only) or "strict" (the action did
            something); None picks loose for verb x noun actions, strict for Crafter's.

    ``info`` after every reset and step holds ``caption`` (state caption), ``transition_caption``
    ("" after a reset or a failed action), ``action_success``, ``action_name``, ``oracle_goals``
    (ELLM's oracle, see the module docstring), ``achievements`` (bool mask: unlocked this
    episode), ``feasible`` (bool mask: achievements one action away right now), ``health_reward``
    and ``unlocked`` (the names unlocked by this step).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        action_set: str = "standard",
        observation: str = "symbolic",
        length: int = 10_000,
        reward: str = "crafter",
        size: int = 64,
        render_mode: str | None = "rgb_array",
        caption: str = "ellm",
        success: str | None = None,
    ) -> None:
        success = success or ("loose" if action_set == "verb_noun" else "strict")
        if caption not in CAPTIONS:
            raise ValueError(f"caption must be one of {CAPTIONS}, got {caption!r}")
        if success not in SUCCESS_RULES:
            raise ValueError(f"success must be one of {SUCCESS_RULES}, got {success!r}")
        if success == "loose" and action_set != "verb_noun":
            raise ValueError("success='loose' is ELLM's rule for its verb x noun actions: use action_set='verb_noun'")
        if action_set not in ACTION_SETS:
            raise ValueError(f"action_set must be one of {sorted(ACTION_SETS)}, got {action_set!r}")
        if observation not in OBSERVATIONS:
            raise ValueError(f"observation must be one of {OBSERVATIONS}, got {observation!r}")
        if reward not in ("crafter", "health", "none"):
            raise ValueError(f"reward must be 'crafter', 'health' or 'none', got {reward!r}")
        if length < 1:
            raise ValueError(f"length must be a positive number of steps, got {length}")
        self.action_set = action_set
        self.action_names: tuple[str, ...] = ACTION_SETS[action_set]
        self.observation = observation
        self.length = length
        self.reward_mode = reward
        self.render_mode = render_mode
        self.caption_mode, self.success_rule = caption, success
        self._game = _Crafter(size=(size, size), length=length, seed=0)
        self._game.draw = observation != "symbolic"
        # The next world is built in a thread while this process waits for the agent; a short
        # switch interval lets a step interrupt the builder within half a millisecond.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        self.action_space = spaces.Discrete(len(self.action_names))
        symbolic = spaces.Box(0, 255, (SYMBOLIC_SIZE,), np.uint8)
        pixels = spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.observation_space = {
            "symbolic": symbolic,
            "pixels": pixels,
            "gray84": spaces.Box(0, 255, (GRAY_SIZE, GRAY_SIZE, 1), np.uint8),
            "both": spaces.Dict({"symbolic": symbolic, "pixels": pixels}),
        }[observation]
        self._unlocked: set[str] = set()

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            # crafter seeds episode k's world with hash((seed, k)): restart that sequence.
            self._game._seed = int(seed)
            self._game._episode = 0
        image = self._game.reset()
        self._unlocked = set()
        info = self._info(transition="", success=False, action_name="", health_reward=0.0, unlocked=())
        return self._observe(image), info

    def step(self, action):
        action = int(action)
        if not 0 <= action < len(self.action_names):
            raise ValueError(f"action must be in [0, {len(self.action_names)}), got {action}")
        name = self.action_names[action]
        primitive = self._primitive(name)
        before = self._snapshot()
        loose = self.loose_success(name) if self.success_rule == "loose" else False
        asleep = self.player.sleeping
        image, crafter_reward, done, crafter_info = self._game.step(C.actions.index(primitive))
        transition = self.transition_caption(primitive, before)
        if self.success_rule == "loose":
            # ELLM: the loose rule or the action did something; asleep, only "sleep" can succeed.
            succeeded = (loose or transition != "") and (name == "sleep" or not asleep)
            transition = name if succeeded else ""
        health_reward = crafter_reward - (1.0 if len(self._game._unlocked) > len(self._unlocked) else 0.0)
        unlocked = tuple(sorted(self._game._unlocked - self._unlocked))
        self._unlocked = set(self._game._unlocked)
        reward = {"crafter": crafter_reward, "health": health_reward, "none": 0.0}[self.reward_mode]
        terminated = self._game._player.health <= 0
        truncated = bool(done) and not terminated
        info = self._info(
            transition=transition,
            success=transition != "",
            action_name=name,
            health_reward=float(health_reward),
            unlocked=unlocked,
        )
        return self._observe(image), float(reward), bool(terminated), truncated, info

    def render(self):
        return self._game.render()

    # ------------------------------------------------------------------ captions
    @property
    def player(self) -> O.Player:
        return self._game._player

    @property
    def world(self):
        return self._game._world

    def facing(self) -> tuple[str | None, Any]:
        """The material and the object (or None) in the cell the player faces."""
        target = (self.player.pos[0] + self.player.facing[0], self.player.pos[1] + self.player.facing[1])
        return self.world[target]

    def local_cells(self) -> tuple[np.ndarray, list[Any]]:
        """The 9x7 local view: material ids (0 outside the world) and the creatures in it."""
        (px, py), (w, h) = self.player.pos, VIEW
        ids = np.zeros((w, h), np.uint8)
        x0, y0 = px - w // 2, py - h // 2
        ax, ay = self.world.area
        xs, ys = slice(max(x0, 0), min(x0 + w, ax)), slice(max(y0, 0), min(y0 + h, ay))
        ids[xs.start - x0: xs.stop - x0, ys.start - y0: ys.stop - y0] = self.world._mat_map[xs, ys]
        creatures = [
            obj for obj in self.world.objects
            if x0 <= obj.pos[0] < x0 + w and y0 <= obj.pos[1] < y0 + h
        ]
        return ids, creatures

    def state_caption(self) -> str:
        """The caption of the current state (see the module docstring)."""
        return self._ellm_caption() if self.caption_mode == "ellm" else self._llmrl_caption()

    def _ellm_caption(self) -> str:
        parts = [self._ellm_view()]
        inventory = self.player.inventory
        held = ["plant" if k == "sapling" else k for k in ITEMS if k not in STATUS_WORDS and inventory[k] > 0]
        if held:
            parts.append(f"You have in your inventory {', '.join(held)}.")
        if inventory["energy"] < STATUS_MAX:  # ELLM's LM is told of sleepiness only
            parts.append("You feel sleepy.")
        return " ".join(parts)

    def _ellm_view(self) -> str:
        """ELLM's first sentences: what is in view, and what the player targets."""
        ids, creatures = self.local_cells()
        names = {C.materials[i - 1] for i in np.unique(ids) if i > 0} | {_name(c) for c in creatures}
        names = {"crafting table" if n == "table" else n for n in names} - {"player", "sand", "arrow"}
        view = f"You see {_join_ellm(sorted(names))}."
        material, obj = self.facing()
        target = _name(obj) if obj is not None else material
        if target is not None and (obj is not None or target not in ("path", "sand", "lava")):
            view += f" You are targeting {target}."
        return view

    def oracle_goals(self) -> tuple[str, ...]:
        """The goals ELLM's oracle proposes now: every goal whose inventory needs are held and
        whose things are in view (as words of the caption's first two sentences); "sleep" only
        when sleepy; no "place crafting table" with one in view. Like ELLM's, it keeps "make
        crafting table" with a table in view and never proposes "drink water" from thirst alone."""
        view = self._ellm_view().lower()
        inventory = self.player.inventory
        goals = [g for g, (items, things) in ORACLE_PREREQUISITES.items()
                 if all(inventory[k] >= n for k, n in items.items()) and all(t in view for t in things)]
        dropped = set()
        if inventory["energy"] >= STATUS_MAX:
            dropped.add("sleep")
        if "crafting table" in view:
            dropped.add("place crafting table")
        return tuple(g for g in goals if g not in dropped)

    def loose_success(self, name: str) -> bool:
        """ELLM's check before a verb-noun action: the player faces the thing it names, or holds
        the item it names (verb-only actions are judged by what they do)."""
        if name in VERB_ONLY:
            return False
        noun = name.split(" ", 1)[1]
        material, obj = self.facing()
        faced = _name(obj) if obj is not None else material
        return faced == noun or self.player.inventory.get(noun.replace(" ", "_"), 0) > 0

    def _llmrl_caption(self) -> str:
        ids, creatures = self.local_cells()
        seen = {C.materials[i - 1] for i in np.unique(ids) if i > 0}
        seen |= {_name(c) for c in creatures if not isinstance(c, O.Player)}
        material, obj = self.facing()
        parts = []
        if seen:
            parts.append(f"You see {_join(sorted(seen))}.")
        target = obj if obj is not None else material
        if target is not None:
            parts.append(f"You are targeting {_name(target)}.")
        inventory = self.player.inventory
        held = [k.replace("_", " ") for k in ITEMS if k not in STATUS_WORDS and inventory[k] > 0]
        if held:
            parts.append(f"You have in your inventory {_join(held)}.")
        needs = [STATUS_WORDS[k] for k in STATUS_WORDS if inventory[k] < STATUS_MAX]
        if needs:
            parts.append(f"You feel {', '.join(needs)}.")
        return " ".join(parts)

    def transition_caption(self, primitive: str, before: _Before) -> str:
        """The verb-noun name of what ``primitive`` did, judged from the state before and after."""
        player = self.player
        gained = {k for k, v in player.achievements.items() if v > before.achievements[k]}
        if primitive.startswith("move_"):
            moved = tuple(player.pos) != before.pos
            return primitive.replace("_", " ") if moved else ""
        if primitive == "sleep":
            return "sleep" if player.sleeping else ""
        if primitive.startswith(("place_", "make_")):
            if f"{primitive}" in gained:
                return primitive.replace("_", " ", 1).replace("_", " ").replace("table", "crafting table")
            return ""
        if primitive != "do":
            return ""
        obj = before.facing_object
        if obj is not None:
            kind = _name(obj)
            if kind == "cow":
                return "eat cow" if "eat_cow" in gained else "attack cow"
            if kind in ("zombie", "skeleton"):
                return f"attack {kind}"
            if kind == "plant":
                return "eat plant" if "eat_plant" in gained else ""
            return ""
        material = before.facing_material
        if material == "water":
            return "drink water"  # drinking always works; a full thirst meter just stays full
        if material == "tree" and player.inventory["wood"] > before.inventory["wood"]:
            return "chop tree"
        if material == "grass" and "collect_sapling" in gained:
            return "chop grass"
        if material in ("stone", "coal", "iron", "diamond") and f"collect_{material}" in gained:
            return f"mine {material}"
        return ""

    def feasible(self) -> np.ndarray:
        """Mask over ``ACHIEVEMENTS``: those one action could unlock now (the oracle's goals)."""
        player, inventory = self.player, self.player.inventory
        material, obj = self.facing()
        mask = np.zeros(len(ACHIEVEMENTS), bool)

        def can(name: str) -> None:
            mask[ACHIEVEMENTS.index(name)] = True

        if obj is not None:
            kind = _name(obj)
            if kind == "cow":
                can("eat_cow")
            elif kind in ("zombie", "skeleton"):
                can(f"defeat_{kind}")
            elif kind == "plant" and obj.ripe:
                can("eat_plant")
        elif material is not None:
            rule = C.collect.get(material)
            if rule and all(inventory[k] >= v for k, v in rule["require"].items()):
                can(f"collect_{next(iter(rule['receive']))}")
            for name, rule in C.place.items():
                if material in rule["where"] and all(inventory[k] >= v for k, v in rule["uses"].items()):
                    can(f"place_{name}")
        nearby, _ = self.world.nearby(player.pos, 1)
        for name, rule in C.make.items():
            if all(u in nearby for u in rule["nearby"]) and all(inventory[k] >= v for k, v in rule["uses"].items()):
                can(f"make_{name}")
        if inventory["energy"] < STATUS_MAX:
            can("wake_up")
        return mask

    # ------------------------------------------------------------------ internals
    def _primitive(self, name: str) -> str:
        """The Crafter primitive that an action name runs this step (a no-op if it cannot apply)."""
        if self.action_set == "standard":
            return name
        if name in _VERB_ONLY_PRIMITIVE:
            return _VERB_ONLY_PRIMITIVE[name]
        verb, noun = name.split(" ", 1)
        if name in _FACING_VERBS:
            material, obj = self.facing()
            faced = _name(obj) if obj is not None else material
            return "do" if faced == _FACING_VERBS[name] else "noop"
        if noun == "crafting table" and verb in ("place", "make"):  # ELLM: both place a table
            return "place_table"
        key = noun.replace(" ", "_")
        if verb == "place" and key in C.place:
            return f"place_{key}"
        if verb == "make" and key in C.make:
            return f"make_{key}"
        return "noop"

    def _snapshot(self) -> _Before:
        material, obj = self.facing()
        return _Before(
            facing_material=material,
            facing_object=obj,
            achievements=dict(self.player.achievements),
            inventory=dict(self.player.inventory),
            pos=tuple(int(v) for v in self.player.pos),
        )

    def symbolic(self) -> np.ndarray:
        """The flat uint8 observation: local semantic map, inventory, facing, sleeping."""
        ids, creatures = self.local_cells()
        (px, py), (w, h) = self.player.pos, VIEW
        for obj in creatures:
            ids[obj.pos[0] - (px - w // 2), obj.pos[1] - (py - h // 2)] = _OBJECT_IDS[type(obj)]
        extra = np.zeros(N_EXTRA, np.uint8)
        extra[: len(ITEMS)] = [self.player.inventory[k] for k in ITEMS]
        extra[len(ITEMS) + _FACINGS.index(tuple(self.player.facing))] = 1
        extra[-1] = int(self.player.sleeping)
        return np.concatenate([ids.T.reshape(-1), extra])  # row-major (y, x)

    def _observe(self, image):
        if self.observation == "symbolic":
            return self.symbolic()
        if self.observation == "pixels":
            return image
        if self.observation == "gray84":
            return gray84(image)
        return {"symbolic": self.symbolic(), "pixels": image}

    def _info(self, transition: str, success: bool, action_name: str, health_reward: float, unlocked) -> dict:
        return {
            "caption": self.state_caption(),
            "transition_caption": transition,
            "action_success": success,
            "action_name": action_name,
            "oracle_goals": self.oracle_goals(),
            "achievements": np.array([a in self._unlocked for a in ACHIEVEMENTS]),
            "feasible": self.feasible(),
            "health_reward": health_reward,
            "unlocked": unlocked,
        }


def gray84(image: np.ndarray) -> np.ndarray:
    """ELLM's frame: the channel mean, resized bilinearly to 84x84, as uint8 of shape (84, 84, 1)."""
    from PIL import Image

    gray = Image.fromarray(image.mean(axis=2).astype(np.float32), mode="F")
    resized = np.asarray(gray.resize((GRAY_SIZE, GRAY_SIZE), Image.BILINEAR))
    return np.clip(resized, 0, 255).astype(np.uint8)[..., None]


class StackFrames(gym.ObservationWrapper):
    """The last ``k`` image frames on the channel axis; a reset repeats its first frame (ELLM)."""

    def __init__(self, env: gym.Env, k: int) -> None:
        super().__init__(env)
        h, w, c = env.observation_space.shape
        self.k, self.frames = k, None
        self.observation_space = spaces.Box(0, 255, (h, w, c * k), np.uint8)

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self.frames = [obs] * self.k
        return np.concatenate(self.frames, axis=2), info

    def observation(self, observation: np.ndarray) -> np.ndarray:
        self.frames = [*self.frames[1:], observation]
        return np.concatenate(self.frames, axis=2)


def make_vec(n_envs: int, asynchronous: bool = True, frame_stack: int = 1, **kwargs: Any) -> gym.vector.VectorEnv:
    """``n_envs`` CrafterTextEnvs, in subprocesses by default (world generation is slow), each
    with its last ``frame_stack`` image frames stacked (image observations only).

    Episodes reset in the same step that ends them (``AutoresetMode.SAME_STEP``): the returned
    observation is the new episode's, the last one's is in ``infos["final_obs"]`` and its info in
    ``infos["final_info"]``.
    """
    if n_envs < 1:
        raise ValueError(f"n_envs must be at least 1, got {n_envs}")
    if frame_stack > 1 and kwargs.get("observation") not in ("pixels", "gray84"):
        raise ValueError("frame_stack stacks image frames: use observation='gray84' (ELLM's) or 'pixels'")

    def one() -> gym.Env:
        env = CrafterTextEnv(**kwargs)
        return StackFrames(env, frame_stack) if frame_stack > 1 else env

    fns = [one for _ in range(n_envs)]
    mode = gym.vector.AutoresetMode.SAME_STEP
    if asynchronous and n_envs > 1:
        return gym.vector.AsyncVectorEnv(fns, autoreset_mode=mode)
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)
