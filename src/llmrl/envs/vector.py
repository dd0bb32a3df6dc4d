"""Helpers for Gymnasium vector environments that reset in the same step (``AutoresetMode.SAME_STEP``).

A vector step returns infos as a dict of arrays (``infos["caption"][i]``); roles and learners want
one dict per environment. When environment ``i``'s episode ends, the returned observation and
info already belong to the next episode; the last ones are in ``infos["final_obs"]`` and
``infos["final_info"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def unstack_infos(infos: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """A vector env's dict of arrays -> one dict per environment (mask keys ``_x`` and the final
    observation/info left out)."""
    keys = [k for k in infos if not k.startswith("_") and k not in ("final_obs", "final_info")]
    return [{k: infos[k][i] for k in keys} for i in range(n)]


def final_transition(next_obs: np.ndarray, infos: dict[str, Any], done: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """What each environment's step really led to: ``(next observations, per-env infos)`` with the
    final observation and info where an episode ended (not the reset ones)."""
    n = len(done)
    step_infos = unstack_infos(infos, n)
    if not np.any(done):
        return next_obs, step_infos
    final = unstack_infos(infos["final_info"], n)
    step_infos = [final[i] if done[i] else step_infos[i] for i in range(n)]
    real_next = np.stack([infos["final_obs"][i] if done[i] else next_obs[i] for i in range(n)])
    return real_next, step_infos
