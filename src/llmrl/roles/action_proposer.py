"""The LM as action proposer (CALM, Yao et al., EMNLP 2020): in a text game the LM suggests a short
list of commands for the current state and an RL agent (a DRRN) learns which to take, so the agent
never needs the game's list of valid actions.

Three proposers share one call, ``propose(states) -> list of k commands per state``, where a
state is a :class:`TextState`:

- :class:`LMProposer` — the LM samples ``n_samples`` commands after a prompt of the objective, the
  room and the inventory (the state, not the last feedback, so that revisited states share one
  prompt and cost nothing the second time), then our shared-prefix scoring ranks the distinct
  ones by mean log-probability per token and the top ``k`` are kept (CALM: beam search, k = 30).
  Proposals are memoised per prompt, so revisited states cost nothing;
- :class:`AdmissibleProposer` — the game's valid commands (the oracle CALM compares with);
- :class:`RandomProposer` — ``k`` commands drawn from the game's verbs × its object names
  (what a proposer without knowledge of the state offers).

:func:`finetune_proposer` trains LoRA adapters on (state, next walkthrough command) pairs of the
training games: CALM fine-tuned GPT-2 on human transcripts; the games' walkthroughs are ours.

:class:`ActionProposals` is the role as a Gymnasium wrapper: any text-game env whose observation
and ``info`` carry the fields of :class:`TextState` gets ``info["candidates"]`` on every reset
and step, so any learner (the CALM recipe's DRRN, or yours) chooses among them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["ActionProposals", "AdmissibleProposer", "LMProposer", "RandomProposer", "TextState", "finetune_proposer",
           "proposer_prompt"]


@dataclass(frozen=True)
class TextState:
    """What a proposer sees of a text game's state."""

    objective: str
    description: str
    inventory: str
    feedback: str = ""
    last_action: str = ""
    admissible: tuple[str, ...] = ()
    entities: tuple[str, ...] = ()
    """the game's object names (the random proposer's vocabulary)"""

    @classmethod
    def of(cls, obs: dict[str, str], info: dict[str, Any], last_action: str = "",
           entities: Sequence[str] = ()) -> TextState:  # fmt: skip
        """From a text-game env's observation and info (llmrl.envs.textworld's fields)."""
        return cls(objective=obs["objective"], description=obs["description"], inventory=obs["inventory"],
                   feedback=obs["text"] if last_action else "", last_action=last_action,
                   admissible=tuple(info.get("admissible", ())), entities=tuple(entities))  # fmt: skip


INSTRUCTION = ("You are playing a text adventure game. Read the goal and the scene, then type the next command "
               "(one short imperative such as \"open the box\", \"go east\" or \"take the key from the table\").")  # fmt: skip


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[:chars].rsplit(" ", 1)[0] + " ..."


def proposer_prompt(state: TextState, examples: Sequence[tuple[TextState, str]] = ()) -> str:
    """The proposer's prompt: the instruction, worked examples (state, command) and the state."""

    def block(s: TextState) -> str:
        lines = [f"Goal: {_clip(s.objective, 400)}", f"Scene: {_clip(s.description, 500)}",
                 f"Inventory: {_clip(s.inventory, 160)}"]  # fmt: skip
        return "\n".join(lines) + "\nNext command:"

    parts = [INSTRUCTION]
    parts += [f"{block(s)} {a}" for s, a in examples]
    parts.append(block(state))
    return "\n\n".join(parts)


_COMMAND = re.compile(r"[a-z][a-z' -]*[a-z]")


def normalise_command(text: str) -> str:
    """The first line of a generation as a command: lower case, articles dropped, one space."""
    line = text.strip().split("\n")[0].strip().lower().rstrip(".!")
    line = re.sub(r"\b(the|a|an)\b", " ", line)
    match = _COMMAND.search(line)
    return " ".join(match.group(0).split()) if match else ""


