"""GLAM's generalisation tests as text transformations of BabyAI-Text (Carta et al. 2023).

GLAM asks whether what a fine-tuned LM policy learnt is grounded in the *meaning* of the text or
tied to its surface: the policy trained on a level is evaluated on the same level with its text
changed, and on held-out compositions. :func:`glam_generalisation_suite` gives them as
:class:`TextVariant` s:

- ``original``: the level untouched, the control;
- ``mixed-test-local``: ``BabyAI-Text-MixedTestLocal-v0``, missions naming only the colour-object
  pairs that MixedTrainLocal holds out (its own env id, no rewriting);
- ``renamed-objects``: key/ball/box become chair/table/car (GLAM's ``other_name_same_categories``);
- ``invented-words``: key/ball/box become dax/xolo/afze, optionally the colours too
  (``no_meaning_nouns`` / ``no_meaning_words``);
- ``rephrased-goals``: the mission reworded, "I would like the agent to go to the red ball"
  (GLAM's two intros, more of them, and paraphrased verbs; one draw per episode);
- ``new-actions``: the env is unchanged, the LM scores ``rotate left, rotate right, move ahead,
  take, release, switch`` instead of GLAM's six action strings;
- ``french``: descriptions, mission and action strings in French (GLAM's babyai-text French mode).

Only the text an LM agent reads changes: ``info["descriptions"]`` and ``info["mission"]``, plus the
variant's ``actions`` for the policy to score. The Dict observation is left as the level made it
(``obs["mission"]``, ``obs["text"]`` stay English): its ``Text`` spaces accept ASCII only, so
"à" or "boîte" could not live there, and symbolic agents must see the same level anyway.
Rewriting never touches the env's dynamics: rewards, termination and the symbolic view match the
base env step for step.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from llmrl.envs.babyai_text import ACTIONS
from llmrl.envs.babyai_text import make as make_text_env

__all__ = [
    "FRENCH_ACTIONS",
    "GOAL_INTROS",
    "INVENTED_COLOURS",
    "INVENTED_OBJECTS",
    "NEW_ACTIONS",
    "RENAMED_OBJECTS",
    "SUITE_NAMES",
    "VERB_PARAPHRASES",
    "TextVariant",
    "TextVariantWrapper",
    "WordSubstitution",
    "french_description",
    "french_mission",
    "glam_generalisation_suite",
    "make_variant_env",
    "rephrase_goal",
]

# GLAM's dictionaries (experiments/post-training_tests.py, dict_modifier_english).
RENAMED_OBJECTS: dict[str, str] = {"key": "chair", "ball": "table", "box": "car"}
INVENTED_OBJECTS: dict[str, str] = {"key": "dax", "ball": "xolo", "box": "afze"}
INVENTED_COLOURS: dict[str, str] = {
    "red": "faze", "green": "jatu", "blue": "croh", "purple": "vurst", "yellow": "gakul", "grey": "sil",
}
# GLAM's config lists them with underscores and replaces "_" by " " before scoring.
NEW_ACTIONS: tuple[str, ...] = ("rotate left", "rotate right", "move ahead", "take", "release", "switch")
FRENCH_ACTIONS: tuple[str, ...] = (
    "tourner à gauche", "tourner à droite", "avancer", "ramasser", "déposer", "basculer",
)
SUITE_NAMES: tuple[str, ...] = (
    "original", "mixed-test-local", "renamed-objects", "invented-words", "rephrased-goals", "new-actions", "french",
)

MissionRewrite = Callable[[str, np.random.Generator], str]


@dataclass(frozen=True)
class TextVariant:
    """One generalisation test: a base env and how its text is rewritten.

    Args:
        name: the test's name in result tables (see ``SUITE_NAMES``).
        env_id: the BabyAI-Text id to build.
        rewrite_description: one description sentence -> its rewrite; ``None`` keeps them.
        rewrite_mission: ``(mission, rng) -> rewrite``, called once per episode with a generator
            seeded by the reset seed (so a seeded episode always reads the same); ``None`` keeps it.
        actions: the action strings an LM policy scores, in the env's action order.
    """

    name: str
    env_id: str
    rewrite_description: Callable[[str], str] | None = None
    rewrite_mission: MissionRewrite | None = None
    actions: tuple[str, ...] = ACTIONS


class TextVariantWrapper(gym.Wrapper):
    """Rewrites ``info["descriptions"]`` and ``info["mission"]`` as ``variant`` says, on reset and step.

    The mission is rewritten once per episode (on reset) and reused on every step, so a random
    paraphrase never changes mid-episode. ``self.actions`` is the variant's action strings
    (``env.get_wrapper_attr("actions")`` from outside further wrappers).
    """

    def __init__(self, env: gym.Env, variant: TextVariant) -> None:
        super().__init__(env)
        self.variant = variant
        self.actions = variant.actions
        self._rng = np.random.default_rng()
        self._missions: dict[str, str] = {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:  # an unseeded reset keeps drawing from the last seeded generator
            self._rng = np.random.default_rng(seed)
        self._missions = {}
        return obs, self._rewrite(info)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, self._rewrite(info)

    def _rewrite(self, info: dict[str, Any]) -> dict[str, Any]:
        v = self.variant
        info = dict(info)
        if v.rewrite_description is not None and "descriptions" in info:
            info["descriptions"] = [v.rewrite_description(s) for s in info["descriptions"]]
        if v.rewrite_mission is not None and "mission" in info:
            mission = info["mission"]
            if mission not in self._missions:
                self._missions[mission] = v.rewrite_mission(mission, self._rng)
            info["mission"] = self._missions[mission]
        return info


def make_variant_env(variant: TextVariant, **kwargs: Any) -> gym.Env:
    """``gym.make(variant.env_id, **kwargs)`` wrapped in :class:`TextVariantWrapper`."""
    return TextVariantWrapper(make_text_env(variant.env_id, **kwargs), variant)


def glam_generalisation_suite(
    env_id: str = "BabyAI-Text-GoToLocal-v0", invented_colours: bool = False
) -> list[TextVariant]:
    """GLAM's tests for a policy trained on ``env_id``, in ``SUITE_NAMES`` order (module docstring).

    ``invented_colours`` also replaces colours by nonce words in ``invented-words``.
    """
    invented = {**INVENTED_OBJECTS, **(INVENTED_COLOURS if invented_colours else {})}
    renamed, nonce = WordSubstitution(RENAMED_OBJECTS), WordSubstitution(invented)
    return [
        TextVariant("original", env_id),
        TextVariant("mixed-test-local", "BabyAI-Text-MixedTestLocal-v0"),
        TextVariant("renamed-objects", env_id, renamed, renamed),
        TextVariant("invented-words", env_id, nonce, nonce),
        TextVariant("rephrased-goals", env_id, rewrite_mission=rephrase_goal),
        TextVariant("new-actions", env_id, actions=NEW_ACTIONS),
        TextVariant("french", env_id, french_description, french_mission, actions=FRENCH_ACTIONS),
    ]


# -- word substitution ---------------------------------------------------------------------------


def _indefinite(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


class WordSubstitution:
    """Replace whole words (``"box"``, never inside ``"inbox"``) and fix an article just before them.

    ``"pick up a box"`` with ``{"box": "afze"}`` reads ``"pick up an afze"``. Usable as both a
    description and a mission rewrite (the generator is ignored). Picklable, for subprocess envs.
    """

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.mapping = dict(mapping)
        words = "|".join(re.escape(w) for w in sorted(self.mapping, key=len, reverse=True))
        self._pattern = re.compile(rf"\b(?:(?P<article>[Aa]n?) )?(?P<word>{words})\b")

    def _replace(self, m: re.Match[str]) -> str:
        new = self.mapping[m["word"]]
        article = m["article"]
        if article is None:
            return new
        fixed = _indefinite(new)
        return f"{fixed.capitalize() if article[0].isupper() else fixed} {new}"

    def __call__(self, text: str, rng: np.random.Generator | None = None) -> str:
        return self._pattern.sub(self._replace, text)

    def __repr__(self) -> str:
        return f"WordSubstitution({self.mapping!r})"


# -- BabyAI's instruction grammar ---------------------------------------------------------------
# MiniGrid's verifier builds every BabyAI mission from these pieces (ObjDesc.surface and the
# instructions' surface methods), so a parse covers all BabyAI levels, not only GLAM's.

_COLOURS = ("red", "green", "blue", "purple", "yellow", "grey")
_CONNECTORS = re.compile(r"(, then | after you | and )")
_CLAUSE = re.compile(r"(?P<verb>go to|pick up|open|put) (?P<obj>.+?)(?: next to (?P<fixed>.+))?")
_OBJECT = re.compile(
    rf"(?P<det>the|a) (?:(?P<colour>{'|'.join(_COLOURS)}) )?(?P<type>key|ball|box|door|object)"
    r"(?: (?P<loc>in front of you|behind you|on your left|on your right))?"
)


@dataclass(frozen=True)
class _Clause:
    verb: str
    obj: str
    fixed: str | None  # "put <obj> next to <fixed>"


def _parse_mission(mission: str) -> tuple[list[_Clause], list[str]] | None:
    """Clauses and the connectors between them, or ``None`` outside BabyAI's grammar."""
    parts = _CONNECTORS.split(mission)
    clauses = []
    for text in parts[0::2]:
        m = _CLAUSE.fullmatch(text)
        if m is None or (m["verb"] == "put") != (m["fixed"] is not None):
            return None
        if not all(_OBJECT.fullmatch(o) for o in (m["obj"], m["fixed"]) if o is not None):
            return None
        clauses.append(_Clause(m["verb"], m["obj"], m["fixed"]))
    return clauses, parts[1::2]


