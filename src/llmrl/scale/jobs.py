"""Independent jobs on Ray actors: :func:`llmrl.workers.run_jobs`'s backend for a cluster.

``workers`` actors each run ``setup(*setup_args)`` once (e.g. load a model or a dataset) and
then take jobs one at a time; a freed actor takes the next job, so a slow job does not hold up
the rest. Each actor holds one CPU (torch then runs one thread, as run_jobs' processes do) or,
with ``ray.lm_num_gpus``, that share of a GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from llmrl.scale import RayConfig, connect


class _JobWorker:
    def __init__(self, setup: Callable[..., None] | None, setup_args: tuple[Any, ...]) -> None:
        import torch

        torch.set_num_threads(1)
        if setup is not None:
            setup(*setup_args)

    def run(self, job: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        return job(*args)


def ray_jobs(job: Callable[..., Any], args: Sequence[tuple[Any, ...]], workers: int, config: RayConfig, *,
             setup: Callable[..., None] | None = None, setup_args: tuple[Any, ...] = ()) -> Iterator[tuple[int, Any]]:
    """Yield ``(i, job(*args[i]))`` as each job finishes on one of ``workers`` Ray actors."""
    if not args:
        return
    ray = connect(config)
    worker = ray.remote(num_cpus=1, num_gpus=config.lm_num_gpus)(_JobWorker)
    actors = [worker.remote(setup, setup_args) for _ in range(min(workers, len(args)))]
    todo = iter(enumerate(args))
    running: dict[Any, tuple[int, Any]] = {}
    try:
        for actor in actors:
            i, a = next(todo)
            running[actor.run.remote(job, a)] = (i, actor)
        while running:
            [ref], _ = ray.wait(list(running), num_returns=1)
            i, actor = running.pop(ref)
            result = ray.get(ref)  # a job's exception is raised here and stops the stage
            nxt = next(todo, None)
            if nxt is not None:
                running[actor.run.remote(job, nxt[1])] = (nxt[0], actor)
            yield i, result
    finally:
        for actor in actors:
            ray.kill(actor)
