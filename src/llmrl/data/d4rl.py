"""D4RL-style offline datasets, made here from a seed: random, medium, medium-replay, expert.

D4RL's files cannot be downloaded on many machines (this one included), and its MuJoCo sets were
recorded with old simulators. We make the same four kinds of data on today's Gymnasium tasks with
the recipe D4RL describes (Fu et al. 2020, §5):

* a behaviour agent, Soft Actor-Critic (Stable-Baselines3), is trained online from the seed;
  its actor is snapshotted every ``snapshot_every`` steps and each snapshot's return measured;
* ``random``: a uniformly random policy;
* ``medium``: the first snapshot that reaches ``medium_level`` of the way from the random return
  to the expert return (D4RL: "about a third of the expert"), its actions sampled (SAC's
  stochastic policy, as D4RL's data);
* ``medium-replay``: SAC's replay buffer up to the step that snapshot was taken (all it saw
  while learning to be "medium");
* ``expert``: the final snapshot, sampled;
* ``medium-expert``: medium and expert episodes together (D4RL's 50/50 mix).

Reference returns (for ``normalized_score`` = 100·(R − R_random)/(R_expert − R_random)) are the
random policy's mean return and the final snapshot's mean deterministic return, each over
``reference_episodes`` episodes on evaluation seeds disjoint from the data's.

Everything is a function of (task, seed, budget): SAC runs on one torch thread with seeded
networks, environments and sampling, so ``make`` rebuilds a dataset bit for bit (the arrays'
SHA-256 is stored in the metadata, and tested). Datasets are cached under
``llmrl.config.cache_dir()/datasets/<version>/<task>/`` and export to Minari with
:meth:`EpisodeDataset.to_minari` (``llmrl data make ... --minari``).
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from llmrl.config import cache_dir
from llmrl.data.episodes import Episode, EpisodeDataset

VERSION = "v0"
"""Bumped whenever the recipe below changes what a (task, seed, budget) produces."""
QUALITIES = ("random", "medium", "medium-replay", "expert", "medium-expert")


@dataclass(frozen=True)
class TaskSpec:
    """How one task's behaviour agent is trained and its datasets are sized."""

    env_id: str
    sac_steps: int
    """Online SAC steps; the final snapshot is the expert (D4RL trained to convergence)."""
    dataset_steps: int
    """Steps per dataset (whole episodes, so a little more); D4RL used 1M (medium-replay: what the buffer held)."""
    snapshot_every: int
    """Steps between actor snapshots (each one's return is measured on ``snapshot_episodes`` episodes)."""
    learning_starts: int = 100
    """Random steps before SAC's first update (Stable-Baselines3 / rl-zoo values)."""
    learning_rate: float = 3e-4
    """SAC's learning rate (rl-zoo: 1e-3 for Pendulum, 3e-4 for MuJoCo)."""
    medium_level: float = 1 / 3
    """medium = the first snapshot reaching this fraction of the way from random to expert return."""
    snapshot_episodes: int = 3
    reference_episodes: int = 20


TASKS: dict[str, TaskSpec] = {
    # Pendulum learns in ~3k steps: snapshots every 100 steps catch a "medium" policy on the way.
    "pendulum": TaskSpec("Pendulum-v1", sac_steps=10_000, dataset_steps=50_000, snapshot_every=100,
                         learning_rate=1e-3, snapshot_episodes=5),
    "halfcheetah": TaskSpec("HalfCheetah-v5", sac_steps=100_000, dataset_steps=200_000, snapshot_every=5_000,
                            learning_starts=10_000),
    "hopper": TaskSpec("Hopper-v5", sac_steps=300_000, dataset_steps=200_000, snapshot_every=10_000,
                       learning_starts=10_000),
}
"""The tasks ``llmrl data make`` knows. Budgets are this project's CPU scale: D4RL trained SAC for
1M steps and kept 1M transitions per set; pass ``sac_steps``/``dataset_steps`` to go there."""


def parse_name(name: str) -> tuple[str, str]:
    """``"pendulum-medium-replay"`` -> ``("pendulum", "medium-replay")``, with a clear error."""
    for task in TASKS:
        if name.startswith(task + "-") and name[len(task) + 1:] in QUALITIES:
            return task, name[len(task) + 1:]
    raise ValueError(
        f"unknown dataset {name!r}: names are <task>-<quality> with task in {sorted(TASKS)} and quality in "
        f"{list(QUALITIES)} (e.g. pendulum-medium-replay)"
    )


