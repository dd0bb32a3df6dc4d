"""Shared fixtures. The real default model is loaded once for the whole test run."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def gemma_fp32():
    """gemma-3-270m in fp32, for exact comparisons (the scoring-equivalence tolerance is 1e-3)."""
    from llmrl.lm import load_model

    return load_model("gemma-3-270m", dtype="fp32")
