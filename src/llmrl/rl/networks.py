"""The one multilayer-perceptron builder every learner here uses (DQN encoders, offline RL heads, RND)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def mlp(in_dim: int, hidden_sizes: Sequence[int], out_dim: int | None = None) -> nn.Sequential:
    """Linear + ReLU for each hidden width, then a linear output layer of ``out_dim`` (none if None).

    Layers are numbered in order (``0.weight``, ``2.weight``, ...), so state dicts stay stable.
    """
    layers: list[nn.Module] = []
    for h in hidden_sizes:
        layers += [nn.Linear(in_dim, h), nn.ReLU()]
        in_dim = h
    if out_dim is not None:
        layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)
