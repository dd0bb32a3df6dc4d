"""A language model served by replicas in Ray actors, behind :class:`llmrl.lm.base.LanguageModel`.

Each replica loads the model itself (``load_model(name, **kwargs)`` in the actor: weights never
cross the network) and holds ``ray.lm_num_cpus`` cores or ``ray.lm_num_gpus`` GPUs. A batched
call is cut into one contiguous slice per replica, as Lamorel splits a call over its LLM servers,
and the answers are joined in order. Scores, embeddings and greedy generations are what one
process computes; sampled generation with a seed is reproducible for a given replica count
(each slice is seeded from the seed and its first prompt's index).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from llmrl.lm.base import CandidateScores, Generation, LanguageModel, as_candidate_lists
from llmrl.scale import RayConfig, connect, shards


class _Replica:
    """The actor body: one copy of the model."""

    def __init__(self, name: str, load_kwargs: dict[str, Any]) -> None:
        from llmrl.lm import load_model

        self.lm = load_model(name, **load_kwargs)

    def identity(self) -> tuple[str, str]:
        return self.lm.name, self.lm.cache_identity

    def score(self, contexts: list[str], candidates: list[tuple[str, ...]]) -> list[CandidateScores]:
        return self.lm.score(contexts, candidates)

    def generate(self, prompts: list[str], kwargs: dict[str, Any]) -> list[Generation]:
        return self.lm.generate(prompts, **kwargs)

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.lm.embed(texts)


class RayLM(LanguageModel):
    """``load_model(name, **load_kwargs)`` on ``config.lm_replicas`` Ray actors."""

    def __init__(self, name: str, config: RayConfig, **load_kwargs: Any) -> None:
        super().__init__()
        ray = connect(config)
        self._ray = ray
        replica = ray.remote(num_cpus=config.lm_num_cpus, num_gpus=config.lm_num_gpus)(_Replica)
        self._replicas = [replica.remote(name, load_kwargs) for _ in range(config.lm_replicas)]
        self.name, self._identity = ray.get(self._replicas[0].identity.remote())  # waits for the load

    @property
    def cache_identity(self) -> str:
        return self._identity  # the replicas' model, so a result cache is shared with one-process runs

    @property
    def replicas(self) -> int:
        return len(self._replicas)

    def score(self, contexts: Sequence[str], candidates: Sequence[str] | Sequence[Sequence[str]]) -> list[CandidateScores]:
        lists = as_candidate_lists(contexts, candidates)
        self.stats.score_calls += 1
        self.stats.scored_contexts += len(contexts)
        if not contexts:
            return []
        parts = shards(len(contexts), len(self._replicas))
        refs = [r.score.remote(list(contexts[p.start: p.stop]), lists[p.start: p.stop])
                for r, p in zip(self._replicas, parts)]
        return [s for part in self._ray.get(refs) for s in part]

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64, temperature: float = 0.0,
                 top_p: float = 1.0, stop: Sequence[str] = (), n: int = 1, seed: int | None = None) -> list[Generation]:
        self.stats.generate_calls += 1
        self.stats.generated_prompts += len(prompts)
        if not prompts:
            return []
        parts = shards(len(prompts), len(self._replicas))
        kwargs = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "stop": tuple(stop),
                  "n": n}
        refs = [r.generate.remote(list(prompts[p.start: p.stop]),
                                  {**kwargs, "seed": None if seed is None else seed + p.start})
                for r, p in zip(self._replicas, parts)]
        return [g for part in self._ray.get(refs) for g in part]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.stats.embed_calls += 1
        if not texts:
            return self._ray.get(self._replicas[0].embed.remote([]))
        parts = shards(len(texts), len(self._replicas))
        return np.concatenate(self._ray.get([r.embed.remote(list(texts[p.start: p.stop]))
                                             for r, p in zip(self._replicas, parts)]))

    def close(self) -> None:
        for r in self._replicas:
            self._ray.kill(r)
        self._replicas = []
