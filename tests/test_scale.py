"""Scaling out on a local 2-CPU Ray: env runners, LM replicas and jobs give what one process gives;
a GLAM run with --ray writes the plain run's rows; async rollouts log their lag and resume exactly."""

from __future__ import annotations

import csv
import functools
import operator
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("ray")

from fakes import tiny_model_folder  # noqa: E402

from llmrl.envs.vector import EnvGroup  # noqa: E402
from llmrl.scale import RayConfig, shards  # noqa: E402
from llmrl.scale.env_runners import merge_infos  # noqa: E402

LOCAL = RayConfig(address="local", env_runners=2, lm_replicas=2)


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the module (starting one takes seconds), shut down only if we started it."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, object_store_memory=128 * 1024**2, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
    yield ray
    if started:
        ray.shutdown()


def test_shards_are_contiguous_and_cover_everything():
    assert shards(5, 2) == [range(0, 2), range(2, 5)]
    assert shards(2, 4) == [range(0, 1), range(1, 2)]
    assert [i for part in shards(17, 3) for i in part] == list(range(17))


def test_ray_config_names_bad_values():
    with pytest.raises(ValueError, match="ray.mode"):
        RayConfig(mode="eager")
    with pytest.raises(ValueError, match="env_runners"):
        RayConfig(env_runners=0)
    assert not RayConfig().enabled and RayConfig(address="").address == "local"


def test_merge_infos_fills_what_a_shard_lacks_as_gymnasium_does():
    a = {"x": np.array([1.0, 2.0]), "_x": np.array([True, True])}
    b = {"y": np.array(["s"], dtype=object), "_y": np.array([True]),
         "final_info": {"success": np.array([True]), "_success": np.array([True])}, "_final_info": np.array([True])}
    out = merge_infos([a, b], [2, 1])
    assert out["x"].tolist() == [1.0, 2.0, 0.0] and out["_x"].tolist() == [True, True, False]
    assert out["y"].tolist() == [None, None, "s"] and out["_y"].tolist() == [False, False, True]
    assert out["final_info"]["success"].tolist() == [False, False, True]
    assert out["_final_info"].tolist() == [False, False, True]


def _babyai(n: int) -> EnvGroup:
    import llmrl.envs  # noqa: F401

    group = EnvGroup([gym.make("BabyAI-Text-GoToLocalS5N2-v0") for _ in range(n)])
    group.reset([11, 12, 13, 14])
    return group


def test_ray_env_group_steps_like_the_local_group_and_pickles_back(ray_local):
    from llmrl.scale.env_runners import RayEnvGroup

    local, remote = _babyai(4), _babyai(4)
    remote = RayEnvGroup(remote.local_envs(), LOCAL)
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(80):
        actions = rng.integers(0, 6, size=4)
        a, b = local.step(actions), remote.step(actions)
        assert [(s.reward, s.done, s.info["descriptions"], s.next_info["descriptions"]) for s in a] == \
               [(s.reward, s.done, s.info["descriptions"], s.next_info["descriptions"]) for s in b]
        ends += sum(s.done for s in a)
    assert ends > 4  # episodes ended and reset inside the runners
    back = pickle.loads(pickle.dumps(remote))  # a checkpoint holds the environments, not the actors
    assert type(back) is EnvGroup and len(back) == 4
    actions = [2, 2, 0, 1]
    assert [s.next_info["descriptions"] for s in back.step(actions)] == \
           [s.next_info["descriptions"] for s in local.step(actions)]
    remote.close()


