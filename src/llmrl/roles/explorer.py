"""The LM as explorer: ELLM's suggested goals and their similarity reward (Du et al. 2023).

At every step the frozen LM reads the state caption and suggests goals with a few-shot bullet
prompt; the agent earns an intrinsic reward when the caption of what its action did is close to
one of those goals (cosine similarity of MiniLM embeddings above a threshold). Each goal pays at
most once per episode, and only when the action succeeded. The LM never sees a reward and is
never trained; it only says what a person would find worth doing here.

Goal sources (``GoalExplorer(source, ...)``), as ELLM defines its method and baselines:

* ``"llm"``      — the LM's suggestions (ELLM);
* ``"novelty"``  — every goal of ``all_goals`` (ELLM: its 139 verb-noun action names) not yet
  achieved this episode, paid on the *attempt*: the action's name is matched, whether it
  succeeded or not (ELLM's novelty baseline);
* ``"oracle"``   — the goals the environment's oracle proposes now (``info["oracle_goals"]``:
  ELLM's prerequisite oracle in Crafter-Text);
* ``"achievement-novelty"`` — every achievement not yet unlocked this episode (``achievements``
  mask), paid on success: Crafter's own +1-per-new-achievement signal, not ELLM's baseline;
* ``"feasible-achievements"`` — every achievement one action away (``feasible`` mask), paid on
  success: a tighter oracle than ELLM's;
* ``"none"``     — no goals, no intrinsic reward.

Goals achieved this episode are dropped from the suggestions, and a goal's equivalent
(``equivalents``; ELLM: "eat cow" = "attack cow") goes with it. Captions come from the
environment's ``info``: ``caption`` (state), ``transition_caption`` ("" when the action failed),
``action_success``, ``action_name`` and, for the achievement sources, masks over an achievement
list whose captions ``goal_captions`` gives. The reward plugs into a run in either of
two ways: as a Gymnasium wrapper (``ELLMWrapper``, ``ELLMVectorWrapper``) on any environment that
provides those infos, one LM call per step; or as the intrinsic reward of an off-policy learner
(:class:`GoalBonus`, for :class:`llmrl.rl.offpolicy.OffPolicyLoop`), which labels lazily so one
LM call answers many captions.

LM and embedding calls go through :class:`llmrl.lm.cache.CachedLM` when given one; every call is
counted and timed (``GoalExplorer.stats``) so a run can report its cache hit rate and the LM's
share of wall time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from llmrl.envs.vector import unstack_infos
from llmrl.lm.base import LanguageModel

SOURCES = ("llm", "novelty", "oracle", "achievement-novelty", "feasible-achievements", "none")
QUALITY = ("good", "poorly_timed", "bad", "invalid")
"""How a suggested goal is judged (ELLM's logging): in the oracle's goals now; a valid action the
oracle does not propose now; one of the actions, but one that can do nothing; not an action."""

# ELLM's Crafter prompt, in our words with its facts: the valid verbs on one line, the instruction
# on the next, then two worked examples (what is in view and targeted, the second with a plant
# in the inventory; no needs shown) with the goals ELLM lists for them, Place plant included.
PROMPT_HEADER = (
    "Valid actions: sleep, eat, attack, chop, drink, place, make, mine\n"
    "You play a game as the player. List the best things the player can do now, given what it sees "
    "and what it holds in its inventory, using only valid actions and objects.\n\n"
)
FEW_SHOT = (
    ("You see plant, tree, and skeleton. You are targeting skeleton.",
     ("Eat plant", "Chop tree", "Attack skeleton")),
    ("You see water, grass, cow, and diamond. You are targeting grass. You have in your inventory plant.",
     ("Drink water", "Chop grass", "Attack cow", "Place plant")),
)
QUESTION = " What do you do?\n"


def goal_prompt(caption: str, header: str = PROMPT_HEADER, examples=FEW_SHOT) -> str:
    """ELLM's bullet prompt for one state caption; the LM continues with "- goal" lines."""
    shots = "".join(f"{obs}{QUESTION}" + "".join(f"- {g}\n" for g in goals) + "\n" for obs, goals in examples)
    return header + shots + caption + QUESTION


_BULLET = re.compile(r"(?:[-*\u2022]|\d+[.)])\s*")  # matched at the start of a stripped line
MAX_REPLY_CHARS = 4096  # a goal list is a few short lines; the rest of a runaway reply is not read
MAX_LINE_CHARS = 200


def normalise_goal(text: str) -> str:
    """Lower case, punctuation and articles dropped: "Chop the tree." -> "chop tree"."""
    words = re.sub(r"[^a-z ]", " ", text.lower()).split()
    return " ".join(w for w in words if w not in ("a", "an", "the", "some"))


def parse_goals(text: str, max_goals: int = 8, max_words: int = 6) -> list[str] | None:
    """The goals in an LM reply: one per bullet line, normalised, deduplicated, in order.

    Returns ``None`` when the reply holds no usable bullet (the caller counts it as malformed).
    A line with no bullet ends the list, as does a line longer than ``max_words`` words, since
    small LMs drift into prose after the bullets.
    """
    goals: list[str] = []
    for line in text[:MAX_REPLY_CHARS].splitlines():
        line = line.strip()
        if not line:
            if goals:
                break
            continue
        match = _BULLET.match(line)
        if match is None:
            break
        if len(line) > MAX_LINE_CHARS:  # prose, not a goal (and normalising it would cost)
            continue
        goal = normalise_goal(line[match.end():])
        if not goal or len(goal.split()) > max_words:
            continue
        if goal not in goals:
            goals.append(goal)
        if len(goals) == max_goals:
            break
    return goals or None


@dataclass
class ExplorerConfig:
    """How goals are suggested, paid and (for the LM) batched."""

    threshold: float = 0.99
    """Pay only when the best cosine similarity exceeds this (ELLM's Crafter value: 0.99)."""
    max_new_tokens: int = 32
    """Tokens the LM may generate per suggestion."""
    temperature: float = 0.0
    """ELLM samples at 0.1; greedy (0) makes suggestions a function of the caption, so the cache holds."""
    max_goals: int = 8
    """Goals kept from one reply."""
    lm_batch: int = 16
    """New captions per LM call when labelling lazily (:class:`GoalBonus`)."""
    max_lag: int = 64
    """Vector steps a transition may wait for its LM label when labelling lazily."""

    def __post_init__(self) -> None:
        if not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {self.threshold}")
        for name in ("max_goals", "lm_batch", "max_lag"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_new_tokens < 1 or self.temperature < 0:
            raise ValueError("max_new_tokens must be at least 1 and temperature at least 0")


@dataclass
class ExplorerStats:
    """Counters for a run's report."""

    steps: int = 0
    suggested_states: int = 0
    lm_prompts: int = 0
    lm_calls: int = 0
    lm_new_prompts: int = 0
    malformed: int = 0
    goals_suggested: int = 0
    rewards_paid: int = 0
    lm_seconds: float = 0.0
    embed_seconds: float = 0.0
    paid: dict[str, int] = field(default_factory=dict)
    quality: dict[str, int] = field(default_factory=dict)
    """Suggestions by ``QUALITY`` over every state suggested for (when the env names its oracle goals)."""

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("paid", "quality")}
        out["lm_cache_hit_rate"] = 1 - self.lm_new_prompts / self.lm_prompts if self.lm_prompts else float("nan")
        return out


class GoalExplorer:
    """Suggests goals for a batch of environments and pays ELLM's similarity reward.

    Call :meth:`suggest` with the infos of the states the agents are about to act in, then
    :meth:`reward` with the infos the step returned; :meth:`end_episode` forgets what was paid.

    Args:
        source: where goals come from: "llm", "novelty", "oracle" or "none".
        n_envs: environments in the batch.
        config: an :class:`ExplorerConfig` (defaults: ELLM's).
        lm: the frozen LM (needed for source "llm"); also the embedder for every source.
        goal_captions: for the achievement sources, the caption of each entry of the
            ``achievements`` / ``feasible`` masks (Crafter-Text: ``ACHIEVEMENT_CAPTIONS``).
        prompt: caption -> the LM's prompt (default: ELLM's Crafter prompt, :func:`goal_prompt`;
            another environment brings its own examples, e.g. ``partial(goal_prompt, header=...,
            examples=...)``).
        all_goals: every goal there is (ELLM: the action names); the novelty source proposes them,
            and suggestion quality counts a goal outside them as invalid.
        valid_goals: the goals that can do something (Crafter-Text: ``VALID_GOALS``), for quality.
        equivalents: goal -> the goal that counts as the same (Crafter-Text: ``EQUIVALENT_GOALS``).
    """

    def __init__(
        self,
        source: str,
        n_envs: int,
        config: ExplorerConfig | None = None,
        lm: LanguageModel | None = None,
        goal_captions: Sequence[str] = (),
        prompt: Callable[[str], str] | None = None,
        all_goals: Sequence[str] = (),
        valid_goals: Sequence[str] = (),
        equivalents: dict[str, str] | None = None,
    ) -> None:
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        if source == "llm" and lm is None:
            raise ValueError("source 'llm' needs a language model: pass lm=load_model(...)")
        if source in ("achievement-novelty", "feasible-achievements") and not goal_captions:
            raise ValueError(f"source {source!r} needs goal_captions, one per achievement mask entry")
        if source == "novelty" and not all_goals:
            raise ValueError("source 'novelty' needs all_goals: every goal there is (ELLM: the action names)")
        self.all_goals, self.valid_goals = tuple(all_goals), frozenset(valid_goals)
        self.equivalents = dict(equivalents or {})
        self.pay_on_attempt = source == "novelty"  # ELLM turns the success check off for this baseline
        self.source = source
        self.config = config or ExplorerConfig()
        self.n_envs = n_envs
        self.lm = lm
        self.goal_captions = tuple(goal_captions)
        self.prompt = prompt or goal_prompt
        self.stats = ExplorerStats()
        self._suggestions: dict[str, tuple[str, ...]] = {}  # caption -> goals, this process
        self._vectors: dict[str, np.ndarray] = {}  # text -> unit embedding, this process
        self.goals: list[tuple[str, ...]] = [() for _ in range(n_envs)]
        self.paid: list[set[str]] = [set() for _ in range(n_envs)]

    # ------------------------------------------------------------------ goals
    def suggest(self, infos: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
        """Goals for each environment's current state (kept until the next call)."""
        source = self.source
        if source == "none":
            goals = [() for _ in infos]
        elif source == "llm":
            goals = self._ask_lm([info["caption"] for info in infos])
        elif source == "novelty":
            goals = [self.all_goals for _ in infos]
        elif source == "oracle":
            goals = [tuple(info["oracle_goals"]) for info in infos]
        else:
            key = "achievements" if source == "achievement-novelty" else "feasible"
            goals = []
            for info in infos:
                mask = np.asarray(info[key], bool)
                chosen = ~mask if source == "achievement-novelty" else mask
                goals.append(tuple(dict.fromkeys(c for c, m in zip(self.goal_captions, chosen) if m)))
        # Goals achieved this episode are no longer suggested (ELLM's novelty filter).
        goals = [tuple(g for g in gs if g not in self.paid[i]) for i, gs in enumerate(goals)]
        if source == "llm":
            self._judge(goals, infos)
        self.goals = goals
        self.stats.suggested_states += len(goals)
        self.stats.goals_suggested += sum(len(g) for g in goals)
        return goals

    def _judge(self, goals: list[tuple[str, ...]], infos: Sequence[dict[str, Any]]) -> None:
        """Count the suggestions by ``QUALITY`` against the oracle's goals for the same state."""
        q = self.stats.quality
        for gs, info in zip(goals, infos):
            if "oracle_goals" not in info:
                continue
            oracle = set(info["oracle_goals"])
            for g in gs:
                if g in oracle or self.equivalents.get(g) in oracle:
                    kind = "good"
                elif g in self.valid_goals:
                    kind = "poorly_timed"
                elif g in self.all_goals:
                    kind = "bad"
                else:
                    kind = "invalid"
                q[kind] = q.get(kind, 0) + 1

    def _ask_lm(self, captions: list[str]) -> list[tuple[str, ...]]:
        self.stats.lm_prompts += len(captions)
        self.prefetch(captions)
        return [self._suggestions[c] for c in captions]

    def unknown(self, captions: Sequence[str]) -> list[str]:
        """The captions the LM has not been asked about in this process."""
        return [c for c in dict.fromkeys(captions) if c not in self._suggestions]

    def prefetch(self, captions: Sequence[str]) -> None:
        """Ask the LM about every unknown caption in one batched call (suggest() then answers
        from memory)."""
        todo = self.unknown(captions)
        if not todo:
            return
        cfg = self.config
        start = time.perf_counter()
        hits_before = self.lm.stats.cache_hits
        replies = self.lm.generate(
            [self.prompt(c) for c in todo],
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            stop=["\n\n"],
        )
        self.stats.lm_seconds += time.perf_counter() - start
        self.stats.lm_calls += 1
        # What the persistent cache answered is not new work.
        self.stats.lm_new_prompts += len(todo) - (self.lm.stats.cache_hits - hits_before)
        for caption, reply in zip(todo, replies):
            goals = parse_goals(reply.texts[0], cfg.max_goals)
            if goals is None:
                self.stats.malformed += 1
            self._suggestions[caption] = tuple(goals or ())

    @property
    def suggestions(self) -> dict[str, tuple[str, ...]]:
        """Every caption asked about in this process and the goals the LM gave for it."""
        return dict(self._suggestions)

    # ------------------------------------------------------------------ reward
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit MiniLM embeddings, memoised in this process (and in the LM cache, if cached)."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if todo:
            start = time.perf_counter()
            if self.lm is not None:
                vectors = self.lm.embed(todo)
            else:
                from llmrl.lm.embed import default_embedder

                vectors = default_embedder().embed(todo)
            self.stats.embed_seconds += time.perf_counter() - start
            self._vectors.update(zip(todo, vectors))
        if not texts:
            return np.zeros((0, self.embedding_dim), np.float32)
        return np.stack([self._vectors[t] for t in texts])

    @property
    def embedding_dim(self) -> int:
        """Size of the goal embeddings (read from the embedder, not assumed)."""
        if not self._vectors:
            self.embed(["goal"])
        return len(next(iter(self._vectors.values())))

    def reward(self, infos: Sequence[dict[str, Any]]) -> np.ndarray:
        """ELLM's intrinsic reward for the step just taken, against the goals of :meth:`suggest`."""
        rewards = np.zeros(len(infos), np.float32)
        self.stats.steps += len(infos)
        for i, info in enumerate(infos):
            if self.pay_on_attempt:
                caption = info.get("action_name", "")
            else:
                caption = info.get("transition_caption", "")
                if not info.get("action_success", True):
                    caption = ""
            open_goals = [g for g in self.goals[i] if g not in self.paid[i]]
            if not caption or not open_goals:
                continue
            sims = self.embed(open_goals) @ self.embed([caption])[0]
            best = int(np.argmax(sims))
            if sims[best] > self.config.threshold:
                rewards[i] = float(sims[best])
                goal = open_goals[best]
                self.paid[i].add(goal)
                if goal in self.equivalents:  # ELLM: the equivalent goal is achieved too
                    self.paid[i].add(self.equivalents[goal])
                self.stats.rewards_paid += 1
                self.stats.paid[goal] = self.stats.paid.get(goal, 0) + 1
        return rewards

    def end_episode(self, index: int) -> None:
        """Environment ``index`` starts a new episode: its goals may pay again."""
        self.paid[index] = set()

    def goal_vectors(self, goals: Sequence[Sequence[str]] | None = None) -> np.ndarray:
        """The mean embedding of each environment's goals (zeros without goals): what a
        goal-conditioned agent reads."""
        goals = self.goals if goals is None else goals
        out = np.zeros((len(goals), self.embedding_dim), np.float32)
        for i, gs in enumerate(goals):
            if gs:
                out[i] = self.embed(list(gs)).mean(axis=0)
        return out


class GoalBonus:
    """ELLM's reward as the intrinsic reward of an off-policy learner
    (:class:`llmrl.rl.offpolicy.Bonus`), with the LM's goals asked for lazily.

    The agent does not need its goals to act (unless goal-conditioned), only the reward does, and
    a transition's reward is needed only when it enters the replay. So with ``lazy=True`` new
    state captions accumulate (``ready`` once ``lm_batch`` are waiting, or the learner's
    ``max_lag`` runs out) and one batched ``generate`` answers all of them in ``prepare``; the
    waiting transitions are then paid in order, each what it would have been paid at once (the
    learner's updates wait with them: see :mod:`llmrl.rl.offpolicy`). Generation on a CPU costs
    about the same for 8 prompts as for one (docs/benchmarks.md).
    """

    def __init__(self, explorer: GoalExplorer, lazy: bool = True, lm_threads: int = 0) -> None:
        self.explorer = explorer
        self.lazy = lazy and explorer.source == "llm"
        self.lm_threads = lm_threads
        self.unknown: set[str] = set()

    def _note(self, infos: Sequence[dict[str, Any]]) -> None:
        if self.lazy:
            self.unknown.update(self.explorer.unknown([info["caption"] for info in infos]))

    def begin(self, infos: Sequence[dict[str, Any]]) -> None:
        self._note(infos)

    def observe(self, step: Any, next_infos: Sequence[dict[str, Any]]) -> None:
        self._note(next_infos)

    def ready(self) -> bool:
        return not self.lazy or len(self.unknown) >= self.explorer.config.lm_batch

    def prepare(self) -> None:
        if not self.unknown:
            return
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(self.lm_threads or threads)  # the env workers idle while the LM writes
        try:
            self.explorer.prefetch(sorted(self.unknown))
        finally:
            torch.set_num_threads(threads)
        self.unknown.clear()

    def reward(self, step: Any) -> np.ndarray:
        self.explorer.suggest(step.state_infos)
        return self.explorer.reward(step.infos)

    def end_episode(self, i: int) -> None:
        self.explorer.end_episode(i)

    def learn(self, batch: Any) -> None:
        pass


class ELLMWrapper(gym.Wrapper):
    """Adds ELLM's intrinsic reward to one captioned environment.

    reward = ``extrinsic_weight`` * env reward + ``intrinsic_weight`` * similarity reward;
    ``info["goals"]`` holds the goals suggested for the state just left and ``info["intrinsic"]``
    what they paid.
    """

    def __init__(self, env: gym.Env, explorer: GoalExplorer, extrinsic_weight: float = 1.0,
                 intrinsic_weight: float = 1.0) -> None:
        super().__init__(env)
        if explorer.n_envs != 1:
            raise ValueError("ELLMWrapper wraps one environment: build the GoalExplorer with n_envs=1")
        self.explorer = explorer
        self.weights = (extrinsic_weight, intrinsic_weight)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.explorer.end_episode(0)
        info["goals"] = self.explorer.suggest([info])[0]
        return obs, info

    def step(self, action):
        goals = self.explorer.goals[0]
        obs, reward, terminated, truncated, info = self.env.step(action)
        intrinsic = float(self.explorer.reward([info])[0])
        info["goals"], info["intrinsic"] = goals, intrinsic
        if terminated or truncated:
            self.explorer.end_episode(0)
        else:
            self.explorer.suggest([info])
        return obs, self.weights[0] * float(reward) + self.weights[1] * intrinsic, terminated, truncated, info


class ELLMVectorWrapper(gym.vector.VectorWrapper):
    """ELLM's intrinsic reward on a vector env that resets in the same step
    (``AutoresetMode.SAME_STEP``), with one batched LM call per step for all environments.

    ``infos["intrinsic"]`` holds the intrinsic rewards; ``infos["goals"]`` the goals each
    environment's agent now acts under (an object array of tuples).
    """

    def __init__(self, env: gym.vector.VectorEnv, explorer: GoalExplorer, extrinsic_weight: float = 1.0,
                 intrinsic_weight: float = 1.0) -> None:
        super().__init__(env)
        if explorer.n_envs != env.num_envs:
            raise ValueError(f"the GoalExplorer serves {explorer.n_envs} envs, the vector env has {env.num_envs}")
        self.explorer = explorer
        self.weights = (extrinsic_weight, intrinsic_weight)

    def reset(self, **kwargs):
        obs, infos = self.env.reset(**kwargs)
        for i in range(self.num_envs):
            self.explorer.end_episode(i)
        infos["goals"] = _as_objects(self.explorer.suggest(unstack_infos(infos, self.num_envs)))
        return obs, infos

    def step(self, actions):
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        done = np.logical_or(terminated, truncated)
        # A finished episode's last transition is in final_info; infos already holds the new episode.
        step_infos = unstack_infos(infos, self.num_envs)
        if done.any():
            final = unstack_infos(infos["final_info"], self.num_envs)
            step_infos = [final[i] if done[i] else step_infos[i] for i in range(self.num_envs)]
        intrinsic = self.explorer.reward(step_infos)
        for i in np.flatnonzero(done):
            self.explorer.end_episode(int(i))
        infos["intrinsic"] = intrinsic
        infos["goals"] = _as_objects(self.explorer.suggest(unstack_infos(infos, self.num_envs)))
        return obs, self.weights[0] * rewards + self.weights[1] * intrinsic, terminated, truncated, infos


def _as_objects(goals: list[tuple[str, ...]]) -> np.ndarray:
    out = np.empty(len(goals), object)
    out[:] = goals
    return out
