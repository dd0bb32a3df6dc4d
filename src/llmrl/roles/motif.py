"""Motif (Klissarov et al., ICLR 2024): the LM's preferences between captions become an intrinsic
reward.

Three phases, as in the paper:

1. **Annotation.** Captions of what happened (Crafter-Text's transition captions: "chop tree",
   "place table", or nothing) are collected by playing; the frozen LM is shown two of them and
   asked which shows more progress in the game. We read its answer as p(" 1") vs p(" 2"), asked
   in both orders and averaged (so the position of a caption does not decide), instead of
   parsing a chain of thought; within ``margin`` of 0.5 the pair is a tie and dropped, as the
   paper drops "None" answers.
2. **Reward model.** A Bradley–Terry model r_φ(caption) on the captions' MiniLM embeddings (an
   MLP) is trained on the LM's preferences (:func:`llmrl.rl.preference.bradley_terry_loss`).
3. **RL.** The intrinsic reward of a step is Motif's: r_φ normalised by its mean and standard
   deviation over the collected captions, paid only above the ``threshold_quantile`` of those
   values, and divided by N^β, N the times this caption has appeared in the episode (β = 3 in
   Motif's code), so a repeated message stops paying.

:class:`MotifBonus` plugs into :class:`llmrl.rl.offpolicy.OffPolicyLoop` like ELLM's and RND's
bonuses. A reward-model score is memoised per caption (captions repeat).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from llmrl.config import require_positive
from llmrl.lm.base import LanguageModel
from llmrl.rl.networks import mlp
from llmrl.rl.preference import bradley_terry_loss

NOTHING = "(nothing happened)"


@dataclass
class MotifConfig:
    """Motif's annotation, reward model and bonus settings."""

    caption_steps: int = 20_000
    """random-play steps whose transition captions make the dataset"""
    max_pairs: int = 600
    """caption pairs shown to the LM (all pairs when fewer)"""
    margin: float = 0.1
    """|p(first) − 0.5| below this is a tie, dropped"""
    epochs: int = 200
    """full-batch Bradley–Terry epochs of the reward model"""
    hidden: int = 64
    threshold_quantile: float = 0.5
    """pay only normalised rewards above this quantile of the dataset's"""
    count_exponent: float = 3.0
    """β in 1 / N(caption)^β (Motif's default: 3)"""

    def __post_init__(self) -> None:
        require_positive(self, "caption_steps", "max_pairs", "epochs", "hidden")
        if not 0.0 <= self.margin < 0.5 or not 0.0 <= self.threshold_quantile < 1.0 or self.count_exponent < 0:
            raise ValueError("margin must lie in [0, 0.5), threshold_quantile in [0, 1), count_exponent >= 0")


TASK = ("Crafter is a survival game like Minecraft. The player collects wood, stone, coal and iron, places tables "
        "and furnaces, makes pickaxes and swords, eats, drinks, sleeps and fights zombies and skeletons, unlocking "
        "achievements as it makes progress.")  # fmt: skip


def pair_prompt(first: str, second: str) -> str:
    return (f"{TASK}\n\nTwo things the player did:\nEvent 1: {first or NOTHING}\nEvent 2: {second or NOTHING}\n"
            "Question: Which event shows more progress in the game, 1 or 2?\nAnswer:")  # fmt: skip


