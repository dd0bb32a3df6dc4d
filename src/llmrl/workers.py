"""Independent jobs side by side in worker processes: one call for "run these N things on K cores".

A recipe stage that trains or evaluates many small agents (KALM trains 48) has no reason to do
them one at a time on a machine with several cores, and no reason to need a cluster framework
either. :func:`run_jobs` runs ``job(*args)`` for each args tuple, in this process when
``workers == 1`` (so tracebacks and debuggers behave as usual) or in ``workers`` spawned
processes. Every job runs with one torch thread, so K workers use K cores rather than fighting
over them, and a job's result does not depend on how many workers there are. Results come back in completion order, tagged with the job's index, so a caller can save
each one as soon as it exists and resume after an interruption.

Jobs must be module-level functions with picklable arguments (spawned processes import them);
``setup(*setup_args)`` runs once in each worker first (e.g. to load a dataset every job reads).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

__all__ = ["run_jobs"]


def _start_worker(setup: Callable[..., None] | None, setup_args: tuple[Any, ...]) -> None:
    import torch

    torch.set_num_threads(1)
    if setup is not None:
        setup(*setup_args)


def run_jobs(job: Callable[..., Any], args: Sequence[tuple[Any, ...]], workers: int = 1, *,
             setup: Callable[..., None] | None = None, setup_args: tuple[Any, ...] = (),
             cluster: Any = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(i, job(*args[i]))`` for every i, as each finishes.

    An exception in a job is raised here (after the jobs already running finish or are
    cancelled), so a failed stage stops rather than silently dropping work. ``cluster``, a
    :class:`llmrl.scale.RayConfig` with an address, runs the jobs on ``workers`` Ray actors instead
    (:mod:`llmrl.scale.jobs`).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if cluster is not None and cluster.enabled:
        from llmrl.scale.jobs import ray_jobs

        yield from ray_jobs(job, args, workers, cluster, setup=setup, setup_args=setup_args)
        return
    if workers == 1 or len(args) <= 1:
        import torch

        threads = torch.get_num_threads()
        try:  # one thread here too, so a job's result does not depend on the worker count
            _start_worker(setup, setup_args)
            for i, a in enumerate(args):
                yield i, job(*a)
        finally:
            torch.set_num_threads(threads)
        return
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools and locks
    with ProcessPoolExecutor(min(workers, len(args)), mp_context=context, initializer=_start_worker,
                             initargs=(setup, setup_args)) as pool:
        pending = {pool.submit(job, *a): i for i, a in enumerate(args)}
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield pending.pop(future), future.result()
        finally:
            for future in pending:
                future.cancel()
