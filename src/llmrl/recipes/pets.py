"""PETS vs SAC at equal env steps, and PETS started from the LM's proposed actions.

The claim tested: model-based RL with a learned probabilistic ensemble and MPC (PETS, Chua et al.
2018, arXiv:1805.12114) needs far fewer env steps than model-free RL — the PETS abstract reports
8× fewer than SAC on half-cheetah. Here, on Pendulum-v1, the continuous cart-pole swing-up
(:mod:`llmrl.envs.cartpole_swingup`) and MuJoCo's Reacher-v5 (Gymnasium), we count **env steps
to a return threshold** stated in advance (``thresholds``) and report the sample-efficiency ratio SAC steps / PETS steps with a
t-interval over seeds. The LM's role (issue 20 §1): ``pets-lm`` is PETS whose CEM starts each
trial from an action sequence the LM writes after reading the task and the start state in words
(:class:`llmrl.roles.mpc_prior.LMActionPrior`); the question is whether it cuts the steps to
threshold of plain PETS.

Methods, per task × seed, each with the budget ``env_steps[task]`` (SAC: ``sac_env_steps`` where
given — longer, so that its steps to threshold are measured rather than bounded; the return
table still compares the methods at equal steps). A trial is one episode of the task, cut at
``pets.trial_length``: 200 steps on Pendulum and the swing-up, Reacher's own 50.

* ``pets`` — :func:`llmrl.rl.mbrl.train_pets` with ``pets`` (model and planner settings; its
  ``env_steps`` and ``seed`` are set here), one trial at a time, so that every trial's
  on-policy return lands in the records and the agent is evaluated at the checkpoints.
* ``sac`` — Stable-Baselines3 SAC with its defaults, and rl-zoo's hyperparameters where rl-zoo
  has the task (:data:`SAC_ZOO`: Pendulum-v1 learning rate 1e-3); rl-zoo's Reacher entry is
  for PPO/TD3, and the swing-up is ours, so SB3's defaults there. Its buffer holds the whole
  budget, as SB3's default 1M does.
* ``pets-lm`` — ``pets`` with the LM's prior at the start of every MPC trial and every
  evaluation episode (one ``generate`` call each, memoised per start state; never mid-episode:
  the CEM's warm start carries the plan on, and LM calls cost ~1 s on a CPU). The prior writes
  one number per step, so it runs on the 1-D tasks only (Reacher's action is 2-D).

Every ``eval_every`` env steps each method plays ``eval_episodes`` episodes from reset seeds
``EVAL_SEED + i`` — the same for every method and seed, disjoint from training seeds — PETS
planning as in training (``agent.reset`` before each episode), SAC deterministic. A method
reaches a task's threshold at the first checkpoint whose mean evaluation return is at least the
threshold; a run that never does is censored at its budget.

Thresholds (``thresholds``, one per task), against the ``cpu`` planner on the *true* dynamics
(:data:`llmrl.rl.mbrl.TRUE_DYNAMICS`) from the same three evaluation starts — the best a
learned model can make this planner do:

* Pendulum −300. The true-dynamics planner scores −126, −371 and −247 on the three starts
  (mean −248, two planner seeds alike; a random policy about −1,200). The first threshold, −200,
  was unreachable even for it — one start needs a long swing — so it was moved after a one-seed
  pilot, before the three-seed study (docs/results/mbrl.md, "changes after results").
* Swing-up 150 of at most 200. The true-dynamics planner scores 179–186 (mean 183 and 186 for
  two planner seeds): the pole is up after ~20 steps and held near the track's centre; 150 needs
  the swing-up within ~40 steps and a steady hold after it.
* Reacher −10 (a random policy scores about −43; Gymnasium's ``reward_threshold``, −3.75, is
  its "solved"). MuJoCo has no torch twin here, so there is no true-dynamics reference; a
  one-seed pilot of the ``cpu`` PETS evaluated −23, −13 and −9.5 after 400, 800 and 1,600 env
  steps, so −3.75 would censor every run and compare nothing. −10 turned out a low bar: doing
  nothing scores −13.5 on these starts (docs/results/mbrl.md shows a one-seed run to −6).

Run folder: ``records.jsonl`` (kinds ``episode``: every training trial/episode's return;
``eval``: every evaluation episode's return at a checkpoint, with planning time; ``unit``: a
finished method × task × seed, with its steps to threshold, actions/s and LM statistics),
``summary.json``, and ``runs/<task>-<method>-s<seed>/`` (each training run's own resumable
folder). ``scripts/mbrl_results.py`` recomputes the tables from the records.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from llmrl.config import config_from as _config_from
from llmrl.config import require_positive
from llmrl.envs import CARTPOLE_SWINGUP_ID
from llmrl.rl import mbrl
from llmrl.rl.mbrl import PETSConfig
from llmrl.roles.mpc_prior import TASK_TEXTS, LMActionPrior
from llmrl.runs import (JsonLines, RunFolder, RunResult, atomic_write_bytes, atomic_write_json, env_seeds,
                        read_json_lines)
from llmrl.stats import t_interval

RECIPE = "pets"
METHODS = ("pets", "sac", "pets-lm")
TASKS = ("Pendulum-v1", CARTPOLE_SWINGUP_ID, "Reacher-v5")
SHORT = {"Pendulum-v1": "pendulum", CARTPOLE_SWINGUP_ID: "swingup", "Reacher-v5": "reacher"}
EVAL_SEED = 10**7  # evaluation resets; PETS trials use seed · 10,000 + trial, SAC's env its seed
SAC_ZOO: dict[str, dict[str, Any]] = {"Pendulum-v1": {"learning_rate": 1e-3}}
"""rl-zoo's SAC hyperparameters (hyperparams/sac.yml) beyond SB3's defaults, by env id."""
STEP_SECONDS = {"Pendulum-v1": 0.05, CARTPOLE_SWINGUP_ID: 0.08, "Reacher-v5": 0.02}  # control interval, told to the LM


def trial_steps(env_id: str, cap: int) -> int:
    """A task's trial (= episode) length: its registered episode length, at most ``cap``."""
    import gymnasium as gym

    registered = gym.spec(env_id).max_episode_steps
    return min(cap, registered) if registered else cap