class PairwiseJudge:
    """The LM's preference between two captions: p(first better), averaged over both orders; NaN
    where the LM puts almost no mass on " 1" or " 2", or fails."""

    def __init__(self, lm: LanguageModel, min_mass: float = 1e-4) -> None:
        self.lm, self.min_mass = lm, min_mass
        self.abstained = 0

    def _p_one(self, prompts: list[str]) -> np.ndarray:
        try:
            scores = self.lm.score(prompts, [" 1", " 2"])
        except Exception:  # noqa: BLE001 - a failing LM abstains; the run goes on
            return np.full(len(prompts), np.nan)
        out = np.full(len(prompts), np.nan)
        for i, s in enumerate(scores):
            lp = np.asarray(s.logprob, dtype=np.float64)
            if lp.shape == (2,) and np.isfinite(lp).all() and np.exp(lp).sum() >= self.min_mass:
                out[i] = 1.0 / (1.0 + np.exp(lp[1] - lp[0]))
        return out

    def prefer_first(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        forward = self._p_one([pair_prompt(a, b) for a, b in pairs])
        backward = self._p_one([pair_prompt(b, a) for a, b in pairs])
        p = 0.5 * (forward + (1.0 - backward))
        self.abstained += int(np.isnan(p).sum())
        return p


def caption_pairs(captions: Sequence[str], max_pairs: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """Distinct caption pairs, all of them or ``max_pairs`` drawn without replacement."""
    pairs = list(itertools.combinations(sorted(set(captions)), 2))
    if len(pairs) > max_pairs:
        pairs = [pairs[i] for i in sorted(rng.choice(len(pairs), max_pairs, replace=False))]
    return pairs


class CaptionRewardModel:
    """r_φ(caption): an MLP on the caption's sentence embedding, trained with Bradley–Terry."""

    def __init__(self, embed: Any, hidden: int = 64, seed: int = 0) -> None:
        self.embed_fn = embed
        torch.manual_seed(seed)
        self.dim = int(np.asarray(embed([NOTHING])).shape[1])
        self.net = mlp(self.dim, (hidden,), 1)
        self._memo: dict[str, float] = {}
        self.mean, self.std, self.threshold = 0.0, 1.0, -np.inf

    def _features(self, captions: Sequence[str]) -> torch.Tensor:
        return torch.as_tensor(np.asarray(self.embed_fn([c or NOTHING for c in captions]), dtype=np.float32))

    def fit(self, pairs: Sequence[tuple[str, str]], p_first: np.ndarray, margin: float, epochs: int,
            lr: float = 1e-3) -> dict[str, float]:  # fmt: skip
        """Train on the LM's decided pairs (ties and abstentions dropped); returns the fit's numbers."""
        keep = [i for i, p in enumerate(p_first) if np.isfinite(p) and abs(p - 0.5) >= margin]
        if not keep:
            raise ValueError("the LM preferred neither caption in every pair (all ties or abstentions): there is "
                             "nothing to train the reward model on; lower `margin` or use a stronger LM")  # fmt: skip
        chosen = [pairs[i][0] if p_first[i] > 0.5 else pairs[i][1] for i in keep]
        rejected = [pairs[i][1] if p_first[i] > 0.5 else pairs[i][0] for i in keep]
        xc, xr = self._features(chosen), self._features(rejected)
        opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        for _ in range(epochs):
            loss = bradley_terry_loss(self.net(xc).squeeze(-1), self.net(xr).squeeze(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            agree = float((self.net(xc) > self.net(xr)).float().mean())
        return {"pairs": len(pairs), "decided": len(keep), "loss": float(loss.detach()), "train_agreement": agree}

    def calibrate(self, captions: Sequence[str], threshold_quantile: float) -> None:
        """Motif's normalisation and threshold, from the dataset's captions (as played, repeats kept)."""
        raw = self.raw(captions)
        self.mean, self.std = float(raw.mean()), float(raw.std() or 1.0)
        self.threshold = float(np.quantile((raw - self.mean) / self.std, threshold_quantile))

    def raw(self, captions: Sequence[str]) -> np.ndarray:
        todo = [c for c in dict.fromkeys(captions) if c not in self._memo]
        if todo:
            with torch.no_grad():
                values = self.net(self._features(todo)).squeeze(-1).numpy()
            self._memo.update(zip(todo, values.tolist()))
        return np.array([self._memo[c] for c in captions], dtype=np.float64)

    def normalised(self, captions: Sequence[str]) -> np.ndarray:
        """(r_φ − mean) / std, and 0 at or below the threshold."""
        z = (self.raw(captions) - self.mean) / self.std
        return np.where(z > self.threshold, z, 0.0)

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "mean": self.mean, "std": self.std, "threshold": self.threshold}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.mean, self.std, self.threshold = state["mean"], state["std"], state["threshold"]
        self._memo.clear()


class MotifBonus:
    """Motif's intrinsic reward over vector steps (:class:`llmrl.rl.offpolicy.Bonus`): the reward
    model's normalised, thresholded score of each step's transition caption, divided by
    N^``count_exponent`` for the caption's count N in the episode so far."""

    def __init__(self, model: CaptionRewardModel, n_envs: int, count_exponent: float = 3.0,
                 key: str = "transition_caption") -> None:  # fmt: skip
        self.model, self.count_exponent, self.key = model, count_exponent, key
        self.counts: list[dict[str, int]] = [{} for _ in range(n_envs)]

    def begin(self, infos: Sequence[dict[str, Any]]) -> None:
        pass

    def observe(self, step: Any, next_infos: Sequence[dict[str, Any]]) -> None:
        pass

    def ready(self) -> bool:
        return True

    def prepare(self) -> None:
        pass

    def reward(self, step: Any) -> np.ndarray:
        captions = [str(info.get(self.key, "")) for info in step.infos]
        r = self.model.normalised(captions)
        for i, c in enumerate(captions):
            n = self.counts[i][c] = self.counts[i].get(c, 0) + 1
            r[i] /= n**self.count_exponent
        return r.astype(np.float32)

    def end_episode(self, i: int) -> None:
        self.counts[i] = {}

    def learn(self, batch: Any) -> None:
        pass
