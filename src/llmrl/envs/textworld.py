"""TextWorld games made here, cached, and played through one Gymnasium env.

TextWorld (Côté et al., 2018) generates interactive-fiction games from a seed and compiles them
with the Inform 7 compiler that ships inside its wheel, so nothing is downloaded: a game set is a
function of its level, split and seed. :func:`make_games` generates the set once and caches the
compiled ``.z8`` files under ``$LLMRL_CACHE_DIR/textworld`` (``~/.cache/llmrl/textworld``).

Levels (:data:`LEVELS`) differ in rooms, objects and quest length; the ``train`` and ``test``
splits draw disjoint seeds, so test games are unseen layouts, objects and quests.

:class:`TextWorldEnv` plays a set of games. Observation: ``{"text": feedback, "description":
the room, "inventory": ..., "objective": ...}`` (all ``Text``); reward: the change in the game's
score; terminated on a win or a loss, truncated at ``max_steps``. ``info`` holds what an agent or
an evaluation may use: ``admissible`` (the valid commands, for the oracle agent),
``walkthrough`` (the commands that win from here), ``score``, ``max_score``, ``won``, ``game``.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["LEVELS", "VERBS", "Level", "TextWorldEnv", "game_paths", "make_games"]

TEXT_MAX_CHARS = 8192
_CHARS = "".join(chr(c) for c in range(32, 127)) + "\n"
VERBS = ("go", "take", "drop", "open", "close", "unlock", "lock", "put", "insert", "eat", "examine", "look",
         "inventory")  # fmt: skip
_SPLIT_OFFSET = {"train": 0, "test": 1_000_000}


@dataclass(frozen=True)
class Level:
    """A difficulty: the generator's world size and quest length, and the episode's step limit."""

    rooms: int
    objects: int
    quest_length: int
    max_steps: int


LEVELS: dict[str, Level] = {
    "easy": Level(rooms=2, objects=4, quest_length=2, max_steps=30),
    "medium": Level(rooms=4, objects=8, quest_length=4, max_steps=50),
    "hard": Level(rooms=6, objects=12, quest_length=6, max_steps=80),
}


def _check(level: str, split: str) -> Level:
    if level not in LEVELS:
        raise ValueError(f"unknown TextWorld level {level!r}: choose from {', '.join(LEVELS)}")
    if split not in _SPLIT_OFFSET:
        raise ValueError(f"split must be train or test, got {split!r}")
    return LEVELS[level]


def game_paths(level: str, split: str, n: int, seed: int = 0, cache: str | os.PathLike[str] | None = None) -> list[Path]:
    """Where the ``n`` games of (level, split, seed) live in the cache; see :func:`make_games`."""
    spec = _check(level, split)
    from llmrl.config import cache_dir

    root = Path(cache) if cache else cache_dir() / "textworld"
    tag = hashlib.sha1(repr((spec, split, seed)).encode()).hexdigest()[:8]
    return [root / f"{level}-{split}-s{seed}-{tag}" / f"game{i:03d}.z8" for i in range(n)]


def make_games(level: str, split: str, n: int, seed: int = 0, cache: str | os.PathLike[str] | None = None) -> list[Path]:
    """Generate (or find cached) ``n`` games; game ``i`` is seeded by (split, seed, i) alone, so a
    larger ``n`` extends a set without changing its first games."""
    try:
        import textworld
        from textworld import GameOptions
    except ModuleNotFoundError:
        raise ImportError("TextWorld games need the textworld package: pip install 'llmrl[textworld]'") from None
    spec = _check(level, split)
    paths = game_paths(level, split, n, seed, cache)
    for i, path in enumerate(paths):
        if path.exists() and path.with_suffix(".json").exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        options = GameOptions()
        options.nb_rooms, options.nb_objects, options.quest_length = spec.rooms, spec.objects, spec.quest_length
        options.seeds = _SPLIT_OFFSET[split] + 10_000 * seed + i
        options.path = str(path.parent / f".tmp-{path.stem}-{os.getpid()}.z8")
        options.force_recompile = True
        game = textworld.generator.make_game(options)
        made = Path(textworld.generator.compile_game(game, options))
        # Publish the metadata before the game file: a game file's presence means both are whole.
        os.replace(made.with_suffix(".json"), path.with_suffix(".json"))
        os.replace(made, path)
        for leftover in path.parent.glob(f".tmp-{path.stem}-{os.getpid()}.*"):
            leftover.unlink()
    return paths


class TextWorldEnv(gym.Env[dict[str, str], str]):
    """Plays one of ``games`` per episode: ``reset(seed=s)`` picks game ``s mod len(games)`` unless
    ``options={"game": i}`` names one. Actions are command strings."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, games: list[Path] | list[str], max_steps: int = 50) -> None:
        if not games:
            raise ValueError("TextWorldEnv needs at least one game: make some with llmrl.envs.textworld.make_games")
        missing = [str(g) for g in games if not Path(g).exists()]
        if missing:
            raise FileNotFoundError(f"game files not found: {missing[:3]}; make them with make_games")
        import textworld

        self.games = [Path(g) for g in games]
        self.max_steps = max_steps
        self._infos = textworld.EnvInfos(admissible_commands=True, description=True, inventory=True, score=True,
                                         max_score=True, won=True, lost=True, policy_commands=True,
                                         objective=True, feedback=True)  # fmt: skip
        self._textworld = textworld
        self._env: Any = None
        self._loaded = -1
        text = spaces.Text(TEXT_MAX_CHARS, min_length=0, charset=_CHARS)
        self.observation_space = spaces.Dict({"text": text, "description": text, "inventory": text, "objective": text})
        self.action_space = spaces.Text(256, min_length=1, charset=_CHARS)
        self.game = 0
        self._t = 0
        self._score = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options and "game" in options:
            self.game = int(options["game"]) % len(self.games)
        elif seed is not None:
            self.game = seed % len(self.games)
        else:
            self.game = int(self.np_random.integers(len(self.games)))
        if self._loaded != self.game:
            if self._env is not None:
                self._env.close()
            with warnings.catch_warnings():
                # Jericho warns that it cannot track score on TextWorld's games; TextWorld tracks it.
                warnings.filterwarnings("ignore", message=".*is not fully supported.*")
                self._env = self._textworld.start(str(self.games[self.game]), request_infos=self._infos)
            self._loaded = self.game
        state = self._env.reset()
        self._t, self._score = 0, int(state.score or 0)
        return self._observe(state)

    def step(self, action: str) -> tuple[dict[str, str], SupportsFloat, bool, bool, dict[str, Any]]:
        if self._env is None:
            raise RuntimeError("call reset() before step()")
        state, _, done = self._env.step(str(action))
        self._t += 1
        score = int(state.score or 0)
        reward, self._score = float(score - self._score), score
        obs, info = self._observe(state)
        return obs, reward, bool(done), (not done) and self._t >= self.max_steps, info

    def _observe(self, state: Any) -> tuple[dict[str, str], dict[str, Any]]:
        obs = {"text": _clean(state.feedback), "description": _clean(state.description),
               "inventory": _clean(state.inventory), "objective": _clean(state.objective)}  # fmt: skip
        info = {"admissible": [a for a in state.admissible_commands if a not in ("look", "inventory")],
                "walkthrough": list(state.policy_commands or []), "score": int(state.score or 0),
                "max_score": int(state.max_score or 0), "won": bool(state.won), "lost": bool(state.lost),
                "game": self.game, "t": self._t}  # fmt: skip
        return obs, info

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
            self._loaded = -1


def _clean(text: str | None) -> str:
    """Drop the banner art and prompt marks; keep the words an agent reads."""
    if not text:
        return ""
    lines = [ln.strip() for ln in text.replace("\r", "").split("\n")]
    # A line opening with ">" is the prompt and the status bar (room, score/moves): it changes every
    # step and says nothing the agent does not know.
    keep = [ln for ln in lines if ln and not ln.startswith(">") and not set(ln) <= set("$_\\/|-=+ `'.,()[]<>:;\"^~*#")]
    out = " ".join(keep)
    return "".join(c for c in out if c in _CHARS)[:TEXT_MAX_CHARS]


def entity_names(game: Path) -> list[str]:
    """The names of the game's objects, containers and doors (its metadata), for a random proposer."""
    import json

    infos = [info for _, info in json.loads(Path(game).with_suffix(".json").read_text()).get("infos", [])]
    # Rooms are places, not objects: the "go" verb takes directions instead.
    names = {info["name"] for info in infos if info.get("name") and info.get("type") != "r"}
    return sorted(names)


def np_choice(rng: np.random.Generator, items: list[str], k: int) -> list[str]:
    return [items[i] for i in rng.choice(len(items), size=min(k, len(items)), replace=False)]