@dataclass
class PETSStudyConfig:
    """PETS vs SAC (and PETS with the LM's prior); every field lands in the run's ``config.json``."""

    tasks: tuple[str, ...] = TASKS
    """env ids: Pendulum-v1, llmrl/ContinuousCartPoleSwingUp-v0 and/or Reacher-v5 (PETS plans with their known rewards)"""
    env_steps: tuple[int, ...] = (3_200, 3_200, 3_200)
    """each method's budget of env steps, one per task"""
    thresholds: tuple[float, ...] = (-300.0, 150.0, -10.0)
    """the return each task's headline counts steps to, one per task (stated in advance; see the module docstring)"""
    sac_env_steps: tuple[int, ...] | None = None
    """SAC's budget per task (None: env_steps). SAC is cheap, so a longer budget measures its steps to
    threshold where PETS's budget would only bound them; returns at equal steps are still compared"""
    methods: tuple[str, ...] = METHODS
    """pets, sac, pets-lm"""
    seeds: tuple[int, ...] = (0, 1, 2)
    """training seeds; every method runs each"""
    eval_every: int = 400
    """env steps between evaluations; a multiple of pets.trial_length, so PETS is evaluated after whole trials"""
    eval_episodes: int = 3
    """evaluation episodes per checkpoint (reset seeds EVAL_SEED + i, the same for every method)"""
    stop_at_threshold: bool = False
    """end a method's run at the first checkpoint that reaches the threshold (the headline needs no more;
    saves most of PETS's planning time, but leaves later cells of the return table empty)"""
    pets: PETSConfig = field(default_factory=lambda: replace(mbrl.PRESETS["cpu"]))
    """PETS's model, planner and trial settings (its env_steps and seed are set per task and seed)"""
    lm: str = "gemma-3-270m"
    """the LM that proposes pets-lm's actions (any llmrl.lm.load_model name)"""
    lm_dtype: str = "bf16"
    """dtype of a local LM (bf16 is 2–3× faster than fp32 on a CPU)"""
    prior_steps: int = 40
    """env steps of each trial that the LM's proposal covers (the planner's default takes over after)"""
    prior_hold: int = 4
    """env steps each number the LM writes is held, so it writes prior_steps / prior_hold numbers"""
    prior_std: float | None = None
    """CEM's starting spread around the LM's proposal, as a share of half the action range (None: the
    planner's default)"""
    torch_threads: int = 2
    """torch CPU threads (planning and model fits)"""
    label: str = RECIPE
    """series name in config.json"""

    def __post_init__(self) -> None:
        self.tasks, self.methods, self.seeds = tuple(self.tasks), tuple(self.methods), tuple(int(s) for s in self.seeds)
        self.env_steps = tuple(int(s) for s in self.env_steps)
        self.thresholds = tuple(float(t) for t in self.thresholds)
        if self.sac_env_steps is not None:
            self.sac_env_steps = tuple(int(s) for s in self.sac_env_steps)
        for name, given, valid in (("tasks", self.tasks, TASKS), ("methods", self.methods, METHODS)):
            bad = [g for g in given if g not in valid]
            if bad or not given:
                raise ValueError(f"{name}: unknown or empty ({bad}); choose from {', '.join(valid)}")
        for name in ("env_steps", "thresholds", "sac_env_steps"):
            if getattr(self, name) is not None and len(getattr(self, name)) != len(self.tasks):
                raise ValueError(f"{name}: give one value per task ({len(self.tasks)}), got {getattr(self, name)}")
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")
        require_positive(self, "eval_every", "eval_episodes", "prior_steps", "prior_hold", "torch_threads")
        for task in self.tasks:
            if self.eval_every % trial_steps(task, self.pets.trial_length):
                raise ValueError(f"eval_every ({self.eval_every}) must be a multiple of {task}'s trial length "
                                 f"({trial_steps(task, self.pets.trial_length)}: pets.trial_length or the env's "
                                 "episode length): PETS is evaluated after whole trials")
        if min(self.env_steps + (self.sac_env_steps or ())) < self.eval_every:
            raise ValueError(f"env_steps {self.env_steps}, sac_env_steps {self.sac_env_steps}: every budget needs "
                             f"at least one evaluation (eval_every = {self.eval_every})")
        if self.prior_std is not None and not self.prior_std > 0:
            raise ValueError(f"prior_std must be positive or None, got {self.prior_std}")


