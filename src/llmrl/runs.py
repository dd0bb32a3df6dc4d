"""The run folder every training recipe writes and ``llmrl plot`` reads (docs/architecture.md).

``config.json`` (with ``recipe``, ``label``, ``env_id``, ``seed``), ``progress.csv`` with at least
``PROGRESS_COLUMNS`` (one row per update; ``episodes`` is cumulative, the episode metrics cover
the episodes that finished in that update), ``tb/``, ``checkpoints/`` and ``eval/results.json``.
"""

from __future__ import annotations

PROGRESS_COLUMNS: tuple[str, ...] = (
    "env_steps", "updates", "wall_s", "episodes", "success_rate", "mean_return", "mean_length",
    "policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "steps_per_s",
)  # fmt: skip
