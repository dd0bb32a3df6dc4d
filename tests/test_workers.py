"""run_jobs: every job's result, in this process or in spawned ones, and failures that stop the stage."""

import math

import pytest
import torch

from llmrl.workers import run_jobs


def test_jobs_in_two_processes_return_every_result_and_raise_a_failure():
    jobs = [(n,) for n in range(6)]
    assert sorted(run_jobs(math.factorial, jobs, workers=2)) == [(n, math.factorial(n)) for n in range(6)]
    with pytest.raises(ValueError, match="negative"):
        list(run_jobs(math.factorial, [(3,), (-1,)], workers=2))


def test_one_worker_runs_here_with_one_thread_and_restores_the_thread_count():
    threads = torch.get_num_threads()
    seen = list(run_jobs(torch.get_num_threads, [(), ()], workers=1))
    assert seen == [(0, 1), (1, 1)] and torch.get_num_threads() == threads
    with pytest.raises(ValueError, match="workers must be >= 1"):
        list(run_jobs(math.factorial, [(1,)], workers=0))