Config = PETSStudyConfig

PRESETS: dict[str, PETSStudyConfig] = {
    # PETS cpu sizes (3 members of 2×64, CEM 3×100, 10 particles). Measured 2026-12-07, one thread:
    # run alone, a Pendulum PETS unit of 3,200 steps took 464 s (38-42 ms an action) and SAC's 27 s;
    # with two or three runs on the 2 cores PETS planning slowed to 260-320 ms an action.
    # SAC gets 2× (Pendulum) and 8× PETS's budget: cheap, and it turns a bound into a measurement.
    "cpu": PETSStudyConfig(stop_at_threshold=True, sac_env_steps=(6_400, 25_600, 25_600)),
    # mbrl-lib's pets_cartpole (7 × 4×200, CEM 5×350, 20 particles, TS1) and longer budgets, so
    # SAC can reach the thresholds; evaluations as rl-zoo's (10 episodes). GPU-scale for PETS.
    "paper": PETSStudyConfig(env_steps=(20_000, 50_000, 20_000), eval_every=1_000, eval_episodes=10,
                             pets=replace(mbrl.PRESETS["pets_cartpole"])),
    "smoke": PETSStudyConfig(env_steps=(40, 40, 40), seeds=(0,), eval_every=20, eval_episodes=1, prior_steps=6,
                             prior_hold=2, torch_threads=1,
                             pets=PETSConfig(ensemble_size=2, hidden_sizes=(16,), num_elites=2, model_epochs=2,
                                             patience=1, horizon=4, cem_iterations=2, population=20, particles=2,
                                             trial_length=10, env_steps=40)),
}

_RESUMABLE = ("torch_threads", "label", "seeds", "eval_episodes", "stop_at_threshold", "env_steps", "methods",
              "tasks", "thresholds")


def config_from(preset: str = "cpu", **overrides: Any) -> PETSStudyConfig:
    return _config_from(PRESETS, preset, overrides)


def load_lm(name: str, dtype: str) -> Any:
    """The LM of pets-lm (a function, so tests can stand a fake in)."""
    from llmrl.lm import load_model

    return load_model(name, dtype=dtype)


