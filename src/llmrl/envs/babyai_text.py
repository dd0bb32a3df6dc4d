"""BabyAI-Text: a MiniGrid/BabyAI level whose observations also come as GLAM's sentences.

Observation (a ``gymnasium.spaces.Dict``, so ``check_env`` and vector envs work unchanged):

- ``image``: MiniGrid's 7x7x3 uint8 egocentric symbolic view (``(object, colour, state)``);
- ``direction``: the agent's heading, ``Discrete(4)``;
- ``mission``: the instruction, a ``Text`` ("go to the red ball");
- ``text``: the description sentences joined by ``". "`` (no sentence contains a period, so
  ``obs["text"].split(". ")`` recovers them; an empty string when nothing is described).

The same text view is in ``info`` on reset and on every step, as an LLM agent wants it:
``info["descriptions"]`` (list of sentences, see :mod:`llmrl.envs.describe`) and
``info["mission"]``; plus ``info["success"]`` (the verifier accepted the episode) and
``info["task"]`` (``goto``, ``pickup``, ``putnext``, ``open``, ``pickup_seq_goto`` for GLAM's
levels; the instruction kind, e.g. ``seq``, for other BabyAI levels; ``""`` without one).
Lists of strings cannot be a gymnasium space that ``check_env`` accepts, hence the two forms.
For ``AsyncVectorEnv`` use :func:`make_vec` or ``shared_memory=False``: with shared memory
gymnasium 1.4 never refreshes ``Text`` fields.

Actions are GLAM's six (``ACTIONS``), MiniGrid's actions 0..5; ``done`` (6) is not offered.
Reward is MiniGrid's BabyAI reward, GLAM's ``1 - 0.9 * t / max_steps`` on success (``t``
counting the successful step) and 0 otherwise; the episode truncates at the level's
``max_steps``.
"""

from __future__ import annotations

import contextlib
import io
import string
from typing import Any, SupportsFloat

import gymnasium as gym
from gymnasium import spaces
from gymnasium.envs.registration import load_env_creator
from minigrid.envs.babyai.core.verifier import (
    AfterInstr,
    AndInstr,
    BeforeInstr,
    GoToInstr,
    OpenInstr,
    PickupInstr,
    PutNextInstr,
)
from minigrid.minigrid_env import MiniGridEnv

from llmrl.envs.describe import describe

__all__ = ["ACTIONS", "BabyAICaptions", "BabyAITextEnv", "TEXT_ENVS", "TEXT_ENV_IDS", "make", "make_vec", "register_envs"]

ACTIONS: tuple[str, ...] = ("turn left", "turn right", "go forward", "pick up", "drop", "toggle")
TEXT_CHARSET = string.ascii_letters + string.digits + " ,.'"
SENTENCE_SEP = ". "
MISSION_MAX_CHARS = 1024
# Bound for 48 described cells (~66 characters each) plus walls and the carried object.
TEXT_MAX_CHARS = 4096

_MIXED = "llmrl.envs.babyai_levels:MixedLocal"
_GOTO_LOCAL_SIZES = ("S5N2", "S6N2", "S6N3", "S6N4", "S7N4", "S7N5", "S8N2", "S8N3", "S8N4", "S8N5", "S8N6", "S8N7")
# Registered id -> BabyAITextEnv kwargs: ``level`` is a MiniGrid id or an entry point.
TEXT_ENVS: dict[str, dict[str, Any]] = {
    "BabyAI-Text-GoToLocal-v0": {"level": "BabyAI-GoToLocal-v0"},
    **{f"BabyAI-Text-GoToLocal{s}-v0": {"level": f"BabyAI-GoToLocal{s}-v0"} for s in _GOTO_LOCAL_SIZES},
    "BabyAI-Text-PickupLocal-v0": {"level": _MIXED, "tasks": ("pickup",)},
    "BabyAI-Text-PutNextLocal-v0": {"level": "BabyAI-PutNextLocal-v0"},
    "BabyAI-Text-OpenDoor-v0": {"level": "BabyAI-OpenDoor-v0"},
    "BabyAI-Text-UnlockLocal-v0": {"level": "BabyAI-UnlockLocal-v0"},
    "BabyAI-Text-PickUpSeqGoToLocal-v0": {"level": _MIXED, "tasks": ("pickup_seq_goto",)},
    "BabyAI-Text-MixedTrainLocal-v0": {"level": _MIXED, "split": "train"},
    "BabyAI-Text-MixedTestLocal-v0": {"level": _MIXED, "split": "test"},
}
TEXT_ENV_IDS: tuple[str, ...] = tuple(TEXT_ENVS)

