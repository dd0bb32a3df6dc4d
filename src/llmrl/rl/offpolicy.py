"""Off-policy learning over a Gymnasium vector environment: ε-greedy DQN, n-step replay, an optional
intrinsic reward that may arrive late.

One vector step of :class:`OffPolicyLoop`, top to bottom:

1. **act**: ε-greedy actions for every environment (ε from ``explore(t)``; goal vectors from
   ``goals(infos)`` for a goal-conditioned agent);
2. **step**: the vector env steps; where an episode ended, its true final observation and info
   replace the reset ones (:func:`llmrl.envs.vector.final_transition`);
3. **wait**: the step joins a queue and the intrinsic reward *observes* it (RND scores the next
   observations; an LM labeller notes the captions it has not labelled yet);
4. **store**, in step order, once the bonus can pay (``bonus.ready()``, or the queue is
   ``max_lag`` long, or the caller flushes): reward = extrinsic + ``intrinsic_weight`` · bonus,
   the n-step replay takes the transitions, finished episodes are reported, and the gradient
   steps the transitions owe are taken (``train_frequency`` transitions per step), with the
   target network synced every ``target_update`` transitions.

Delaying step 4 changes no reward: the agent does not read its rewards to act, so a transition
stored a few steps late gets what it would have got at once, while the LM answers many captions
in one call (ELLM's recipe). What waits is the learning: the gradient steps a transition owes
are taken when it is stored, so the agent acts with a network up to ``max_lag`` vector steps
behind the one it would have had — a bounded actor-learner lag, as in IMPALA-style learners
(tests/rl/test_offpolicy.py measures both facts).

The intrinsic reward is any object with the methods of :class:`Bonus`; ``None`` means none.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from llmrl.envs.vector import final_transition, unstack_infos
from llmrl.rl.dqn import DQN, DQNConfig, NStepReplay, gradient_steps, target_sync_due


@dataclass
class VectorStep:
    """One step of every environment, as the intrinsic reward and the replay see it."""

    t: int  # env transitions so far, this step included
    obs: np.ndarray
    actions: np.ndarray
    extrinsic: np.ndarray  # float32
    next_obs: np.ndarray  # the true next observation (final one where an episode ended)
    terminated: np.ndarray
    truncated: np.ndarray
    state_infos: list[dict[str, Any]]  # infos of ``obs``: the state each action was taken in
    infos: list[dict[str, Any]]  # infos the step returned (final ones where an episode ended)
    goals: np.ndarray | None = None  # the goal vectors the agent acted under
    extra: dict[str, Any] = field(default_factory=dict)  # whatever the bonus keeps at observe time

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


class Bonus(Protocol):
    """An intrinsic reward over vector steps. It may need to batch work (an LM call) before paying."""

    def begin(self, infos: list[dict[str, Any]]) -> None:
        """The environments were reset: ``infos`` describe their first states."""

    def observe(self, step: VectorStep, next_infos: list[dict[str, Any]]) -> None:
        """A step was taken (``next_infos``: the states the agents are in now); it will be paid later."""

    def ready(self) -> bool:
        """Enough work waits to do it now (otherwise the loop waits, at most ``max_lag`` steps)."""

    def prepare(self) -> None:
        """Do the batched work for every step observed so far."""

    def reward(self, step: VectorStep) -> np.ndarray:
        """(n_envs,) unweighted bonus of one prepared step; called once per step, in order."""

    def end_episode(self, i: int) -> None:
        """Environment ``i``'s episode ended (after its last step was paid)."""

    def learn(self, batch: dict[str, torch.Tensor]) -> None:
        """Train on a replay batch (RND's predictor); most bonuses do nothing."""

    # A bonus may also define ``relabel(batch) -> batch``: rewards that exist only for a sampled
    # batch (APT's particle-based entropy) replace the batch's returns before the update.


class EpisodeTally:
    """Per-environment return, intrinsic return and length of the episodes in progress."""

    def __init__(self, n_envs: int) -> None:
        self.ret = np.zeros(n_envs)
        self.intrinsic = np.zeros(n_envs)
        self.length = np.zeros(n_envs, int)

    def add(self, extrinsic: np.ndarray, intrinsic: np.ndarray) -> None:
        self.ret += extrinsic
        self.intrinsic += intrinsic
        self.length += 1

    def close(self, i: int, t: int, terminated: bool) -> dict[str, Any]:
        """The finished episode's record (and env i's tally starts again)."""
        record = {"env_steps": t, "length": int(self.length[i]), "return": round(float(self.ret[i]), 4),
                  "intrinsic": round(float(self.intrinsic[i]), 4), "died": bool(terminated)}
        self.ret[i], self.intrinsic[i], self.length[i] = 0.0, 0.0, 0
        return record

    def state_dict(self) -> dict[str, Any]:
        return {"ret": self.ret.copy(), "intrinsic": self.intrinsic.copy(), "length": self.length.copy()}


