"""Run agents for N episodes over environments stepped in lockstep, and summarise what happened.

Episode ``k`` always starts from ``reset(seed=seed + k)``, whatever the number of parallel
environments, so every agent faces the same N levels and results do not depend on ``n_envs``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from llmrl.agents.base import Agent
from llmrl.stats import mean_interval, wilson_interval


@dataclass
class Episode:
    seed: int
    success: bool
    episode_return: float
    length: int
    mission: str = ""
    action_counts: list[int] = field(default_factory=list)  # how often each action index was taken


@dataclass
class EvalResult:
    agent: str
    env_id: str
    episodes: list[Episode]
    wall_seconds: float
    lm: dict[str, float] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.episodes)

    def action_shares(self) -> list[float]:
        """Fraction of all steps spent on each action index."""
        counts = [e.action_counts for e in self.episodes if e.action_counts]
        if not counts:
            return []
        total = np.sum(counts, axis=0, dtype=np.float64)
        return (total / max(total.sum(), 1.0)).tolist()

    def summary(self) -> dict[str, Any]:
        succ = sum(e.success for e in self.episodes)
        lo, hi = wilson_interval(succ, self.n)
        ret, ret_lo, ret_hi = mean_interval([e.episode_return for e in self.episodes])
        steps = sum(e.length for e in self.episodes)
        return {
            "agent": self.agent,
            "env_id": self.env_id,
            "episodes": self.n,
            "success_rate": succ / max(self.n, 1),
            "success_ci95": [lo, hi],
            "mean_return": ret,
            "return_ci95": [ret_lo, ret_hi],
            "mean_length": float(np.mean([e.length for e in self.episodes])) if self.episodes else float("nan"),
            "env_steps": steps,
            "wall_seconds": self.wall_seconds,
            "steps_per_second": steps / self.wall_seconds if self.wall_seconds > 0 else float("nan"),
            "action_shares": self.action_shares(),
            **self.lm,
        }


def evaluate(
    agent: Agent,
    make_env: Callable[[], gym.Env],
    n_episodes: int,
    n_envs: int = 8,
    seed: int = 0,
    env_id: str = "",
    progress: Callable[[int], None] | None = None,
) -> EvalResult:
    """Run ``n_episodes`` episodes of ``agent`` on ``n_envs`` copies of ``make_env()`` in lockstep.

    ``progress(k)`` is called with the number of episodes finished so far.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    n_envs = max(1, min(n_envs, n_episodes))
    envs = [make_env() for _ in range(n_envs)]
    obs: list[Any] = [None] * n_envs
    infos: list[dict[str, Any]] = [{} for _ in range(n_envs)]
    ep_seed = [0] * n_envs
    ep_return = [0.0] * n_envs
    ep_len = [0] * n_envs
    n_actions = int(envs[0].action_space.n) if hasattr(envs[0].action_space, "n") else 0
    ep_actions = [[0] * n_actions for _ in range(n_envs)]
    active: list[int] = []
    next_episode = 0
    episodes: list[Episode] = []

    def start(i: int) -> None:
        nonlocal next_episode
        ep_seed[i] = seed + next_episode
        next_episode += 1
        obs[i], infos[i] = envs[i].reset(seed=ep_seed[i])
        ep_return[i], ep_len[i] = 0.0, 0
        ep_actions[i] = [0] * n_actions
        agent.begin_episode(i, envs[i], obs[i], infos[i], ep_seed[i])
        active.append(i)

    lm_before = agent.lm_stats()
    t0 = time.perf_counter()
    for i in range(n_envs):
        start(i)
    while active:
        acting = list(active)
        actions = agent.act([obs[i] for i in acting], [infos[i] for i in acting], acting)
        for i, a in zip(acting, actions):
            obs[i], r, terminated, truncated, infos[i] = envs[i].step(int(a))
            ep_return[i] += float(r)
            ep_len[i] += 1
            if n_actions:
                ep_actions[i][int(a)] += 1
            if terminated or truncated:
                success = bool(infos[i].get("success", r > 0))
                episodes.append(Episode(ep_seed[i], success, ep_return[i], ep_len[i],
                                        str(infos[i].get("mission", "")), ep_actions[i]))
                active.remove(i)
                if progress is not None:
                    progress(len(episodes))
                if next_episode < n_episodes:
                    start(i)
    wall = time.perf_counter() - t0
    for env in envs:
        env.close()
    episodes.sort(key=lambda e: e.seed)
    # The LM may be shared across evaluations: report this run's calls only.
    lm = {k: v - lm_before.get(k, 0) for k, v in agent.lm_stats().items()}
    return EvalResult(agent.name, env_id, episodes, wall, lm)