_INSTR_TASKS = ((GoToInstr, "goto"), (PickupInstr, "pickup"), (PutNextInstr, "putnext"), (OpenInstr, "open"))


class BabyAITextEnv(gym.Env[dict[str, Any], int]):
    """A MiniGrid level with GLAM's text view (see the module docstring).

    Args:
        level: a registered MiniGrid id (``"BabyAI-GoToLocal-v0"``), an entry point
            (``"module:Class"``) or a ready MiniGrid env. The level is ``self.level``; hand it
            to MiniGrid's ``BabyAIBot``.
        render_mode: ``"rgb_array"`` (``render()`` returns an HxWx3 uint8 frame) or ``"human"``;
            used when building the level from an id (a ready level keeps its own).
        quiet: silence the "Sampling rejected" lines MiniGrid prints while generating levels
            (``redirect_stdout`` during ``reset``, so other threads' prints then are lost too).
        articles: "english" ("You see an open red door") or "glam" (GLAM's "a open red door").
        **level_kwargs: passed to the level's constructor (e.g. ``split="test"``).
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 10}

    def __init__(
        self,
        level: str | MiniGridEnv = "BabyAI-GoToLocal-v0",
        render_mode: str | None = None,
        quiet: bool = True,
        articles: str = "english",
        **level_kwargs: Any,
    ) -> None:
        from llmrl.envs.describe import ARTICLES

        if articles not in ARTICLES:
            raise ValueError(f"articles must be one of {ARTICLES}, got {articles!r}")
        self.articles = articles
        if isinstance(level, str):
            level = _make_level(level, render_mode=render_mode, **level_kwargs)
        elif level_kwargs:
            raise TypeError("level_kwargs are only used when `level` is an id or entry point")
        if not isinstance(level.unwrapped, MiniGridEnv):
            raise TypeError(f"BabyAITextEnv needs a MiniGrid env, got {type(level.unwrapped).__name__}")
        self.level: MiniGridEnv = level.unwrapped
        self.render_mode = self.level.render_mode
        self.quiet = quiet
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.observation_space = spaces.Dict(
            {
                "image": self.level.observation_space["image"],
                "direction": spaces.Discrete(4),
                "mission": spaces.Text(MISSION_MAX_CHARS, min_length=0, charset=TEXT_CHARSET),
                "text": spaces.Text(TEXT_MAX_CHARS, min_length=0, charset=TEXT_CHARSET),
            }
        )
        self._task = ""

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        with contextlib.redirect_stdout(io.StringIO()) if self.quiet else contextlib.nullcontext():
            raw, _ = self.level.reset(seed=seed, options=options)
        self._task = _task_of(self.level)
        return self._observe(raw, success=False)

    def step(self, action: int) -> tuple[dict[str, Any], SupportsFloat, bool, bool, dict[str, Any]]:
        raw, reward, terminated, truncated, _ = self.level.step(action)
        obs, info = self._observe(raw, success=bool(terminated and reward > 0))
        return obs, reward, terminated, truncated, info

    def _observe(self, raw: dict[str, Any], success: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        sentences = describe(raw["image"], self.articles)
        mission = raw["mission"]
        obs = {
            "image": raw["image"],
            "direction": raw["direction"],
            "mission": mission,
            "text": SENTENCE_SEP.join(sentences),
        }
        info = {"descriptions": sentences, "mission": mission, "success": success, "task": self._task}
        return obs, info

    def render(self) -> Any:
        return self.level.render()

    def close(self) -> None:
        self.level.close()


class BabyAICaptions(gym.Wrapper):
    """Captions for BabyAI-Text in ELLM's form, so caption-driven roles (the goal explorer) work here.

    ``info["caption"]`` describes the state: the description sentences and what the agent
    carries. ``info["transition_caption"]`` names what the last action did to an object, in
    verb-noun form ("pick up the red key", "drop the red key", "open the blue door", "close the
    blue door", "unlock the blue door"), or is "" when it changed no object (moves, no-ops).
    """

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        return obs, self._captioned(info, "")

    def step(self, action: int):
        level = self.env.unwrapped.level
        carried, front = level.carrying, level.grid.get(*level.front_pos)
        door = (front.is_open, front.is_locked) if front is not None and front.type == "door" else None
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, self._captioned(info, _interaction(ACTIONS[int(action)], carried,
                                                                                    level, front, door))

    def _captioned(self, info: dict[str, Any], transition: str) -> dict[str, Any]:
        carrying = self.env.unwrapped.level.carrying
        held = [f"You carry a {carrying.color} {carrying.type}"] if carrying is not None else []
        return {**info, "caption": ", ".join([*info["descriptions"], *held]) + ".", "transition_caption": transition}


def _interaction(action: str, carried: Any, level: MiniGridEnv, front: Any, door: tuple[bool, bool] | None) -> str:
    """The verb-noun caption of what ``action`` did (``carried``, ``front``, ``door``: before it)."""
    if action == "pick up" and carried is None and level.carrying is not None:
        return f"pick up the {level.carrying.color} {level.carrying.type}"
    if action == "drop" and carried is not None and level.carrying is None:
        return f"drop the {carried.color} {carried.type}"
    if action == "toggle" and door is not None:
        was_open, was_locked = door
        if was_locked and not front.is_locked:
            return f"unlock the {front.color} door"
        if was_open != front.is_open:
            return f"{'open' if front.is_open else 'close'} the {front.color} door"
    return ""


def _make_level(level: str, render_mode: str | None = None, **kwargs: Any) -> MiniGridEnv:
    if ":" in level:
        creator, defaults = load_env_creator(level), {}
    else:
        try:
            spec = gym.spec(level)
        except gym.error.Error as err:
            raise gym.error.Error(
                f"{err}. `level` must be a MiniGrid id such as 'BabyAI-GoToLocal-v0' (import minigrid "
                "registers them) or an entry point 'module:Class'."
            ) from err
        creator = load_env_creator(spec.entry_point) if isinstance(spec.entry_point, str) else spec.entry_point
        defaults = dict(spec.kwargs)
    return creator(**{**defaults, **kwargs, "render_mode": render_mode})


def _task_of(level: MiniGridEnv) -> str:
    task = getattr(level, "task", None)  # GLAM's levels draw a named task per episode
    if isinstance(task, str):
        return task
    instr = getattr(level, "instrs", None)
    if isinstance(instr, (BeforeInstr, AfterInstr)):
        return "seq"
    if isinstance(instr, AndInstr):
        return "and"
    return next((name for cls, name in _INSTR_TASKS if isinstance(instr, cls)), "")


def register_envs() -> None:
    """Register every id in ``TEXT_ENV_IDS`` with gymnasium (done on ``import llmrl.envs``)."""
    for env_id, kwargs in TEXT_ENVS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="llmrl.envs.babyai_text:BabyAITextEnv", kwargs=kwargs)


def make(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` for a BabyAI-Text id, with an error that lists the ids on a typo."""
    _check_id(env_id)
    return gym.make(env_id, **kwargs)


def make_vec(env_id: str, num_envs: int, vectorization_mode: str = "sync", **kwargs: Any) -> gym.vector.VectorEnv:
    """``gym.make_vec`` for a BabyAI-Text id; ``infos["descriptions"]`` arrives as an object array.

    ``"async"`` turns shared memory off: gymnasium's ``AsyncVectorEnv`` reads a ``Text`` field
    out of shared memory once, at construction, so ``obs["mission"]`` and ``obs["text"]``
    would stay stale (gymnasium 1.4).
    """
    _check_id(env_id)
    if vectorization_mode == "async":
        kwargs["vector_kwargs"] = {"shared_memory": False, **kwargs.get("vector_kwargs", {})}
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=vectorization_mode, **kwargs)


def _check_id(env_id: str) -> None:
    if env_id not in TEXT_ENVS:
        raise gym.error.Error(
            f"Unknown BabyAI-Text id {env_id!r}; registered: {', '.join(TEXT_ENV_IDS)}. "
            "To wrap another MiniGrid level use BabyAITextEnv(level='BabyAI-BossLevel-v0')."
        )
    register_envs()