# --------------------------------------------------------------------------- evaluation
def evaluate(act: Callable[[np.ndarray], np.ndarray], reset: Callable[[int], None], env: Any,
             seeds: list[int]) -> tuple[list[float], float, int]:
    """Returns of one episode per seed (``reset(i)`` before episode i), seconds spent choosing
    actions, and actions chosen."""
    returns, seconds, actions = [], 0.0, 0
    for i, s in enumerate(seeds):
        obs, _ = env.reset(seed=s)
        reset(i)
        total, done = 0.0, False
        while not done:
            t0 = time.perf_counter()
            action = act(obs)
            seconds += time.perf_counter() - t0
            obs, reward, terminated, truncated, _ = env.step(action)
            total, actions, done = total + float(reward), actions + 1, terminated or truncated
        returns.append(total)
    return returns, seconds, actions


# --------------------------------------------------------------------------- the two learners, stepwise
class PETSRun:
    """PETS advanced one trial at a time through :func:`train_pets` (which checkpoints each trial)."""

    def __init__(self, config: PETSStudyConfig, env_id: str, seed: int, path: Path, prior: Any = None) -> None:
        import gymnasium as gym

        self.config, self.env_id, self.seed, self.path, self.prior = config, env_id, seed, path, prior
        self.pets = replace(config.pets, seed=seed, trial_length=trial_steps(env_id, config.pets.trial_length))
        self.env = gym.make(env_id, max_episode_steps=self.pets.trial_length)  # for start states and evaluation
        self.result: mbrl.PETSResult | None = None
        self.plan_ms: dict[int, float | None] = {}
        state = path / "study_state.json"
        if state.exists():  # the trials train_pets has checkpointed (or one fewer): reload without training
            import json

            self._train(json.loads(state.read_text())["env_steps"], prior=None)

    @property
    def env_steps(self) -> int:
        return self.result.trial_env_steps[-1] if self.result and self.result.trial_env_steps else 0

    def episodes(self) -> list[dict[str, Any]]:
        r = self.result
        return [] if r is None else [{"env_steps": s, "return": g, "plan_ms": self.plan_ms.get(s)}
                                     for s, g in zip(r.trial_env_steps, r.trial_returns)]

    def _train(self, env_steps: int, prior: Any) -> None:
        def note(trial: int, row: dict[str, Any]) -> None:
            self.plan_ms[int(row["env_steps"])] = row["plan_ms"]

        started = self.path.is_dir() and any(self.path.iterdir())
        self.result = mbrl.train_pets(replace(self.pets, env_steps=env_steps), self.env_id, out_dir=self.path,
                                      resume=started, progress=note, action_prior=prior)
        atomic_write_json(self.path / "study_state.json", {"env_steps": self.env_steps})

    def advance(self) -> None:
        """One more trial, started from the LM's proposal for its start state if this is pets-lm."""
        trial = len(self.result.trial_returns) if self.result else 0
        prior = None
        if self.prior is not None and trial >= self.pets.initial_trials:
            # train_pets resets trial k with seed · 10,000 + k (its documented seeds): the same start state
            obs, _ = self.env.reset(seed=env_seeds(self.seed, 1, stride=10_000, offset=trial)[0])
            prior = self.prior(obs)
        self._train(self.env_steps + self.pets.trial_length, prior)

    def evaluate(self, seeds: list[int]) -> tuple[list[float], float, int]:
        import torch

        agent = self.result.agent  # type: ignore[union-attr]
        # Its own generator: evaluation neither draws from nor depends on training's randomness.
        agent.generator = torch.Generator(device=self.pets.device).manual_seed(self.seed * 1_000_003 + self.env_steps)
        starts = [self.env.reset(seed=s)[0] for s in seeds]
        priors = self.prior.propose(starts) if self.prior is not None else [None] * len(seeds)
        return evaluate(agent.act, lambda i: agent.reset(priors[i]), self.env, seeds)

    def close(self) -> None:
        self.env.close()