def markdown_table(results: Sequence[EvalResult]) -> str:
    """One row per (environment, agent): success with its 95% interval, return, length, cost."""
    head = (
        "| environment | agent | episodes | success rate [95% CI] | mean return [95% CI] | mean length "
        "| LM calls | prompts scored (cache hits) | wall time (s) |\n|---|---|---:|---|---|---:|---:|---:|---:|"
    )
    rows = [head]
    for r in results:
        s = r.summary()
        lo, hi = s["success_ci95"]
        rlo, rhi = s["return_ci95"]
        calls = s.get("lm_calls")
        prompts = "-" if calls is None else f"{int(s['lm_contexts'])} ({int(s.get('cache_hits', 0))})"
        rows.append(
            f"| {s['env_id']} | {s['agent']} | {s['episodes']} | {s['success_rate']:.2f} [{lo:.2f}, {hi:.2f}] "
            f"| {s['mean_return']:.3f} [{rlo:.3f}, {rhi:.3f}] | {s['mean_length']:.1f} "
            f"| {'-' if calls is None else int(calls)} | {prompts} | {s['wall_seconds']:.1f} |"
        )
    return "\n".join(rows)


def write_results(results: Sequence[EvalResult], out_dir: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write ``results.json`` (summaries and every episode) and ``results.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "meta": meta or {},
        "results": [{"summary": r.summary(), "episodes": [asdict(e) for e in r.episodes]} for r in results],
    }
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(out / "results.json")
    (out / "results.md").write_text(markdown_table(results) + "\n")
    return out


def load_results(path: str | Path) -> list[EvalResult]:
    """Read back what ``write_results`` wrote (a ``results.json`` file or its folder)."""
    path = Path(path)
    data = json.loads((path / "results.json" if path.is_dir() else path).read_text())
    lm_keys = ("lm_calls", "lm_contexts", "cache_hits", "cache_misses")
    out = []
    for r in data["results"]:
        s = r["summary"]
        out.append(EvalResult(s["agent"], s["env_id"], [Episode(**e) for e in r["episodes"]],
                              s["wall_seconds"], {k: s[k] for k in lm_keys if k in s}))
    return out


# Settings that change every result, and those that change an LM agent's results (with their
# defaults, for results written before a setting existed); random and bot agents depend only on
# the former.
RUN_SETTINGS = {"episodes": None, "seed": 0, "suite": None}
LM_SETTINGS = {"model": None, "policy": None, "dtype": "auto", "normalise_length": False, "n_observations": 3,
               "prompt_style": "joined"}


def previous_results(out_dir: str | Path, meta: dict[str, Any], lm_agents: bool,
                     lm_prefixes: Sequence[str] = ("llm",)) -> tuple[dict[tuple[str, str], EvalResult], dict[str, Any]]:
    """``llmrl eval --resume``: the (agent, environment) results already in ``out_dir``, keyed by
    pair, and the metadata to write from now on.

    Resuming with other run settings (episodes, first seed, suite) or, when LM agents run, other
    LM settings would mix incomparable results in one table: refused with the fields named.
    Pairs the current command does not run are kept as they are; a command without LM agents
    keeps the LM settings the earlier results were made with.
    """
    path = Path(out_dir) / "results.json"
    if not path.exists():
        return {}, meta
    try:
        old = json.loads(path.read_text()).get("meta", {})
        previous = load_results(path)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path} is damaged ({e}): move it away, pass --overwrite, or choose another --out") from None
    changed = [k for k, d in RUN_SETTINGS.items() if old.get(k, d) != meta.get(k, d)]
    has_lm = any(r.agent.startswith(tuple(lm_prefixes)) for r in previous)
    if lm_agents and has_lm:
        changed += [k for k, d in LM_SETTINGS.items() if old.get(k, d) != meta.get(k, d)]
    if changed:
        diff = ", ".join(f"{k} {old.get(k, RUN_SETTINGS.get(k, LM_SETTINGS.get(k)))!r} -> {meta.get(k)!r}"
                         for k in changed)
        raise ValueError(f"--resume: the results in {path} were made with other settings ({diff}); resume with "
                         "the same ones, pass --overwrite to replace them, or choose another --out")
    if not lm_agents:
        meta = {**meta, **{k: old.get(k, d) for k, d in LM_SETTINGS.items()}}
    return {(r.agent, r.env_id): r for r in previous}, meta
