"""The LM as policy: GLAM's prompt, and a distribution over action strings by their likelihood.

π(a | p) = softmax over the candidate actions of log p_LM(a | p), where log p_LM(a | p) is the sum of
the action's token log-probabilities after the prompt (Carta et al. 2023). Lamorel's early scorer
summed raw logits instead of log-probabilities; we score with a proper log-softmax.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from llmrl.agents.base import Agent
from llmrl.lm.base import LanguageModel, TrainableLM


PROMPT_STYLES = ("training", "joined")


def glam_prompt(
    actions: Sequence[str],
    mission: str,
    observations: Sequence[Sequence[str]],
    past_actions: Sequence[str],
    style: str = "training",
) -> str:
    """GLAM's prompt: the possible actions, the goal, then the last observations interleaved with the
    actions taken after them, ending on ``Action k: `` for the model to complete.

    ``observations`` holds up to 3 observations (oldest first, each a list of description
    sentences) and ``past_actions`` the actions taken after all but the last of them.

    ``style="training"`` is the prompt GLAM trains with: every description is followed by ", "
    (the last one too), so an observation reads ``Observation 0: d1, d2, \n Action 0: ``.
    ``style="joined"`` joins the descriptions with ", " and nothing after the last, as GLAM's
    hand-written test prompts do (this library's prompt before 2026-11).
    """
    if len(past_actions) != len(observations) - 1:
        raise ValueError("need one past action between consecutive observations")
    if style not in PROMPT_STYLES:
        raise ValueError(f"style must be one of {PROMPT_STYLES}, got {style!r}")
    # GLAM separates the parts with " \n " (space, newline, space).
    parts = [f"Possible action of the agent: {', '.join(actions)}", f" \n Goal of the agent: {mission}"]
    for k, descriptions in enumerate(observations):
        action = past_actions[k] if k < len(past_actions) else ""
        if style == "training":
            parts.append(f" \n Observation {k}: " + "".join(f"{d}, " for d in descriptions) + f"\n Action {k}: {action}")
        else:
            parts.append(f" \n Observation {k}: {', '.join(descriptions)} \n Action {k}: {action}")
    return "".join(parts)


class PromptHistory:
    """One environment's recent observations and actions, as GLAM's prompt keeps them.

    ``prompt`` appends the newest observation and renders the prompt; ``record`` stores the action
    taken after it. ``reset`` at every episode start (GLAM clears the history between episodes).
    """

    def __init__(self, actions: Sequence[str], n_observations: int = 3, style: str = "training") -> None:
        if n_observations < 1:
            raise ValueError(f"n_observations must be >= 1, got {n_observations}")
        if style not in PROMPT_STYLES:
            raise ValueError(f"style must be one of {PROMPT_STYLES}, got {style!r}")
        self.actions, self.style = tuple(actions), style
        self.observations: deque[list[str]] = deque(maxlen=n_observations)
        self.past_actions: deque[str] = deque(maxlen=n_observations - 1)

    def reset(self) -> None:
        self.observations.clear()
        self.past_actions.clear()

    def prompt(self, mission: str, descriptions: Sequence[str]) -> str:
        self.observations.append(list(descriptions))
        # Both deques are bounded, so the oldest action falls out with the observation it followed.
        return glam_prompt(self.actions, mission, list(self.observations), list(self.past_actions), self.style)

    def preview(self, mission: str, descriptions: Sequence[str]) -> str:
        """The prompt ``prompt`` would give, without adding the observation to the history."""
        observations = [*list(self.observations)[1 if len(self.observations) == self.observations.maxlen else 0:],
                        list(descriptions)]
        return glam_prompt(self.actions, mission, observations, list(self.past_actions), self.style)

    def record(self, action: str) -> None:
        self.past_actions.append(action)


class LLMPolicyAgent(Agent):
    """An LM policy over action strings: GLAM's agent, zero-shot or with a trained policy's LM.

    Each step it scores every action string after each environment's prompt in one batched
    ``score`` call and acts greedily (``greedy=True``) or by sampling from the softmax (GLAM
    evaluates by sampling).

    A greedy policy that reads one observation repeats itself wherever the view repeats (turning
    on the spot sees the same four views forever). ``break_loops=True`` states one rule against
    it: when a prompt comes back for the third time in an episode, the action is sampled from π
    instead of taken greedily (the first two visits stay greedy).
    """

    def __init__(
        self,
        lm: LanguageModel,
        actions: Sequence[str],
        greedy: bool = True,
        normalise_length: bool = False,
        n_observations: int = 3,
        seed: int = 0,
        name: str = "llm",
        prompt_style: str = "training",
        break_loops: bool = False,
    ) -> None:
        if prompt_style not in PROMPT_STYLES:
            raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, got {prompt_style!r}")
        self.lm = lm
        self.actions = tuple(actions)
        self.greedy = greedy
        self.normalise_length = normalise_length
        self.n_observations = n_observations
        self.seed = seed
        self.rngs: dict[int, np.random.Generator] = {}
        self.name = name
        self.prompt_style = prompt_style
        self.break_loops = break_loops
        self.history: dict[int, PromptHistory] = {}
        self.visits: dict[int, dict[str, int]] = {}

    def begin_episode(self, i: int, env: gym.Env, obs: Any, info: dict[str, Any], seed: int) -> None:
        self.history[i] = PromptHistory(self.actions, self.n_observations, self.prompt_style)
        self.rngs[i] = self.episode_rng(self.seed, seed)
        self.visits[i] = {}

    def prompt(self, i: int, info: dict[str, Any]) -> str:
        return self.history[i].prompt(info["mission"], info["descriptions"])

    def action_probs(self, prompts: Sequence[str]) -> np.ndarray:
        """π(a | prompt) for each prompt: shape (len(prompts), n_actions)."""
        scores = self.lm.score(prompts, self.actions)
        return np.stack([s.probs(self.normalise_length) for s in scores])

    def act(self, obs: Sequence[Any], infos: Sequence[dict[str, Any]], active: Sequence[int]) -> np.ndarray:
        prompts = [self.prompt(i, info) for i, info in zip(active, infos)]
        probs = self.action_probs(prompts)
        actions = np.empty(len(prompts), dtype=np.int64)
        for k, (i, prompt, p) in enumerate(zip(active, prompts, probs)):
            seen = self.visits[i][prompt] = self.visits[i].get(prompt, 0) + 1
            if self.greedy and not (self.break_loops and seen > 2):
                actions[k] = p.argmax()
            else:
                actions[k] = self.rngs[i].choice(len(self.actions), p=p)
        for i, a in zip(active, actions):
            self.history[i].record(self.actions[a])
        return actions

    def lm_stats(self) -> dict[str, float]:
        s = self.lm.stats
        return {
            "lm_calls": s.score_calls,
            "lm_contexts": s.scored_contexts,
            "cache_hits": s.cache_hits,
            "cache_misses": s.cache_misses,
        }


class ValueHead(torch.nn.Module):
    """GLAM's critic: an MLP (hidden -> 1024 -> 1024 -> 1, sigmoid activations) on the LM's final
    hidden state of the prompt's last token."""

    def __init__(self, hidden_size: int, width: int = 1024) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(hidden_size, width), torch.nn.Sigmoid(),
            torch.nn.Linear(width, width), torch.nn.Sigmoid(),
            torch.nn.Linear(width, 1),
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net(hidden).squeeze(-1)


class LMActorCritic(torch.nn.Module):
    """The trainable LM policy: π(a | prompt) over action strings, plus a value head.

    The LM is adapted with LoRA (peft) by default, so only the adapters and the value head train;
    ``lora=None`` fine-tunes the whole model. Log-probabilities come from the shared-prefix scorer
    with gradients on (``HFLM.score_tensors``): one forward pass per prompt, whatever the number
    of actions.
    """

    def __init__(
        self,
        lm: Any,
        actions: Sequence[str],
        lora: Any | None = "default",
        normalise_length: bool = False,
    ) -> None:
        super().__init__()
        from llmrl.lm.lora import add_lora, default_lora

        if not isinstance(lm, TrainableLM):
            raise TypeError(
                f"LMActorCritic trains a local transformers model (a TrainableLM such as HFLM), got "
                f"{type(lm).__name__}: load one with llmrl.lm.load_model('gemma-3-270m') or a local folder"
            )
        if lora == "default":
            lora = default_lora()
        if lora is not None:
            add_lora(lm, lora)
        self.lm = lm
        self.llm = lm.model  # registered, so .parameters() includes the LM's trainable weights
        self.actions = tuple(actions)
        self.normalise_length = normalise_length
        self.value_head = ValueHead(lm.hidden_size).to(lm.device)

    def forward(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(log π(· | prompt) of shape (B, n_actions), V(prompt) of shape (B,))."""
        st = self.lm.score_tensors(list(prompts), [self.actions] * len(prompts))
        scores = st.logprob.view(len(prompts), len(self.actions))
        if self.normalise_length:
            scores = scores / st.n_tokens.view(len(prompts), len(self.actions))
        logp = torch.log_softmax(scores.float(), dim=-1)
        return logp, self.value_head(st.context_hidden.float())