class SACRun:
    """Stable-Baselines3 SAC advanced ``eval_every`` steps at a time; model, replay buffer and
    episode returns are checkpointed together (one atomic file) after each advance."""

    def __init__(self, config: PETSStudyConfig, env_id: str, seed: int, path: Path, budget: int) -> None:
        import gymnasium as gym
        from stable_baselines3 import SAC

        self.config, self.path = config, path
        length = trial_steps(env_id, config.pets.trial_length)  # PETS's trials are SAC's episodes
        self.env = gym.make(env_id, max_episode_steps=length)
        self.eval_env = gym.make(env_id, max_episode_steps=length)
        self.checkpoint = path / "checkpoint.pkl"
        self._episodes: list[dict[str, Any]] = []
        if self.checkpoint.exists():  # our own file, written below
            state = pickle.loads(self.checkpoint.read_bytes())
            self.model = SAC.load(io.BytesIO(state["model"]), env=self.env, device="cpu")
            self.model.load_replay_buffer(io.BytesIO(state["replay"]))
            self._episodes = state["episodes"]
        else:
            # A buffer of the whole budget never wraps, so it behaves as SB3's default 1M.
            self.model = SAC("MlpPolicy", self.env, seed=seed, device="cpu", verbose=0, buffer_size=max(budget, 1),
                             **SAC_ZOO.get(env_id, {}))

    @property
    def env_steps(self) -> int:
        return int(self.model.num_timesteps)

    def episodes(self) -> list[dict[str, Any]]:
        return self._episodes

    def advance(self) -> None:
        from stable_baselines3.common.callbacks import BaseCallback

        episodes = self._episodes

        class Episodes(BaseCallback):
            def _on_step(self) -> bool:
                for info in self.locals["infos"]:
                    if "episode" in info:  # SB3's Monitor wrapper
                        episodes.append({"env_steps": int(self.num_timesteps), "return": float(info["episode"]["r"])})
                return True

        self.model.learn(self.config.eval_every, reset_num_timesteps=False, callback=Episodes())
        model, replay = io.BytesIO(), io.BytesIO()
        self.model.save(model)
        self.model.save_replay_buffer(replay)
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.checkpoint, pickle.dumps(
            {"model": model.getvalue(), "replay": replay.getvalue(), "episodes": self._episodes}))

    def evaluate(self, seeds: list[int]) -> tuple[list[float], float, int]:
        return evaluate(lambda obs: self.model.predict(obs, deterministic=True)[0], lambda i: None, self.eval_env,
                        seeds)

    def close(self) -> None:
        self.env.close()
        self.eval_env.close()


# --------------------------------------------------------------------------- the study
def run(config: PETSStudyConfig, out: str | os.PathLike[str], *, resume: bool = False,
        progress: bool = True) -> RunResult:  # fmt: skip
    """Every task × seed × method: train with evaluations at checkpoints, then summarise."""
    import torch

    torch.set_num_threads(config.torch_threads)
    folder = RunFolder(out, RECIPE, config, resume=resume, may_change=_RESUMABLE,
                       identity={"label": config.label, "env_id": ",".join(config.tasks)})
    path = folder.path / "records.jsonl"
    records = read_json_lines(path) if folder.resumed else []
    log = JsonLines(path, "env_steps", resume_at=math.inf)
    eval_seeds = [EVAL_SEED + i for i in range(config.eval_episodes)]
    lm: Any = None

    def emit(record: dict[str, Any]) -> None:
        log.write(record)
        log.flush()
        records.append(record)

    sac_budgets = config.sac_env_steps or config.env_steps
    for task, pets_budget, sac_budget, threshold in zip(config.tasks, config.env_steps, sac_budgets,
                                                         config.thresholds):
        for seed in config.seeds:
            for method in config.methods:
                if method == "pets-lm" and task not in TASK_TEXTS:  # the prior writes one number a step
                    if progress and seed == config.seeds[0]:
                        print(f"[{config.label}] {SHORT[task]}: no pets-lm (the LM prior has no words for "
                              f"{task}'s {_action_space(task).shape[0]}-D action)", flush=True)
                    continue
                budget = sac_budget if method == "sac" else pets_budget
                unit = {"task": task, "method": method, "seed": seed}
                mine = [r for r in records if all(r[k] == v for k, v in unit.items())]
                if any(r["kind"] == "unit" for r in mine):
                    continue
                name = f"{SHORT[task]}-{method}-s{seed}"
                prior = None
                if method == "pets-lm":
                    lm = lm or load_lm(config.lm, config.lm_dtype)
                    space = _action_space(task)
                    prior = LMActionPrior(lm, task, action_low=space.low, action_high=space.high,
                                          steps=config.prior_steps, hold=config.prior_hold, std=config.prior_std,
                                          step_seconds=STEP_SECONDS[task])
                t0 = time.time()
                learner: PETSRun | SACRun = (
                    SACRun(config, task, seed, folder.path / "runs" / name, budget) if method == "sac"
                    else PETSRun(config, task, seed, folder.path / "runs" / name, prior))
                _train_unit(config, learner, unit, mine, emit, eval_seeds, budget, threshold)
                learner.close()
                evals = [r for r in records if r["kind"] == "eval" and all(r[k] == v for k, v in unit.items())]
                reached = steps_to_threshold(evals, threshold)
                plan_s, actions = sum(r["act_seconds"] for r in evals), sum(r["actions"] for r in evals)
                emit({"kind": "unit", **unit, "env_steps": learner.env_steps, "budget": budget, "threshold": threshold,
                      "steps_to_threshold": reached, "actions_per_s": actions / plan_s if plan_s else None,
                      "lm_stats": vars(prior.stats) if prior is not None else None, "seconds": time.time() - t0})
                if progress:
                    print(f"[{config.label}] {SHORT[task]} {method} seed {seed}: threshold {threshold:g} "
                          f"{'not reached' if reached is None else f'reached at {reached} steps'}, "
                          f"{actions / plan_s if plan_s else float('nan'):.0f} actions/s "
                          f"({time.time() - t0:.0f} s)", flush=True)
    log.close()
    summary = summarise(records)
    atomic_write_json(folder.path / "summary.json", summary)
    metrics = {f"{SHORT.get(task, task)}/{key}": value for task, cell in summary["tasks"].items()
               for key, value in _headline(cell).items()}
    folder.finish(metrics)
    return RunResult(RECIPE, folder.path, metrics, {"records": path, "summary": folder.path / "summary.json"},
                     report=steps_table(summary))