class OffPolicyLoop:
    """Trains a :class:`~llmrl.rl.dqn.DQN` on a SAME_STEP-autoreset vector env (see the module doc).

    Args:
        envs: the vector environment.
        agent: the DQN learner; ``replay``: its n-step replay (``n_envs`` windows).
        config: the DQN settings (schedules count env transitions).
        rng: the generator for ε-greedy choices and replay sampling.
        bonus: an intrinsic reward (:class:`Bonus`) or None.
        intrinsic_weight: the bonus's weight next to the extrinsic reward.
        max_lag: vector steps a transition may wait for its bonus.
        explore: ε after t transitions (default: the config's linear schedule).
        learn: False for a reference that only acts (uniform random with ``explore=lambda t: 1``).
        goals: for a goal-conditioned agent, the goal vectors of a batch of state infos.
        on_episode: called with each finished episode's record and its final info.
    """

    def __init__(
        self,
        envs: Any,
        agent: DQN,
        replay: NStepReplay,
        config: DQNConfig,
        rng: np.random.Generator,
        *,
        bonus: Bonus | None = None,
        intrinsic_weight: float = 1.0,
        max_lag: int = 1,
        explore: Callable[[int], float] | None = None,
        learn: bool = True,
        goals: Callable[[list[dict[str, Any]]], np.ndarray] | None = None,
        on_episode: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
    ) -> None:
        from llmrl.rl.dqn import epsilon

        if max_lag < 1:
            raise ValueError(f"max_lag must be at least 1, got {max_lag}")
        self.envs, self.agent, self.replay, self.config, self.rng = envs, agent, replay, config, rng
        self.n_envs = int(envs.num_envs)
        self.bonus, self.intrinsic_weight, self.max_lag = bonus, intrinsic_weight, max_lag
        self.explore = explore or (lambda t: epsilon(config, t))
        self.learning, self.goals, self.on_episode = learn, goals, on_episode
        self.t, self.carry, self.updates = 0, 0, 0
        self.losses: list[dict[str, float]] = []  # since the caller last took them
        self.pending: deque[VectorStep] = deque()
        self.tally = EpisodeTally(self.n_envs)
        self.obs: np.ndarray | None = None
        self.state_infos: list[dict[str, Any]] = []

    def reset(self, seeds: list[int]) -> None:
        """Start every environment (env i from ``seeds[i]``)."""
        self.obs, infos = self.envs.reset(seed=seeds)
        self.state_infos = unstack_infos(infos, self.n_envs)
        if self.bonus is not None:
            self.bonus.begin(self.state_infos)

    def step(self) -> VectorStep:
        """One vector step (act, step, wait); stores whatever the bonus can pay now."""
        if self.obs is None:
            raise RuntimeError("call reset(seeds) before step()")
        goals = self.goals(self.state_infos) if self.goals is not None else None
        actions = self.agent.act(self.obs, self.rng, self.explore(self.t), goals)
        next_obs, extrinsic, terminated, truncated, infos = self.envs.step(actions)
        real_next, step_infos = final_transition(next_obs, infos, terminated | truncated)
        self.t += self.n_envs
        step = VectorStep(self.t, self.obs, actions, extrinsic.astype(np.float32), real_next, terminated, truncated,
                          self.state_infos, step_infos, goals)
        self.obs, self.state_infos = next_obs, unstack_infos(infos, self.n_envs)
        self.pending.append(step)
        if self.bonus is not None:
            self.bonus.observe(step, self.state_infos)
        if self.bonus is None or self.bonus.ready() or len(self.pending) >= self.max_lag:
            self.flush()
        return step

    def flush(self) -> None:
        """Pay and store every waiting step (call before reading counters or checkpointing)."""
        if self.pending and self.bonus is not None:
            self.bonus.prepare()
        while self.pending:
            self._store(self.pending.popleft())

    def _store(self, step: VectorStep) -> None:
        intrinsic = self.bonus.reward(step) if self.bonus is not None else np.zeros(self.n_envs, np.float32)
        reward = step.extrinsic + self.intrinsic_weight * intrinsic
        self.replay.add(step.obs, step.actions, reward, step.next_obs, step.terminated, step.truncated,
                        step.goals, step.goals)  # the next state's goals: close enough for n-step returns
        self.tally.add(step.extrinsic, intrinsic)
        for i in np.flatnonzero(step.done):
            if self.bonus is not None:
                self.bonus.end_episode(int(i))
            record = self.tally.close(int(i), step.t, bool(step.terminated[i]))
            if self.on_episode is not None:
                self.on_episode(record, step.infos[i])
        n_grad, self.carry = gradient_steps(self.config, self.n_envs, self.carry)
        if self.learning and len(self.replay) >= self.config.learning_starts:
            relabel = getattr(self.bonus, "relabel", None)
            for _ in range(n_grad):
                batch = self.replay.sample(self.config.batch_size, self.rng)
                if relabel is not None:
                    batch = relabel(batch)
                self.losses.append(self.agent.update(batch))
                if self.bonus is not None:
                    self.bonus.learn(batch)
                self.updates += 1
        if target_sync_due(self.config, step.t - self.n_envs, step.t):
            self.agent.sync_target()

    def take_losses(self) -> list[dict[str, float]]:
        """The update statistics since the last call."""
        out, self.losses = self.losses, []
        return out

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Counters, learner, replay and generators (flush first: waiting steps are not saved)."""
        if self.pending:
            raise RuntimeError("flush() before state_dict(): waiting steps are not part of a checkpoint")
        return {"t": self.t, "carry": self.carry, "updates": self.updates, "agent": self.agent.state_dict(),
                "replay": self.replay.state_dict(), "rng": self.rng.bit_generator.state,
                "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint. The environments restart (call ``reset`` with new seeds), so
        the replay's open n-step windows are dropped."""
        self.t, self.carry, self.updates = state["t"], state["carry"], state["updates"]
        self.agent.load_state_dict(state["agent"])
        self.replay.load_state_dict(state["replay"])
        self.replay.windows = [type(w)() for w in self.replay.windows]
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