@dataclass
class LMProposer:
    """Sample, then rank by the LM's own likelihood; keep the top ``k`` (see the module docstring)."""

    lm: Any
    k: int = 8
    n_samples: int = 12
    temperature: float = 0.7
    top_p: float = 0.9
    """nucleus sampling: from the full distribution (T = 1, top-p = 1) gemma-3-270m wrote mostly
    non-commands; CALM itself decodes by beam search"""
    max_new_tokens: int = 10
    examples: Sequence[tuple[TextState, str]] = ()
    seed: int = 0
    memo: dict[str, list[str]] = field(default_factory=dict)
    calls: int = 0
    """prompts sent to the LM (memo misses)"""

    def propose(self, states: Sequence[TextState]) -> list[list[str]]:
        prompts = [proposer_prompt(s, self.examples) for s in states]
        todo = list(dict.fromkeys(p for p in prompts if p not in self.memo))
        if todo:
            self.calls += len(todo)
            gens = self.lm.generate(todo, max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                                    top_p=self.top_p, n=self.n_samples, stop=["\n"], seed=self.seed)  # fmt: skip
            pools = []
            for g in gens:
                pool = [normalise_command(t) for t in g.texts]
                pools.append(list(dict.fromkeys(c for c in pool if c)) or ["look"])
            scores = self.lm.score(todo, [[" " + c for c in pool] for pool in pools])
            for prompt, pool, sc in zip(todo, pools, scores):
                per_token = np.asarray(sc.logprob) / np.maximum(np.asarray(sc.n_tokens), 1)
                order = np.argsort(-per_token, kind="stable")[: self.k]
                self.memo[prompt] = [pool[i] for i in order]
        return [list(self.memo[p]) for p in prompts]


class AdmissibleProposer:
    """The game's valid commands: the oracle action set."""

    calls = 0

    def propose(self, states: Sequence[TextState]) -> list[list[str]]:
        return [list(s.admissible) or ["look"] for s in states]


_DIRECTIONS = ("north", "south", "east", "west")


@dataclass
class RandomProposer:
    """``k`` commands drawn uniformly from verb-object templates over the game's object names."""

    k: int = 8
    seed: int = 0
    calls: int = 0

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def propose(self, states: Sequence[TextState]) -> list[list[str]]:
        out = []
        for s in states:
            names = list(s.entities) or ["thing"]
            pool = [f"go {d}" for d in _DIRECTIONS]
            pool += [f"{v} {n}" for v in ("take", "drop", "open", "close", "eat", "examine") for n in names]
            pool += [f"{v} {a} {p} {b}" for v, p in (("put", "on"), ("insert", "into"), ("unlock", "with"),
                                                        ("take", "from")) for a in names for b in names if a != b]  # fmt: skip
            idx = self.rng.choice(len(pool), size=min(self.k, len(pool)), replace=False)
            out.append([pool[i] for i in idx])
        return out


def finetune_proposer(lm: Any, pairs: Sequence[tuple[TextState, str]], examples: Sequence[tuple[TextState, str]],
                      epochs: int = 3, learning_rate: float = 2e-4, batch_size: int = 4, lora_r: int = 8,
                      seed: int = 0) -> list[float]:  # fmt: skip
    """LoRA-train ``lm`` (an HFLM) to write each pair's command after its prompt; returns the mean
    loss per epoch. The adapters stay active on ``lm`` afterwards."""
    from llmrl.lm.lora import train_completions

    if not pairs:
        raise ValueError("finetune_proposer needs at least one (state, command) pair")
    rows = [(proposer_prompt(s, examples), " " + a + "\n") for s, a in pairs]
    return train_completions(lm, rows, epochs, learning_rate, batch_size, lora_r, seed)


class ActionProposals(gym.Wrapper):
    """Adds ``info["candidates"]``, the proposer's commands for the new state (see the module
    docstring). ``entities`` is the object vocabulary of the env's games, by ``info["game"]``
    (the random proposer's; others ignore it)."""

    def __init__(self, env: gym.Env, proposer: Any, entities: Sequence[Sequence[str]] = ()) -> None:
        super().__init__(env)
        self.proposer = proposer
        self.entities = [tuple(e) for e in entities]
        self._last = ""

    def _with_candidates(self, obs: dict[str, str], info: dict[str, Any]) -> dict[str, Any]:
        state = TextState.of(obs, info, self._last, self.entities[info["game"]] if self.entities else ())
        return {**info, "candidates": self.proposer.propose([state])[0], "state": state}

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self._last = ""
        return obs, self._with_candidates(obs, info)

    def step(self, action: str):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._last = str(action)
        return obs, reward, terminated, truncated, self._with_candidates(obs, info)