# --------------------------------------------------------------------------- the behaviour agent
@dataclass
class Behaviour:
    """What training the behaviour agent leaves: actor snapshots, their returns, SAC's replay
    buffer as episodes (in the order they were collected), and the reference returns."""

    task: str
    seed: int
    spec: TaskSpec
    snapshot_steps: list[int]
    snapshot_returns: list[float]
    snapshots: list[dict[str, Any]]  # actor state_dicts
    replay: list[Episode]
    replay_end_steps: list[int]  # env step at which each replay episode ended
    random_return: float
    expert_return: float

    @property
    def medium_index(self) -> int:
        target = self.random_return + self.spec.medium_level * (self.expert_return - self.random_return)
        for i, r in enumerate(self.snapshot_returns):
            if r >= target:
                return i
        return len(self.snapshots) - 1


def _sac(spec: TaskSpec, seed: int, buffer_size: int = 1_000_000):
    import gymnasium as gym
    from stable_baselines3 import SAC

    env = gym.make(spec.env_id)
    return SAC("MlpPolicy", env, seed=seed, learning_rate=spec.learning_rate, learning_starts=spec.learning_starts,
               buffer_size=buffer_size, device="cpu", verbose=0)


def train_behaviour(task: str, seed: int, spec: TaskSpec | None = None,
                    progress: Callable[[str], None] | None = None) -> Behaviour:
    """Train SAC on ``task`` from ``seed``, snapshotting its actor (see the module docstring)."""
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    spec = spec or TASKS[task]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same floating-point sums on every machine
    try:
        model = _sac(spec, seed)
        steps, returns, snapshots = [], [], []

        class Snapshot(BaseCallback):
            def _on_step(self) -> bool:
                if self.num_timesteps % spec.snapshot_every == 0:
                    snap = copy.deepcopy(model.actor.state_dict())
                    steps.append(self.num_timesteps)
                    snapshots.append(snap)
                    returns.append(float(np.mean(_returns(spec.env_id, _actor_policy(model, snap, True),
                                                          spec.snapshot_episodes, _eval_seed(seed, 1)))))
                    if progress and len(steps) % 10 == 0:
                        progress(f"{task} seed {seed}: step {self.num_timesteps}, return {returns[-1]:.1f}")
                return True

        model.learn(spec.sac_steps, callback=Snapshot())
        replay, ends = _replay_episodes(model)
        random_return = float(np.mean(_returns(spec.env_id, _random_policy(spec.env_id, seed),
                                               spec.reference_episodes, _eval_seed(seed, 2))))
        expert_return = float(np.mean(_returns(spec.env_id, _actor_policy(model, snapshots[-1], True),
                                               spec.reference_episodes, _eval_seed(seed, 2))))
    finally:
        torch.set_num_threads(threads)
    return Behaviour(task, seed, spec, steps, returns, snapshots, replay, ends, random_return, expert_return)


def _eval_seed(seed: int, purpose: int) -> int:
    # Evaluation episodes use seeds far from the data's (seed*10_000 + episode index).
    return 10**8 + 10**6 * purpose + 1000 * seed


def _replay_episodes(model) -> tuple[list[Episode], list[int]]:
    """SAC's replay buffer cut into episodes. The buffer keeps actions scaled to [-1, 1]; they are
    mapped back to the environment's range."""
    buf = model.replay_buffer
    n = buf.buffer_size if buf.full else buf.pos
    obs, nxt = buf.observations[:n, 0], buf.next_observations[:n, 0]
    actions = model.policy.unscale_action(buf.actions[:n, 0])
    rewards, dones, timeouts = buf.rewards[:n, 0], buf.dones[:n, 0] > 0, buf.timeouts[:n, 0] > 0
    episodes, ends, start = [], [], 0
    for t in range(n):
        if dones[t] or t == n - 1:
            sl = slice(start, t + 1)
            episodes.append(Episode(
                observations=np.concatenate([obs[sl], nxt[t:t + 1]]),
                actions=actions[sl], rewards=rewards[sl],
                terminations=dones[sl] & ~timeouts[sl],
                truncations=(dones[sl] & timeouts[sl]) | (np.arange(start, t + 1) == n - 1) & ~dones[sl],
                goal="", infos={"source": "replay"}))
            ends.append(t + 1)
            start = t + 1
    return episodes, ends