def test_ray_vector_env_matches_one_vector_env(ray_local):
    from llmrl.scale.env_runners import RayVectorEnv

    make = functools.partial(gym.make_vec, "CartPole-v1", vectorization_mode="sync",
                             vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    one, spread = make(3), RayVectorEnv(make, 3, LOCAL)
    assert spread.single_observation_space == one.single_observation_space and spread.num_envs == 3
    o1, _ = one.reset(seed=5)
    o2, _ = spread.reset(seed=5)
    np.testing.assert_array_equal(o1, o2)
    for t in range(120):
        actions = np.array([t % 2, 1, 0])
        r1, r2 = one.step(actions), spread.step(actions)
        for x, y in zip(r1[:4], r2[:4]):
            np.testing.assert_array_equal(x, y)
        assert sorted(r1[4]) == sorted(r2[4])
        if "final_obs" in r1[4]:
            for f1, f2 in zip(r1[4]["final_obs"], r2[4]["final_obs"]):
                assert (f1 is None and f2 is None) or np.array_equal(f1, f2)
    spread.close()


def test_run_jobs_on_ray_returns_every_result(ray_local):
    from llmrl.workers import run_jobs

    args = [(k, k + 1) for k in range(7)]
    assert sorted(run_jobs(operator.mul, args, 2, cluster=LOCAL)) == [(k, k * (k + 1)) for k in range(7)]
    with pytest.raises(ZeroDivisionError):
        list(run_jobs(operator.truediv, [(1, 0), (1, 1)], 2, cluster=LOCAL))


def test_ray_lm_replicas_answer_as_one_process(ray_local, smollm2_fp32):
    from llmrl.scale.lm_replicas import RayLM

    lm = RayLM("smollm2-135m-instruct", LOCAL, dtype="fp32")
    assert lm.replicas == 2 and lm.cache_identity == smollm2_fp32.cache_identity
    contexts = [f"You are in room {k}. Next you" for k in range(5)]
    candidates = [["go forward", "turn left", "pick up"]] * 5
    for a, b in zip(lm.score(contexts, candidates), smollm2_fp32.score(contexts, candidates)):
        np.testing.assert_allclose(a.logprob, b.logprob, atol=1e-3)
    prompts = ["The capital of France is", "One, two, three,", "Water boils at"]
    assert lm.generate(prompts, max_new_tokens=5) == smollm2_fp32.generate(prompts, max_new_tokens=5)
    np.testing.assert_allclose(lm.embed(prompts), smollm2_fp32.embed(prompts), atol=1e-5)
    lm.close()


# ------------------------------------------------------------------ GLAM with --ray, on the CLI
# A two-layer random LM: this test is about Ray's plumbing (the same rows, the lag, an exact resume),
# which the LM's knowledge does not touch; GLAM with the real model is tests/recipes/test_glam.py's.
TINY = [
    "--env-id", "BabyAI-Text-GoToLocalS5N2-v0", "--n-envs", "4",
    "--ppo.n-steps", "8", "--ppo.minibatch-size", "16", "--micro-batch-size", "16", "--ppo.n-epochs", "1",
    "--total-env-steps", "128", "--eval-episodes", "0", "--ppo.learning-rate", "1e-3", "--torch-threads", "1",
]
TIMING = {"wall_s", "steps_per_s", "rollout_s", "update_s"}


def _train(out: Path, model: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "llmrl.cli", "train", "glam", "--out", str(out), "--quiet", *TINY,
                             "--model", str(model), *extra], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(p: subprocess.Popen) -> None:
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "progress.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


@pytest.mark.slow
def test_glam_on_ray_writes_the_plain_runs_rows_and_async_rollouts_resume_exactly(tmp_path):
    # Four runs side by side (one torch thread each): plain, sync on 3 env runners, async, and an
    # async run killed at its first checkpoint.
    full, killed = tmp_path / "async", tmp_path / "killed"
    lm = tiny_model_folder(tmp_path / "tiny-lm")
    runs = [_train(tmp_path / "plain", lm), _train(tmp_path / "ray", lm, "--ray", "--ray.env-runners", "3"),
            _train(full, lm, "--ray", "--ray.mode", "async")]
    p = _train(killed, lm, "--ray", "--ray.mode", "async")
    ckpt = killed / "checkpoints" / "latest.pt"
    deadline = time.time() + 400
    while not ckpt.exists():
        assert p.poll() is None, p.communicate()[0]
        assert time.time() < deadline, "no checkpoint after 400 s"
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    for run in runs:
        _finish(run)

    plain = _rows(tmp_path / "plain")
    assert len(plain) == 4 and _rows(tmp_path / "ray") == plain
    assert any(r["episodes"] != "0" for r in plain)  # episodes ended, so the runners reset them
    reference = _rows(full)
    assert [r["policy_lag"] for r in reference] == ["0", "1", "1", "1"]
    assert [r["policy_lag"] for r in plain] == ["0"] * 4

    assert len(_rows(killed)) < 4
    _finish(_train(killed, lm, "--ray", "--ray.mode", "async", "--resume"))
    assert _rows(killed) == reference  # the rollout in flight was checkpointed with the worker's envs
    p = _train(killed, lm, "--resume", "--ray.mode", "sync", "--ray")
    out, _ = p.communicate(timeout=120)
    assert p.returncode != 0 and "ray.mode" in out  # a run cannot switch between sync and async


# ------------------------------------------------------------------ LoRA adapters pushed to a server
@pytest.mark.slow
def test_lora_adapters_pushed_to_a_server_score_as_the_learner(tmp_path, smollm2_fp32):
    import copy

    import torch

    from llmrl.lm.errors import LMError
    from llmrl.lm.openai import OpenAILM
    from llmrl.lm.serve import serve_in_thread
    from llmrl.roles.policy import LMActorCritic
    from llmrl.scale.adapter_sync import AdapterSync

    learner = LMActorCritic(copy.deepcopy(smollm2_fp32), ("go forward", "turn left"))
    server, url = serve_in_thread(copy.deepcopy(smollm2_fp32), model_name="base", enable_lora=True)
    sync = AdapterSync(url, tmp_path / "adapters", keep=1)
    contexts = ["You see a red ball 2 steps forward. You", "A key is on your left. You"]
    candidates = ["go forward", "turn left", "pick up"]

    def scores(lm):
        return np.stack([s.logprob for s in lm.score(contexts, candidates)])

    # The learner's own model (adapters on), behind the same server code: the reference, scored
    # through the same joined-text tokenisation as the synced copy.
    reference, reference_url = serve_in_thread(learner.lm, model_name="learner")
    try:
        base = scores(OpenAILM(url, "base", logprobs_mode="prompt_logprobs"))
        for version in (1, 2):
            with torch.no_grad():  # an update: adapters that change the scores
                for n, p in learner.llm.named_parameters():
                    if "lora_B" in n:
                        p.normal_(0, 0.05)
            served = sync.push(learner.llm, version)
            assert served == f"policy-v{version}"
            remote = scores(OpenAILM(url, served, logprobs_mode="prompt_logprobs"))
            learner_now = OpenAILM(reference_url, "learner", logprobs_mode="prompt_logprobs")
            np.testing.assert_allclose(remote, scores(learner_now), atol=1e-4)
            assert np.abs(remote - base).max() > 0.01  # the adapter is really on
        with pytest.raises(LMError, match="404|does not exist"):  # keep=1: version 1 was unloaded
            OpenAILM(url, "policy-v1", logprobs_mode="prompt_logprobs").score(contexts, candidates)
        assert sorted(p.name for p in (tmp_path / "adapters").iterdir()) == ["policy-v2"]
        np.testing.assert_allclose(scores(OpenAILM(url, "base", logprobs_mode="prompt_logprobs")), base, atol=1e-6)
    finally:
        server.stop()
        reference.stop()


def test_a_server_without_enable_lora_refuses_adapters(tmp_path):
    from llmrl.lm.errors import LMError
    from llmrl.lm.serve import serve_in_thread
    from llmrl.scale.adapter_sync import AdapterSync
    from fakes import WordLM

    server, url = serve_in_thread(WordLM(), model_name="base")
    try:
        with pytest.raises(LMError, match="enable-lora"):
            AdapterSync(url, tmp_path).push(_FakePeft(), 1)
    finally:
        server.stop()


class _FakePeft:
    def save_pretrained(self, path: str) -> None:
        Path(path).mkdir(parents=True)
        (Path(path) / "adapter_config.json").write_text("{}")
