"""Scale out on Ray: environments in env-runner actors, LM replicas in actors, jobs on a cluster.

Nothing here is a distribution layer of our own: Ray places the actors, ships the objects and
runs the cluster. What this package adds is the seam between Ray and the interfaces recipes use
on one machine, so a recipe runs the same code with or without it:

- :class:`llmrl.scale.env_runners.RayEnvGroup` / :class:`~llmrl.scale.env_runners.RayVectorEnv`:
  the lockstep group of environments (:class:`llmrl.envs.vector.EnvGroup`) and a Gymnasium
  vector env, with their environments spread over env-runner actors;
- :class:`llmrl.scale.lm_replicas.RayLM`: a :class:`~llmrl.lm.base.LanguageModel` whose calls are
  split over model replicas in actors (one per GPU, or per group of CPU cores);
- :func:`llmrl.workers.run_jobs` with ``cluster=``: independent jobs on Ray actors.

The learner stays one process. In ``sync`` mode every result comes back in the order a single
process would produce it, so a seeded run writes the same rows with or without Ray (tested);
``async`` (GLAM) overlaps the next rollout with the update and logs the policy lag.

Ray is an optional extra: ``pip install 'llmrl[ray]'``. Every recipe config holds a
:class:`RayConfig` as ``ray``; ``llmrl train NAME --ray`` starts a local Ray, ``--ray ADDRESS``
joins a running cluster (``ray start --head`` prints the address).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

MODES = ("sync", "async")
LOCAL = "local"


@dataclass
class RayConfig:
    """Where a recipe's environments and LM run when Ray is on (``address`` set)."""

    address: str | None = None
    """None: no Ray (everything in this process); local: start Ray on this machine; else a running
    cluster's address (host:6379, ray://host:10001 or auto)."""
    env_runners: int = 2
    """Env-runner actors the environments are spread over (contiguous shards, in order)."""
    env_runner_cpus: float = 0.5
    """CPUs each env runner holds: text and grid worlds step in microseconds, so two share a core;
    give worlds that are slow to step or build (Crafter) a whole one."""
    lm_replicas: int = 1
    """LM replicas (actors, each a copy of the model) that frozen-LM calls are split over."""
    mode: str = "sync"
    """sync: rollouts as in one process (same rows); async: the next rollout overlaps the update,
    one policy version behind (GLAM; the lag is logged)."""
    num_cpus: int = 0
    """local Ray only: CPUs it may schedule on (0: all of this machine's)."""
    lm_num_cpus: int = 1
    """CPUs each LM replica holds (its torch threads); 0 lets replicas share cores."""
    lm_num_gpus: float = 0.0
    """GPUs each LM replica holds (1 on a GPU cluster: one replica per GPU)."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"ray.mode must be one of {MODES}, got {self.mode!r}")
        if self.env_runners < 1 or self.lm_replicas < 1:
            raise ValueError(f"ray.env_runners and ray.lm_replicas must be >= 1, got {self.env_runners} "
                             f"and {self.lm_replicas}")
        if min(self.num_cpus, self.env_runner_cpus, self.lm_num_cpus, self.lm_num_gpus) < 0:
            raise ValueError("ray.num_cpus, ray.env_runner_cpus, ray.lm_num_cpus and ray.lm_num_gpus must be >= 0")
        if self.address is not None and not self.address.strip():
            self.address = LOCAL

    @property
    def enabled(self) -> bool:
        return self.address is not None


# What a resumed run may change: where things run, not what they compute.
MAY_CHANGE = tuple(f"ray.{name}" for name in ("address", "env_runners", "env_runner_cpus", "lm_replicas", "num_cpus",
                                              "lm_num_cpus", "lm_num_gpus"))

LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2
"""A local Ray's object store: observations and scores are small, and the default (30% of RAM)
would take memory a laptop's model needs."""


def connect(config: RayConfig) -> Any:
    """Start (``local``) or join (an address) Ray once per process; returns the ``ray`` module.

    A process already connected is left as it is, so tests and notebooks may start Ray themselves.
    """
    try:
        import ray
    except ImportError:
        raise ImportError("Ray is not installed: pip install 'llmrl[ray]' (or drop --ray to run in one "
                          "process)") from None
    if ray.is_initialized():
        return ray
    # Actors import torch; one thread each unless they hold more CPUs (Ray sets OMP_NUM_THREADS).
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR",
                              "configure_logging": False}
    if config.address == LOCAL:
        # Ray runs its workers at nice 15; here they do the run's real work (LM replicas, the
        # async rollout), so on a shared machine they must not yield to every other process.
        os.environ.setdefault("RAY_worker_niceness", "0")
        kwargs["object_store_memory"] = LOCAL_OBJECT_STORE_BYTES
        if config.num_cpus:
            kwargs["num_cpus"] = config.num_cpus
        ray.init(address="local", **kwargs)  # a new instance, never a cluster someone else started here
    else:
        try:
            ray.init(address=config.address, **kwargs)
        except ConnectionError as e:
            raise ConnectionError(f"cannot join the Ray cluster at {config.address!r} ({e}): start it with "
                                  "`ray start --head` and pass the address it prints, or use --ray for a local "
                                  "Ray") from None
    return ray


def shards(n: int, parts: int) -> list[range]:
    """``range(n)`` cut into ``min(parts, n)`` contiguous, nearly equal pieces, in order."""
    parts = max(1, min(parts, n))
    bounds = [n * k // parts for k in range(parts + 1)]
    return [range(bounds[k], bounds[k + 1]) for k in range(parts)]