# --------------------------------------------------------------------------- policies and rollouts
def _random_policy(env_id: str, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    import gymnasium as gym

    space = gym.make(env_id).action_space
    space.seed(seed)
    return lambda obs: space.sample()


def _actor_policy(model, snapshot: dict[str, Any], deterministic: bool) -> Callable[[np.ndarray], np.ndarray]:
    actor = copy.deepcopy(model.actor)
    actor.load_state_dict(snapshot)
    actor.set_training_mode(False)
    import torch

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            a = actor(torch.as_tensor(obs, dtype=torch.float32)[None], deterministic=deterministic)
        return model.policy.unscale_action(a.numpy()[0])

    return act


def _returns(env_id: str, act: Callable[[np.ndarray], np.ndarray], episodes: int, seed: int) -> list[float]:
    return [ep.episode_return for ep in rollouts(env_id, act, seed=seed, episodes=episodes)]


def rollouts(env_id: str, act: Callable[[np.ndarray], np.ndarray], *, seed: int, steps: int | None = None,
             episodes: int | None = None) -> list[Episode]:
    """Whole episodes of ``act`` in ``env_id`` until ``steps`` steps or ``episodes`` episodes;
    episode ``i`` starts from ``reset(seed=seed + i)``."""
    import gymnasium as gym

    env = gym.make(env_id)
    out: list[Episode] = []
    total = 0
    while (steps is not None and total < steps) or (episodes is not None and len(out) < episodes):
        obs, _ = env.reset(seed=seed + len(out))
        o, a, r, term, trunc = [obs], [], [], [], []
        while True:
            action = np.asarray(act(obs), dtype=np.float32)
            obs, reward, terminated, truncated, _ = env.step(action)
            o.append(obs), a.append(action), r.append(reward), term.append(terminated), trunc.append(truncated)
            if terminated or truncated:
                break
        out.append(Episode(np.array(o), np.array(a), np.array(r), np.array(term), np.array(trunc), goal=""))
        total += len(a)
    env.close()
    return out


# --------------------------------------------------------------------------- datasets
def make(name: str, seed: int = 0, *, sac_steps: int | None = None, dataset_steps: int | None = None,
         behaviour: Behaviour | None = None, progress: Callable[[str], None] | None = None) -> EpisodeDataset:
    """Build dataset ``name`` (``"<task>-<quality>"``) from ``seed`` (no cache; see :func:`load`)."""
    task, quality = parse_name(name)
    spec = _spec(task, sac_steps, dataset_steps)
    ref = behaviour or train_behaviour(task, seed, spec, progress)  # random data needs its references too
    if quality == "random":
        episodes = rollouts(spec.env_id, _random_policy(spec.env_id, seed), seed=seed * 10_000,
                            steps=spec.dataset_steps)
        policy_step = 0
    elif quality == "medium-replay":
        policy_step = ref.snapshot_steps[ref.medium_index]
        episodes = [ep for ep, end in zip(ref.replay, ref.replay_end_steps) if end <= policy_step]
    else:
        import torch

        model = _sac(spec, seed, buffer_size=1)  # only its actor's shape and action scaling: snapshots load into it
        m, last = ref.medium_index, len(ref.snapshots) - 1
        parts = {"medium": [m], "expert": [last], "medium-expert": [m, last]}[quality]
        episodes = []
        for k, i in enumerate(parts):
            with torch.random.fork_rng(devices=[]), _one_thread():
                torch.manual_seed(seed * 1000 + i)  # SAC's action sampling, the caller's generator untouched
                episodes += rollouts(spec.env_id, _actor_policy(model, ref.snapshots[i], False),
                                     seed=seed * 10_000 + k * 5_000, steps=spec.dataset_steps)
        policy_step = ref.snapshot_steps[last if quality == "expert" else m]
    data = EpisodeDataset(episodes)
    data.metadata = {
        "name": name, "task": task, "env_id": spec.env_id, "quality": quality, "seed": seed, "version": VERSION,
        "budget": {"sac_steps": spec.sac_steps, "dataset_steps": spec.dataset_steps,
                   "snapshot_every": spec.snapshot_every},
        "ref_min_score": ref.random_return, "ref_max_score": ref.expert_return,
        "behaviour_step": policy_step,
        "snapshot_returns": dict(zip(map(str, ref.snapshot_steps), ref.snapshot_returns)),
        "command": command(name, seed, sac_steps, dataset_steps),
        "n_episodes": len(data), "n_steps": data.n_steps,
        "sha256": fingerprint(data),
    }
    return data


def _spec(task: str, sac_steps: int | None, dataset_steps: int | None) -> TaskSpec:
    spec = TASKS[task]
    if sac_steps is not None:
        if sac_steps < 1000:
            # Tiny (test and smoke) budgets: four snapshots, each measured on one episode, and the
            # references on two: the mechanics of a full run in seconds.
            spec = replace(spec, snapshot_every=max(50, sac_steps // 4), snapshot_episodes=1, reference_episodes=2,
                           learning_starts=min(spec.learning_starts, sac_steps // 4))
        spec = replace(spec, sac_steps=sac_steps)
    if dataset_steps is not None:
        spec = replace(spec, dataset_steps=dataset_steps)
    if spec.sac_steps < spec.snapshot_every:
        raise ValueError(f"sac_steps={spec.sac_steps} is below one snapshot interval ({spec.snapshot_every}); "
                         "raise sac_steps")
    if spec.dataset_steps < 1:
        raise ValueError(f"dataset_steps must be positive, got {spec.dataset_steps}")
    return spec


class _one_thread:
    def __enter__(self) -> None:
        import torch

        self.n = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: Any) -> None:
        import torch

        torch.set_num_threads(self.n)


def command(name: str, seed: int, sac_steps: int | None = None, dataset_steps: int | None = None) -> str:
    """The shell command that rebuilds this dataset."""
    parts = ["llmrl", "data", "make", name, "--seed", str(seed)]
    if sac_steps is not None:
        parts += ["--sac-steps", str(sac_steps)]
    if dataset_steps is not None:
        parts += ["--dataset-steps", str(dataset_steps)]
    return " ".join(parts)


def fingerprint(data: EpisodeDataset) -> str:
    """SHA-256 over every array of every episode: equal fingerprints mean bit-identical data."""
    h = hashlib.sha256()
    for ep in data:
        for a in (ep.observations, ep.actions, ep.rewards, ep.terminations, ep.truncations):
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def path(name: str, seed: int = 0, sac_steps: int | None = None, dataset_steps: int | None = None,
         root: str | os.PathLike[str] | None = None) -> Path:
    """Where :func:`load` keeps dataset ``name`` for this seed and budget."""
    task, quality = parse_name(name)
    spec = _spec(task, sac_steps, dataset_steps)
    default = (spec.sac_steps, spec.dataset_steps) == (TASKS[task].sac_steps, TASKS[task].dataset_steps)
    budget = "" if default else f"-sac{spec.sac_steps}-n{spec.dataset_steps}"
    base = Path(root) if root is not None else cache_dir() / "datasets" / VERSION
    return base / task / f"{quality}-seed{seed}{budget}.npz"


def load(name: str, seed: int = 0, *, sac_steps: int | None = None, dataset_steps: int | None = None,
         root: str | os.PathLike[str] | None = None, progress: Callable[[str], None] | None = None) -> EpisodeDataset:
    """Dataset ``name`` from the cache, made (with every other quality of its task and seed, which
    share the behaviour agent) when missing. A file lock keeps parallel callers from making it twice."""
    from filelock import FileLock

    target = path(name, seed, sac_steps, dataset_steps, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".seed{seed}.lock")):
        if not target.exists():
            task, _ = parse_name(name)
            behaviour = train_behaviour(task, seed, _spec(task, sac_steps, dataset_steps), progress)
            for quality in QUALITIES:
                other = f"{task}-{quality}"
                p = path(other, seed, sac_steps, dataset_steps, root)
                if not p.exists():
                    make(other, seed, sac_steps=sac_steps, dataset_steps=dataset_steps, behaviour=behaviour,
                         progress=progress).save(p)
        return EpisodeDataset.load(target)


def normalized_score(returns: Any, metadata: dict[str, Any]) -> np.ndarray:
    """100·(R − R_random)/(R_expert − R_random), D4RL's normalised score, from a dataset's metadata."""
    lo, hi = metadata["ref_min_score"], metadata["ref_max_score"]
    if not hi > lo:
        raise ValueError(f"the reference returns do not order (random {lo}, expert {hi}): the behaviour agent never "
                         "beat the random policy; train it longer (--sac-steps)")
    return 100.0 * (np.asarray(returns, dtype=float) - lo) / (hi - lo)


def summary(data: EpisodeDataset) -> dict[str, Any]:
    """One line's worth of facts about a dataset (``llmrl data make`` prints it)."""
    r = data.returns()
    m = data.metadata
    ordered = m.get("ref_max_score", 0) > m.get("ref_min_score", 0)
    return {"name": m.get("name"), "seed": m.get("seed"), "episodes": len(data), "steps": data.n_steps,
            "return_mean": float(r.mean()), "return_max": float(r.max()),
            "normalized_mean": float(normalized_score(r, m).mean()) if ordered else None,
            "ref_min_score": m.get("ref_min_score"), "ref_max_score": m.get("ref_max_score"), "sha256": m.get("sha256")}