def _action_space(env_id: str) -> Any:
    import gymnasium as gym

    env = gym.make(env_id)
    space = env.action_space
    env.close()
    return space


def _train_unit(config: PETSStudyConfig, learner: PETSRun | SACRun, unit: dict[str, Any], mine: list[dict[str, Any]],
                emit: Callable[[dict[str, Any]], None], eval_seeds: list[int], budget: int, threshold: float) -> None:
    """Advance ``learner`` to its budget, emitting its new training episodes and an evaluation at
    every checkpoint; a resumed learner first catches up on what its last checkpoint holds."""
    seen = {r["env_steps"] for r in mine if r["kind"] == "episode"}
    evaluated = {r["env_steps"]: float(np.mean(r["returns"])) for r in mine if r["kind"] == "eval"}

    def catch_up() -> None:
        for e in learner.episodes():
            if e["env_steps"] not in seen:
                seen.add(e["env_steps"])
                emit({"kind": "episode", **unit, **e})
        steps = learner.env_steps
        if steps and steps % config.eval_every == 0 and steps not in evaluated:
            returns, seconds, actions = learner.evaluate(eval_seeds)
            evaluated[steps] = float(np.mean(returns))
            emit({"kind": "eval", **unit, "env_steps": steps, "returns": returns, "act_seconds": seconds,
                  "actions": actions})

    catch_up()
    while learner.env_steps < budget:
        if config.stop_at_threshold and any(v >= threshold for v in evaluated.values()):
            break
        learner.advance()
        catch_up()


# --------------------------------------------------------------------------- results
def steps_to_threshold(evals: list[dict[str, Any]], threshold: float) -> int | None:
    """Env steps of the first checkpoint whose mean evaluation return reaches ``threshold`` (None: never)."""
    for r in sorted(evals, key=lambda r: r["env_steps"]):
        if np.mean(r["returns"]) >= threshold:
            return int(r["env_steps"])
    return None