# -- rephrased goals -----------------------------------------------------------------------------

# GLAM's two intros (replacing "Goal of the agent" in its prompt) come first; then others.
GOAL_INTROS: tuple[str, ...] = (
    "I would like the agent to {}",
    "You have to {}",
    "Your task is to {}",
    "The agent must {}",
    "Please {}",
)
# Each clause's verb is redrawn among these; the original wording is one of the choices.
VERB_PARAPHRASES: dict[str, tuple[str, ...]] = {
    "go to": ("go to {obj}", "walk to {obj}", "head to {obj}", "move to {obj}"),
    "pick up": ("pick up {obj}", "grab {obj}", "pick {obj} up", "take hold of {obj}"),
    "open": ("open {obj}", "open up {obj}", "get {obj} open"),
    "put": ("put {obj} next to {fixed}", "place {obj} next to {fixed}", "move {obj} next to {fixed}",
            "put {obj} beside {fixed}"),
}


def _choice(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def rephrase_goal(mission: str, rng: np.random.Generator) -> str:
    """``mission`` under a random intro with each verb paraphrased; the objects are kept verbatim.

    A mission outside BabyAI's grammar only gets the intro.
    """
    parsed = _parse_mission(mission)
    if parsed is not None:
        clauses, connectors = parsed
        texts = [_choice(rng, VERB_PARAPHRASES[c.verb]).format(obj=c.obj, fixed=c.fixed) for c in clauses]
        mission = texts[0] + "".join(sep + text for sep, text in zip(connectors, texts[1:]))
    return _choice(rng, GOAL_INTROS).format(mission)


# -- French --------------------------------------------------------------------------------------

# noun, feminine
_FR_NOUNS: dict[str, tuple[str, bool]] = {
    "key": ("clé", True), "ball": ("balle", True), "box": ("boîte", True), "door": ("porte", True),
    "object": ("objet", False), "goal": ("but", False), "lava": ("lave", True), "wall": ("mur", False),
}
# masculine, feminine
_FR_COLOURS: dict[str, tuple[str, str]] = {
    "red": ("rouge", "rouge"), "green": ("vert", "verte"), "blue": ("bleu", "bleue"),
    "purple": ("violet", "violette"), "yellow": ("jaune", "jaune"), "grey": ("gris", "grise"),
}
_FR_DOOR_STATES = {"open": "ouverte", "closed": "fermée", "locked": "verrouillée"}
_FR_LOCATIONS = {"in front of you": "devant toi", "behind you": "derrière toi",
                 "on your left": "à ta gauche", "on your right": "à ta droite"}
_FR_DIRECTIONS = {"left": "à gauche", "right": "à droite", "forward": "devant"}
# (imperative, past infinitive) for "go to B after you <past>"
_FR_VERBS = {"go to": ("va", "être allé"), "pick up": ("ramasse", "avoir ramassé"),
             "open": ("ouvre", "avoir ouvert"), "put": ("mets", "avoir mis")}
_FR_CONNECTORS = {", then ": ", puis ", " and ": " et ", " after you ": " après "}
# preposition -> determiner -> contracted form ("à le" is "au", "de une" is "d'une")
_FR_CONTRACT = {
    None: {"le": "le ", "la": "la ", "l'": "l'", "un": "un ", "une": "une "},
    "à": {"le": "au ", "la": "à la ", "l'": "à l'", "un": "à un ", "une": "à une "},
    "de": {"le": "du ", "la": "de la ", "l'": "de l'", "un": "d'un ", "une": "d'une "},
}


def _fr_noun_phrase(det: str, kind: str, colour: str | None, state: str | None = None,
                    prep: str | None = None) -> str:
    """French noun phrase with agreement: ``("the", "key", "green")`` -> ``"la clé verte"``."""
    noun, feminine = _FR_NOUNS[kind]
    if det == "the":
        article = "l'" if noun[0] in "aeiouéè" else ("la" if feminine else "le")
    else:
        article = "une" if feminine else "un"
    words = [noun]
    if colour is not None:
        words.append(_FR_COLOURS[colour][feminine])
    if state is not None:
        words.append(_FR_DOOR_STATES[state])
    return _FR_CONTRACT[prep][article] + " ".join(words)


def _fr_object(obj: str, prep: str | None = None) -> str:
    m = _OBJECT.fullmatch(obj)
    assert m is not None  # _parse_mission checked it
    text = _fr_noun_phrase(m["det"], m["type"], m["colour"], prep=prep)
    return f"{text} {_FR_LOCATIONS[m['loc']]}" if m["loc"] else text


def _fr_clause(c: _Clause, past: bool) -> str:
    verb = _FR_VERBS[c.verb][past]
    if c.verb == "go to":
        return f"{verb} {_fr_object(c.obj, prep='à')}"
    if c.verb == "put":
        return f"{verb} {_fr_object(c.obj)} à côté {_fr_object(c.fixed or '', prep='de')}"
    return f"{verb} {_fr_object(c.obj)}"


def french_mission(mission: str, rng: np.random.Generator | None = None) -> str:
    """BabyAI's mission in French: ``"put the red ball next to a blue box"`` ->
    ``"mets la balle rouge à côté d'une boîte bleue"``; "A after you B" -> "A après avoir B".
    ``rng`` is unused (the translation is deterministic); it makes this a mission rewrite.

    Raises:
        ValueError: the mission is not in BabyAI's instruction grammar (another MiniGrid env).
    """
    return _french_mission(mission)


@lru_cache(maxsize=4096)
def _french_mission(mission: str) -> str:
    parsed = _parse_mission(mission)
    if parsed is None:
        raise ValueError(
            f"cannot translate mission {mission!r}: the French variant covers BabyAI's instruction "
            "grammar (go to / pick up / open / put ... next to, joined by ', then', 'after you', 'and')"
        )
    clauses, connectors = parsed
    out, past = _fr_clause(clauses[0], past=False), False
    for sep, clause in zip(connectors, clauses[1:]):
        past = sep == " after you " or (past and sep == " and ")  # "après avoir A et avoir B"
        out += _FR_CONNECTORS[sep] + _fr_clause(clause, past)
    return out


_EN_NOUN_PHRASE = (
    rf"an? (?:(?P<state>open|closed|locked) )?(?P<colour>{'|'.join(_COLOURS)}) "
    r"(?P<type>key|ball|box|door|goal|lava)"
)
_EN_CARRY = re.compile(rf"You carry {_EN_NOUN_PHRASE}")
_EN_WALL = re.compile(r"You see a wall (?P<where>.+)")
_EN_SEE = re.compile(rf"You see {_EN_NOUN_PHRASE} (?P<where>.+)")
_EN_OFFSET = re.compile(r"(\d+) steps? (left|right|forward)")


def _fr_where(where: str, sentence: str) -> str:
    parts = [_EN_OFFSET.fullmatch(p) for p in where.split(" and ")]
    if not all(parts):
        raise ValueError(f"cannot translate description {sentence!r}: unknown offset {where!r}")
    return "à " + " et ".join(f"{m[1]} pas {_FR_DIRECTIONS[m[2]]}" for m in parts if m)


@lru_cache(maxsize=8192)
def french_description(sentence: str) -> str:
    """One of :mod:`llmrl.envs.describe`'s sentences in French, worded after GLAM's French mode:
    ``"You see a red ball 2 steps left and 3 steps forward"`` ->
    ``"Tu vois une balle rouge à 2 pas à gauche et 3 pas devant"``. Unlike GLAM's (always "une",
    colours always feminine, locked doors "fermée à clef"), articles and colours agree with the
    noun ("un but vert") and a locked door is "verrouillée".

    Raises:
        ValueError: the sentence is not one that ``describe`` writes.
    """
    if m := _EN_CARRY.fullmatch(sentence):
        return "Tu portes " + _fr_noun_phrase("a", m["type"], m["colour"], m["state"])
    if m := _EN_WALL.fullmatch(sentence):
        return "Tu vois un mur " + _fr_where(m["where"], sentence)
    if m := _EN_SEE.fullmatch(sentence):
        return f"Tu vois {_fr_noun_phrase('a', m['type'], m['colour'], m['state'])} {_fr_where(m['where'], sentence)}"
    raise ValueError(f"cannot translate description {sentence!r}: not a sentence llmrl.envs.describe writes")
