"""Quiet model loading: transformers draws a per-tensor progress bar while weights load; runs log
their own progress, and a bar per load is noise in their logs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """No per-tensor progress bar while a model loads (it takes seconds, and runs log their own progress)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
