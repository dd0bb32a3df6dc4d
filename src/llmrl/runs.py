"""The run folder every training recipe writes and ``llmrl plot`` reads (docs/architecture.md).

``config.json`` (with ``recipe``, ``label``, ``env_id``, ``seed``), ``progress.csv`` with at least
``PROGRESS_COLUMNS`` (one row per update; ``episodes`` is cumulative, the episode metrics cover
the episodes that finished in that update), ``tb/``, ``checkpoints/`` and ``eval/results.json``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PROGRESS_COLUMNS: tuple[str, ...] = (
    "env_steps", "updates", "wall_s", "episodes", "success_rate", "mean_return", "mean_length",
    "policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "steps_per_s",
)  # fmt: skip


def atomic_torch_save(path: str | os.PathLike[str], obj: Any, **save_kwargs: Any) -> None:
    """``torch.save`` to a temporary sibling, fsync, then rename: a kill leaves the old file or the
    new one, never half of one. Every checkpoint in the project goes through here."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f, **save_kwargs)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