def _interval(values: list[float]) -> dict[str, Any]:
    mean, lo, hi = t_interval(values) if values else (None, None, None)
    return {"mean": mean, "low": lo, "high": hi, "n": len(values)}


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task: each method's steps to threshold (t-interval over the seeds that reached it, and
    how many did), planning speed, mean evaluation return at every checkpoint, and the ratios
    SAC / PETS and PETS / PETS-LM of steps to threshold, paired by seed. ``ratio`` uses the seeds
    where both reached the threshold; ``ratio_at_least`` counts an unreached numerator run as its
    budget (a lower bound when SAC never got there)."""
    units = [r for r in records if r["kind"] == "unit"]
    out: dict[str, Any] = {"tasks": {}}
    for task in dict.fromkeys(r["task"] for r in units):
        cell: dict[str, Any] = {"methods": {}, "ratios": {}}
        by_method: dict[str, dict[int, dict[str, Any]]] = {}
        for r in units:
            if r["task"] == task:
                by_method.setdefault(r["method"], {})[r["seed"]] = r
        for method, seeds in by_method.items():
            reached = [float(u["steps_to_threshold"]) for u in seeds.values() if u["steps_to_threshold"] is not None]
            speeds = [u["actions_per_s"] for u in seeds.values() if u["actions_per_s"]]
            curve: dict[int, list[float]] = {}
            for r in records:
                if r["kind"] == "eval" and r["task"] == task and r["method"] == method:
                    curve.setdefault(int(r["env_steps"]), []).append(float(np.mean(r["returns"])))
            first = next(iter(seeds.values()))
            cell["threshold"], cell["budget"] = first["threshold"], first["budget"]
            cell["methods"][method] = {
                "steps_to_threshold": _interval(reached), "seeds": len(seeds), "reached": len(reached),
                "per_seed": {s: u["steps_to_threshold"] for s, u in sorted(seeds.items())},
                "actions_per_s": _interval(speeds),
                "eval_return": {s: _interval(v) for s, v in sorted(curve.items())}}
        for top, bottom in (("sac", "pets"), ("sac", "pets-lm"), ("pets", "pets-lm")):
            if top in by_method and bottom in by_method:
                both, bound = [], []
                for seed, u in by_method[bottom].items():
                    v = by_method[top].get(seed)
                    if v is None or u["steps_to_threshold"] is None:
                        continue
                    if v["steps_to_threshold"] is not None:
                        both.append(v["steps_to_threshold"] / u["steps_to_threshold"])
                    bound.append((v["steps_to_threshold"] or v["budget"]) / u["steps_to_threshold"])
                cell["ratios"][f"{top}/{bottom}"] = {"ratio": _interval(both), "ratio_at_least": _interval(bound)}
        out["tasks"][task] = cell
    return out


def _headline(cell: dict[str, Any]) -> dict[str, Any]:
    metrics = {f"{m}/steps_to_threshold": v["steps_to_threshold"]["mean"] for m, v in cell["methods"].items()}
    metrics.update({f"{k}/ratio": v["ratio"]["mean"] for k, v in cell["ratios"].items()})
    return metrics


def _fmt(cell: dict[str, Any], digits: int = 0) -> str:
    if cell["mean"] is None:
        return "—"
    return f"{cell['mean']:.{digits}f} [{cell['low']:.{digits}f}, {cell['high']:.{digits}f}]"


def steps_table(summary: dict[str, Any]) -> str:
    """Markdown: per task and method, steps to threshold [95% t-interval] (seeds reached / run) and actions/s."""
    lines = ["| task | threshold | method | steps to threshold | reached | actions/s |", "|---|---|---|---|---|---|"]
    for task, cell in summary["tasks"].items():
        for method, m in cell["methods"].items():
            lines.append(f"| {SHORT.get(task, task)} | {cell['threshold']:g} | {method} "
                         f"| {_fmt(m['steps_to_threshold'])} | {m['reached']}/{m['seeds']} "
                         f"| {_fmt(m['actions_per_s'])} |")
    return "\n".join(lines)


def ratio_table(summary: dict[str, Any]) -> str:
    """Markdown: the ratios of steps to threshold, paired by seed [95% t-interval]."""
    lines = ["| task | ratio | both reached | counting unreached as the budget |", "|---|---|---|---|"]
    for task, cell in summary["tasks"].items():
        for name, r in cell["ratios"].items():
            lines.append(f"| {SHORT.get(task, task)} | {name} | {_fmt(r['ratio'], 2)} (n={r['ratio']['n']}) "
                         f"| ≥ {_fmt(r['ratio_at_least'], 2)} (n={r['ratio_at_least']['n']}) |")
    return "\n".join(lines)


def return_table(summary: dict[str, Any], checkpoints: list[int] | None = None) -> str:
    """Markdown: mean evaluation return [95% t-interval over seeds] at each checkpoint, per task and method."""
    blocks = []
    for task, cell in summary["tasks"].items():
        steps = checkpoints or sorted({int(s) for m in cell["methods"].values() for s in m["eval_return"]})
        methods = list(cell["methods"])
        lines = [f"| {SHORT.get(task, task)}: env steps | " + " | ".join(methods) + " |",
                 "|---" * (len(methods) + 1) + "|"]
        for s in steps:
            cells = []
            for m in methods:
                v = cell["methods"][m]["eval_return"].get(s) or cell["methods"][m]["eval_return"].get(str(s))
                cells.append("" if v is None else f"{_fmt(v)} (n={v['n']})")
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
