"""Reward-Coder: the LM writes reward functions, and Eureka's search with reflection improves them.

Per iteration the LM samples ``samples`` programs (:mod:`llmrl.roles.reward_coder`); each trains
Stable-Baselines3 PPO for ``search_steps`` with its reward alone, in :mod:`llmrl.sandbox`, and its
fitness is the task's success rate on ``eval_episodes`` test episodes. The best program so far
and its reflection go into the next prompt. Then the comparison: the best program, the
environment's own ("human") reward and the sparse success reward each train PPO for
``final_steps`` on ``final_seeds`` seeds, judged by the same success measure.

Every search step is counted: the run reports the env steps the search spent beside the
comparison's, so "LM reward at N steps" is never read without the steps it took to find it.

Run folder: ``config.json``; ``candidates.jsonl`` (every program, runnable or not, with its
error or its statistics); ``progress.csv`` (one row per iteration: runnable share, best and
mean fitness, LM and training seconds); ``best_reward.py``; ``final.csv`` (one row per reward
and seed) and ``summary.json``. An interrupted run resumes at the first unfinished iteration or
comparison run (the LM's samples are seeded, so a resumed search writes the same programs).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmrl.config import config_from as _config_from
from llmrl.config import require_positive
from llmrl.envs.code_tasks import TASKS, get_task
from llmrl.roles.coder import (
    Candidate,
    SearchSettings,
    best_of,
    code_search,
    search_summary,
)
from llmrl.roles.reward_coder import (
    CodeRewardVecEnv,
    SandboxedReward,
    program_start,
    reward_prompt,
)
from llmrl.runs import (
    ProgressLog,
    RunFolder,
    RunResult,
    atomic_write_json,
    atomic_write_text,
    read_rows,
)
from llmrl.sandbox import CodeFailure, Limits
from llmrl.scale import RayConfig
from llmrl.stats import t_interval
from llmrl.workers import run_jobs

RECIPE = "reward-coder"
REWARDS = ("code", "human", "sparse", "file")
FINAL = ("reward", "seed", "success_rate", "env_return", "env_steps", "seconds")


@dataclass
class RewardCoderConfig:
    """Reward-Coder's settings; every field lands in the run's ``config.json``."""

    task: str = "mountain-car"
    """the task (llmrl.envs.code_tasks.TASKS): mountain-car, pendulum, door-key"""
    model: str = "gemma-3-270m"
    """the LM that writes the programs (any llmrl model name, e.g. openai:http://host/v1#model)"""
    seed: int = 0
    """seeds the LM's sampling and the search's trainings; comparison seeds are seed, seed+1, ..."""
    iterations: int = 3
    """search iterations (Eureka: 5)"""
    samples: int = 4
    """programs sampled per iteration (Eureka: 16)"""
    temperature: float = 1.0
    """the LM's sampling temperature (Eureka: 1.0)"""
    max_new_tokens: int = 320
    """longest program body"""
    search_steps: int = 30_000
    """env steps of each candidate's training"""
    final_steps: int = 30_000
    """env steps of each comparison run"""
    final_seeds: int = 3
    """comparison runs per reward"""
    rewards: tuple[str, ...] = ("code", "human", "sparse")
    """what the comparison trains with: code (the LM's best program), human (the env's own), sparse
    (1 when the success condition holds), file (``reward_file``)"""
    reward_file: str = ""
    """a reward program of your own (a .py file defining compute_reward(s, a, s_next)), trained as the
    ``file`` arm through the same sandbox: a bigger model's program, or a hand-written one"""
    eval_episodes: int = 20
    """test episodes behind every fitness and success rate (deterministic policy)"""
    eval_seed: int = 100_000
    """seed of the first test episode"""
    call_seconds: float = 10.0
    """the sandbox's deadline for one batch of rewards"""
    sandbox_weaker: bool = False
    """run even where a sandbox layer is missing (the layers missing are logged)"""
    workers: int = 2
    """trainings side by side (llmrl.workers, one torch thread each)"""
    ray: RayConfig = field(default_factory=RayConfig)
    """Scale out: candidate and comparison trainings on ``workers`` Ray actors"""
    label: str = RECIPE

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}: choose from {', '.join(TASKS)}")
        require_positive(self, "iterations", "samples", "max_new_tokens", "search_steps", "final_steps",
                         "final_seeds", "eval_episodes", "workers")  # fmt: skip
        self.rewards = tuple(self.rewards)
        bad = [r for r in self.rewards if r not in REWARDS]
        if bad:
            raise ValueError(f"unknown reward(s) {bad}: choose from {', '.join(REWARDS)}")
        if self.temperature < 0 or self.call_seconds <= 0:
            raise ValueError("temperature must be >= 0 and call_seconds > 0")
        if self.ray.mode != "sync":
            raise ValueError("ray.mode must be sync: the search has no asynchronous part")
        if ("file" in self.rewards) != bool(self.reward_file):
            raise ValueError("reward_file and the 'file' reward go together: set both (rewards=code,human,sparse,file "
                             "--reward-file my_reward.py) or neither")
        if self.reward_file and not Path(self.reward_file).is_file():
            raise ValueError(f"reward_file {self.reward_file!r} does not exist")


