"""Datasets of goal-conditioned episodes (real or imagined) and their flat offline-RL arrays."""

from llmrl.data.episodes import Episode, EpisodeDataset, Transitions

__all__ = ["Episode", "EpisodeDataset", "Transitions"]
