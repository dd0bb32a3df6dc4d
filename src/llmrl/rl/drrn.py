"""DRRN (He et al., ACL 2016): Q-learning over a *set* of text actions that changes every state.

Q(s, a) = head(f(s) ⊕ g(a)), with f and g MLPs over frozen sentence embeddings (MiniLM here; He et
al. and CALM train GRU encoders from scratch). A state is a tuple of texts — CALM encodes the
observation, the room's description, the inventory separately — each embedded once per distinct
text and concatenated.
The agent acts by sampling softmax(Q / temperature) over the candidates (CALM's exploration),
stores (s, a, r, s', candidates(s'), done) and regresses Q(s, a) onto
r + γ (1 − done) max_{a' ∈ candidates(s')} Q_target(s', a') with a Huber loss; the target network
is a copy refreshed every ``target_update`` updates.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmrl.rl.networks import mlp

__all__ = ["DRRN", "DRRNConfig", "TextEmbeddings"]


@dataclass
class DRRNConfig:
    """DRRN's learning settings. CALM's code: γ = 0.9, batch 64, Adam 1e-4, replay 10,000 (half of
    each batch from the best-scoring trajectories), softmax exploration, 128-wide layers. Our
    encoders are frozen and the heads small, so Adam runs at 1e-3 on a uniform replay."""

    gamma: float = 0.9
    learning_rate: float = 1e-3
    batch_size: int = 64
    buffer_size: int = 20_000
    hidden: int = 128
    temperature: float = 1.0
    """softmax exploration over Q; evaluation acts greedily"""
    learning_starts: int = 64
    target_update: int = 100
    """updates between target-network copies"""


class TextEmbeddings:
    """Memoised sentence embeddings: each distinct text is embedded once per run."""

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray]) -> None:
        self._embed = embed
        self.index: dict[str, int] = {}
        self.rows: list[np.ndarray] = []

    def ids(self, texts: Sequence[str]) -> list[int]:
        new = list(dict.fromkeys(t for t in texts if t not in self.index))
        if new:
            for t, v in zip(new, self._embed(new)):
                self.index[t] = len(self.rows)
                self.rows.append(np.asarray(v, np.float32))
        return [self.index[t] for t in texts]

    def tensor(self, ids: Sequence[int]) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.rows[i] for i in ids]))


class _QNet(nn.Module):
    def __init__(self, dim: int, hidden: int, state_parts: int) -> None:
        super().__init__()
        self.state = mlp(dim * state_parts, (hidden,), hidden)
        self.action = mlp(dim, (hidden,), hidden)
        self.head = mlp(2 * hidden, (hidden,), 1)

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``s``: (B, D) states; ``a``: (B, K, D) candidates; returns (B, K)."""
        hs = torch.relu(self.state(s))[:, None, :].expand(-1, a.shape[1], -1)
        ha = torch.relu(self.action(a))
        return self.head(torch.cat([hs, ha], -1)).squeeze(-1)


class DRRN:
    """The agent: ``act`` picks among candidates, ``observe`` stores a step, ``update`` learns."""

    def __init__(self, config: DRRNConfig, embeddings: TextEmbeddings, dim: int, state_parts: int,
                 seed: int = 0) -> None:  # fmt: skip
        self.config = config
        self.emb = embeddings
        self.parts = state_parts
        torch.manual_seed(seed)
        self.q = _QNet(dim, config.hidden, state_parts)
        self.target = copy.deepcopy(self.q).requires_grad_(False)
        self.optimiser = torch.optim.Adam(self.q.parameters(), lr=config.learning_rate)
        self.rng = np.random.default_rng(seed)
        self.buffer: list[tuple[tuple[int, ...], int, float, tuple[int, ...], tuple[int, ...], bool]] = []
        self._next = 0
        self.updates = 0

    def _states(self, states: Sequence[tuple[int, ...]]) -> torch.Tensor:
        return self.emb.tensor([i for s in states for i in s]).reshape(len(states), -1)

    def _state_ids(self, state: Sequence[str]) -> tuple[int, ...]:
        if len(state) != self.parts:
            raise ValueError(f"a state is {self.parts} texts, got {len(state)}")
        return tuple(self.emb.ids(list(state)))

    def q_values(self, state: Sequence[str], candidates: Sequence[str]) -> np.ndarray:
        s = self._states([self._state_ids(state)])
        a = self.emb.tensor(self.emb.ids(list(candidates)))[None]
        with torch.no_grad():
            return self.q(s, a)[0].numpy()

    def act(self, state: Sequence[str], candidates: Sequence[str], greedy: bool = False) -> int:
        q = self.q_values(state, candidates)
        if greedy:
            return int(np.argmax(q))
        z = (q - q.max()) / max(self.config.temperature, 1e-8)
        p = np.exp(z) / np.exp(z).sum()
        return int(self.rng.choice(len(q), p=p))

    def observe(self, state: Sequence[str], action: str, reward: float, next_state: Sequence[str],
                next_candidates: Sequence[str], done: bool) -> None:  # fmt: skip
        s, s2, (a,) = self._state_ids(state), self._state_ids(next_state), self.emb.ids([action])
        item = (s, a, float(reward), s2, tuple(self.emb.ids(list(next_candidates) or ["look"])), bool(done))
        if len(self.buffer) < self.config.buffer_size:
            self.buffer.append(item)
        else:
            self.buffer[self._next] = item
        self._next = (self._next + 1) % self.config.buffer_size

    def update(self) -> float | None:
        c = self.config
        if len(self.buffer) < c.learning_starts:
            return None
        batch = [self.buffer[i] for i in self.rng.integers(len(self.buffer), size=c.batch_size)]
        s = self._states([b[0] for b in batch])
        a = self.emb.tensor([b[1] for b in batch])[:, None]
        r = torch.tensor([b[2] for b in batch])
        done = torch.tensor([b[5] for b in batch], dtype=torch.float32)
        width = max(len(b[4]) for b in batch)
        cand = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=bool)
        for i, b in enumerate(batch):
            cand[i, : len(b[4])], mask[i, : len(b[4])] = b[4], True
        s2 = self._states([b[3] for b in batch])
        a2 = self.emb.tensor(cand.reshape(-1).tolist()).reshape(len(batch), width, -1)
        with torch.no_grad():
            q2 = self.target(s2, a2).masked_fill(~torch.from_numpy(mask), -torch.inf).max(1).values
            y = r + c.gamma * (1 - done) * q2
        loss = F.smooth_l1_loss(self.q(s, a)[:, 0], y)
        self.optimiser.zero_grad()
        loss.backward()
        self.optimiser.step()
        self.updates += 1
        if self.updates % c.target_update == 0:
            self.target.load_state_dict(self.q.state_dict())
        return float(loss.detach())

    def state_dict(self) -> dict[str, Any]:
        return {"q": self.q.state_dict(), "target": self.target.state_dict(), "optimiser": self.optimiser.state_dict(),
                "updates": self.updates}  # fmt: skip