Config = RewardCoderConfig

# Budgets: 10-40 s of PPO per program on this CPU; the comparison trains as long as the search did.
PRESETS: dict[str, RewardCoderConfig] = {
    "cpu": RewardCoderConfig(),
    "cpu-pendulum": RewardCoderConfig(task="pendulum", search_steps=60_000, final_steps=60_000),
    "cpu-door-key": RewardCoderConfig(task="door-key", search_steps=60_000, final_steps=60_000),
    # Eureka's search: 16 samples x 5 iterations; longer trainings.
    "paper": RewardCoderConfig(iterations=5, samples=16, search_steps=100_000, final_steps=200_000, final_seeds=5),
    "smoke": RewardCoderConfig(iterations=1, samples=2, search_steps=2048, final_steps=2048, final_seeds=1,
                               eval_episodes=2, max_new_tokens=96, workers=1),
}

_RESUMABLE = ("workers", "ray", "call_seconds", "sandbox_weaker", "label")


def config_from(preset: str = "cpu", **overrides: Any) -> RewardCoderConfig:
    return _config_from(PRESETS, preset, overrides)


# --- one training ---------------------------------------------------------------------------------


def train(task_name: str, reward: str, code: str | None, steps: int, seed: int, eval_episodes: int, eval_seed: int,
          call_seconds: float = 10.0, allow_weaker: bool = False) -> dict[str, Any]:  # fmt: skip
    """PPO on the task with one reward; the task's success rate on test episodes and the training curves.

    A failing program ends the training early: the result's ``failure`` holds its kind and
    message, and the curves hold what was recorded until then."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    task = get_task(task_name)
    torch.manual_seed(seed)
    start = time.perf_counter()

    def make(i: int):
        def thunk():
            env = task.policy_env("sparse" if reward == "sparse" else "human")
            env = Monitor(env)
            env.reset(seed=seed * 1000 + i)
            env.action_space.seed(seed * 1000 + i)
            return env

        return thunk

    venv: Any = DummyVecEnv([make(i) for i in range(task.n_envs)])
    coded = None
    stats: dict[str, Any] = {"success_curve": [], "env_return_curve": [], "components": {}, "env_steps": 0}
    if reward == "code":
        try:
            coded = SandboxedReward(code or "", limits=Limits(call_seconds=call_seconds), allow_weaker=allow_weaker)
        except CodeFailure as e:  # it does not even load: no training
            venv.close()
            return {**stats, "failure": {"kind": e.kind, "message": e.feedback()[:3000]},
                    "seconds": time.perf_counter() - start}  # fmt: skip
        venv = CodeRewardVecEnv(venv, coded)
    venv = VecNormalize(venv, norm_obs=False, norm_reward=True, gamma=task.ppo.get("gamma", 0.99))

    class Curves(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.successes: list[float] = []
            self.returns: list[float] = []

        def _on_step(self) -> bool:
            for info, done in zip(self.locals["infos"], self.locals["dones"]):
                if done:
                    self.successes.append(float(info.get("success", False)))
                    if "episode" in info:
                        self.returns.append(float(info["episode"]["r"]))
            return True

        def _on_rollout_end(self) -> None:
            if self.successes:
                stats["success_curve"].append(float(np.mean(self.successes)))
                stats["env_return_curve"].append(float(np.mean(self.returns)) if self.returns else 0.0)
            self.successes, self.returns = [], []
            if coded is not None:
                for k, v in venv.venv.take_components().items():
                    stats["components"].setdefault(k, []).append(v)
            stats["env_steps"] = int(self.num_timesteps)

    # Monitor sits below the vector-level reward swap: its returns are the env's own for ``code``
    # and ``human``, the sparse reward's for ``sparse``.
    model = PPO("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, **task.ppo)
    failure = None
    try:
        model.learn(steps, callback=Curves())
    except CodeFailure as e:
        failure = {"kind": e.kind, "message": e.feedback()[:3000]}
        stats["env_steps"] = int(model.num_timesteps)  # the steps it cost count too
    finally:
        if coded is not None:
            coded.close()
    result = {**stats, "failure": failure, "seconds": 0.0}
    if failure is None:
        result.update(evaluate(model, task_name, eval_episodes, eval_seed))
    result["seconds"] = time.perf_counter() - start
    venv.close()
    return result


def evaluate(model: Any, task_name: str, episodes: int, seed: int) -> dict[str, float]:
    """The trained policy (deterministic) on ``episodes`` test episodes: success rate, env return."""
    task = get_task(task_name)
    successes, returns = [], []
    for k in range(episodes):
        env = task.policy_env("human")
        obs, _ = env.reset(seed=seed + k)
        total, done, info = 0.0, False, {}
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, r, terminated, truncated, info = env.step(action)
            total += float(r)
            done = terminated or truncated
        successes.append(float(info.get("success", False)))
        returns.append(total)
        env.close()
    return {"success_rate": float(np.mean(successes)), "env_return": float(np.mean(returns))}


def _train_job(args: dict[str, Any]) -> dict[str, Any]:
    return train(**args)


def _search_job(args: dict[str, Any]) -> dict[str, Any]:
    """One candidate's training, in the search's uniform shape."""
    result = train(**args)
    stats = {k: result[k] for k in ("success_curve", "env_return_curve", "components")}
    if result["failure"] is None:
        stats["env_return"] = result["env_return"]
    return {"failure": result["failure"], "fitness": result.get("success_rate"), "stats": stats,
            "env_steps": result["env_steps"], "seconds": result["seconds"]}  # fmt: skip


def _search(config: RewardCoderConfig, folder: RunFolder, progress: bool) -> list[Candidate]:
    task = get_task(config.task)

    def prompt(done: list[Candidate]) -> str:
        it = max((c.iteration for c in done), default=-1) + 1
        failures = [c for c in done if c.iteration == it - 1 and not c.runnable]
        return reward_prompt(task, best_of(done), failures)

    def job_args(c: Candidate) -> dict[str, Any]:
        return {"task_name": config.task, "reward": "code", "code": c.code, "steps": config.search_steps,
                "seed": config.seed * 1000 + c.iteration * 100 + c.index, "eval_episodes": config.eval_episodes,
                "eval_seed": config.eval_seed + 50_000, "call_seconds": config.call_seconds,
                "allow_weaker": config.sandbox_weaker}  # fmt: skip

    settings = SearchSettings(config.model, config.iterations, config.samples, config.temperature,
                              config.max_new_tokens, config.seed, config.workers, config.ray, config.label)
    return code_search(folder, settings, prompt=prompt, start=program_start(task), job=_search_job,
                       job_args=job_args, progress=progress)


def run(config: RewardCoderConfig, out: str | os.PathLike[str], *, resume: bool = False,
        progress: bool = True) -> RunResult:
    """Search for a reward program, then compare it with the human and sparse rewards."""
    folder = RunFolder(out, RECIPE, config, resume=resume, may_change=_RESUMABLE,
                       identity={"task": config.task, "model": config.model, "seed": config.seed})
    candidates = _search(config, folder, progress)
    best = best_of(candidates)
    if best is not None:
        atomic_write_text(folder.path / "best_reward.py", best.code)
    final_path = folder.path / "final.csv"
    rows = read_rows(final_path, "seed") if final_path.exists() else []
    have = {(r["reward"], int(r["seed"])) for r in rows}
    todo = [(reward, config.seed + k) for reward in config.rewards for k in range(config.final_seeds)
            if (reward, config.seed + k) not in have and (reward != "code" or best is not None)]  # fmt: skip
    programs = {"code": best.code if best else None}
    if config.reward_file:
        programs["file"] = Path(config.reward_file).read_text()
        atomic_write_text(folder.path / "reward_file.py", programs["file"])
    jobs = [({"task_name": config.task, "reward": "code" if reward == "file" else reward, "code": programs.get(reward),
              "steps": config.final_steps, "seed": seed, "eval_episodes": config.eval_episodes,
              "eval_seed": config.eval_seed, "call_seconds": config.call_seconds,
              "allow_weaker": config.sandbox_weaker},) for reward, seed in todo]  # fmt: skip
    final = ProgressLog(final_path, FINAL, key="seed", resume_at=math.inf)  # keeps the rows already there
    for i, result in run_jobs(_train_job, jobs, config.workers, cluster=config.ray):
        reward, seed = todo[i]
        row = {"reward": reward, "seed": seed, "success_rate": result.get("success_rate"),
               "env_return": result.get("env_return"), "env_steps": result["env_steps"],
               "seconds": result["seconds"]}  # fmt: skip
        final.write(row)
        rows.append({k: str(v) for k, v in row.items()})
        if progress:
            print(f"[{config.label}] {reward} seed {seed}: success {row['success_rate']}", flush=True)
    final.close()
    summary = _summary(config, candidates, rows, best)
    atomic_write_json(folder.path / "summary.json", summary)
    metrics = {f"{r}/success_rate": summary["final"][r]["mean"] for r in summary["final"]}
    metrics["runnable_share"] = summary["search"]["runnable_share"]
    folder.finish(metrics)
    files = {"candidates": folder.path / "candidates.jsonl", "final": final_path, "summary": folder.path / "summary.json"}
    return RunResult(RECIPE, folder.path, metrics, files)


def _summary(config: RewardCoderConfig, candidates: list[Candidate], rows: list[dict[str, str]],
             best: Candidate | None) -> dict[str, Any]:  # fmt: skip
    final: dict[str, Any] = {}
    for reward in config.rewards:
        values = [float(r["success_rate"]) for r in rows if r["reward"] == reward and r["success_rate"] not in ("", "None")]
        if values:
            mean, lo, hi = t_interval(values)
            final[reward] = {"mean": mean, "ci95": [lo, hi], "seeds": len(values), "values": values}
    if "code" in config.rewards and best is None:
        final["code"] = {"mean": None, "seeds": 0, "note": "the search found no runnable program"}
    return {"task": config.task, "model": config.model, "search": search_summary(candidates, config.iterations),
            "final": final, "final_steps_per_run": config.final_steps}
