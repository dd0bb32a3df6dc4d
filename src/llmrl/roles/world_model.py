"""The LM as world model: it reads a text observation and an action and writes the next observation,
and a planner looks ahead with it in place of the environment.

:class:`LMWorldModel` predicts BabyAI-Text views (GLAM's sentences, one per seen object or wall)
few-shot from worked transitions, or zero-shot after :func:`finetune_world_model` has trained LoRA
adapters on collected transitions. :func:`transition_scores` compares a predicted view with the
true one sentence by sentence and splits the sentences in two: those about what the agent saw
before the action (their change is the action's doing, e.g. a turn moves every object) and those
the action newly revealed (no model can infer them from the view alone; ByteSized32's split of
action-driven and environment-driven changes has no counterpart in a static grid).

:class:`LookaheadPlanner` scores each action by the predicted next view's distance to the
mission's object, with any simulator: the true environment (a copy stepped forward), the LM, or
none (a uniformly random action).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LMWorldModel", "LookaheadPlanner", "distance_to", "finetune_world_model", "transition_scores",
           "wm_prompt"]  # fmt: skip

HEADER = ("A robot explores a grid world. Its view lists what it sees: walls and objects, with their offsets "
          "left, right and forward of the robot. After each action, the view is written anew.")  # fmt: skip
SEP = ". "


def _view(sentences: Sequence[str]) -> str:
    return SEP.join(sentences) if sentences else "You see nothing"


def parse_view(text: str) -> list[str]:
    """Sentences of a written view (the inverse of how prompts join them)."""
    out = [s.strip().rstrip(".") for s in text.strip().split(".")]
    return [s for s in out if s and s != "You see nothing"]


def wm_prompt(view: Sequence[str], action: str, examples: Sequence[tuple[Sequence[str], str, Sequence[str]]] = ()) -> str:
    blocks = [HEADER]
    for v, a, nxt in examples:
        blocks.append(f"View: {_view(v)}.\nAction: {a}\nNext view: {_view(nxt)}.")
    blocks.append(f"View: {_view(view)}.\nAction: {action}\nNext view:")
    return "\n\n".join(blocks)


@dataclass
class LMWorldModel:
    """Predicts the next view greedily; memoised per prompt."""

    lm: Any
    examples: Sequence[tuple[Sequence[str], str, Sequence[str]]] = ()
    max_new_tokens: int = 96
    memo: dict[str, list[str]] = field(default_factory=dict)
    calls: int = 0

    def predict(self, views: Sequence[Sequence[str]], actions: Sequence[str]) -> list[list[str]]:
        prompts = [wm_prompt(v, a, self.examples) for v, a in zip(views, actions)]
        todo = list(dict.fromkeys(p for p in prompts if p not in self.memo))
        if todo:
            self.calls += len(todo)
            for p, g in zip(todo, self.lm.generate(todo, max_new_tokens=self.max_new_tokens, stop=["\n"])):
                self.memo[p] = parse_view(g.texts[0])
        return [list(self.memo[p]) for p in prompts]


def transition_scores(before: Sequence[str], predicted: Sequence[str], truth: Sequence[str]) -> dict[str, Any]:
    """Exact match of the whole view, and per-sentence hits split into sentences about objects
    seen before the action and sentences about newly revealed ones."""
    seen = {_thing(s) for s in before}
    pred = set(predicted)
    known = [s for s in truth if _thing(s) in seen]
    new = [s for s in truth if _thing(s) not in seen]
    return {"exact": set(predicted) == set(truth), "known_hits": sum(s in pred for s in known), "known": len(known),
            "new_hits": sum(s in pred for s in new), "new": len(new), "predicted": len(pred),
            "correct": len(pred & set(truth))}  # fmt: skip


_OFFSET = re.compile(r"(\d+) steps? (left|right|forward)")


def _thing(sentence: str) -> str:
    """What a sentence is about ("a wall ... left" and "a red ball"): walls by side, objects by name."""
    head = sentence.split(" 1 step")[0].split(" steps")[0]
    head = re.sub(r" \d+$", "", head)
    if "wall" in head:
        side = next((d for d in ("left", "right", "forward") if sentence.endswith(d)), "")
        return f"wall {side}"
    return head


def distance_to(view: Sequence[str], target: str) -> float:
    """Steps (left/right + forward) from the robot to ``target`` ("red ball") in a view; inf when
    the view does not show it. 1 means right in front."""
    best = np.inf
    for s in view:
        if target in s and "wall" not in s:
            d = sum(int(n) for n, _ in _OFFSET.findall(s))
            if d:
                best = min(best, d)
    return float(best)


@dataclass
class LookaheadPlanner:
    """One-step lookahead over ``actions``: the action whose predicted view puts the target
    nearest; ties, and views without the target, are broken at random. ``simulator`` is
    ``"true"``, ``"lm"`` (needs ``world_model``) or ``"none"``."""

    simulator: str
    actions: Sequence[str] = ("turn left", "turn right", "go forward")
    world_model: LMWorldModel | None = None
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    sim_calls: int = 0

    def act(self, env: Any, view: Sequence[str], target: str) -> int:
        if self.simulator == "none":
            return int(self.rng.integers(len(self.actions)))
        if self.simulator == "true":
            dist = []
            for a in range(len(self.actions)):
                twin = copy.deepcopy(env)
                _, _, terminated, _, info = twin.step(a)
                dist.append(0.0 if terminated and info.get("success") else distance_to(info["descriptions"], target))
        elif self.simulator == "lm":
            assert self.world_model is not None, "the lm simulator needs a world_model"
            nexts = self.world_model.predict([view] * len(self.actions), list(self.actions))
            dist = [distance_to(v, target) for v in nexts]
        else:
            raise ValueError(f"simulator must be true, lm or none, got {self.simulator!r}")
        self.sim_calls += len(self.actions)
        d = np.asarray(dist)
        best = np.flatnonzero(d == d.min())
        return int(self.rng.choice(best))


def finetune_world_model(lm: Any, transitions: Sequence[tuple[Sequence[str], str, Sequence[str]]], epochs: int = 2,
                         learning_rate: float = 3e-4, batch_size: int = 8, lora_r: int = 8, seed: int = 0) -> list[float]:  # fmt: skip
    """LoRA-train ``lm`` to write each transition's next view after its zero-shot prompt; returns
    the mean token loss per epoch. The adapters stay on ``lm``."""
    from llmrl.lm.lora import train_completions

    if not transitions:
        raise ValueError("finetune_world_model needs transitions")
    pairs = [(wm_prompt(v, a), " " + _view(n) + ".\n") for v, a, n in transitions]
    return train_completions(lm, pairs, epochs, learning_rate, batch_size, lora_r, seed)
