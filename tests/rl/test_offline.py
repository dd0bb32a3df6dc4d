"""Goal-conditioned offline RL (BC, CQL, IQL) on tiny datasets whose right answer is known."""

from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest
import torch

from llmrl.data import Episode, EpisodeDataset, Transitions
from llmrl.rl.offline import PRESETS, BatchSampler, OfflineAgent, OfflineConfig, train_offline

torch.set_num_threads(1)

SMALL = dict(hidden_sizes=(64, 64), log_every=50, checkpoint_every=10_000)


def goal_bandit(n: int = 2000, behaviour: str = "expert", seed: int = 0) -> tuple[Transitions, np.ndarray]:
    """One-step episodes: goal 0 wants action 3, goal 1 wants action 7 (reward 1), of 10 actions.

    ``behaviour="expert"`` always takes the wanted action; ``"random"`` takes uniform actions, so
    only the rewards say which one is right.
    """
    rng = np.random.default_rng(seed)
    goal_ids = rng.integers(0, 2, n)
    wanted = np.where(goal_ids == 0, 3, 7)
    actions = wanted if behaviour == "expert" else rng.integers(0, 10, n)
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    transitions = Transitions(
        observations=obs,
        actions=actions.astype(np.int64),
        rewards=(actions == wanted).astype(np.float32),
        next_observations=obs.copy(),
        terminals=np.ones(n, bool),
        timeouts=np.zeros(n, bool),
        goal_ids=goal_ids.astype(np.int64),
        goals=["push left", "push right"],
    )
    embeddings = rng.normal(size=(2, 8)).astype(np.float32)
    return transitions, embeddings


def accuracy(agent: OfflineAgent, t: Transitions, emb: np.ndarray) -> float:
    wanted = np.where(t.goal_ids == 0, 3, 7)
    return float((agent.act(t.observations, emb[t.goal_ids]) == wanted).mean())


def chain(n_episodes: int = 300, seed: int = 0) -> tuple[Transitions, np.ndarray]:
    """A 5-cell chain, start in the middle; action 0 steps right, 1 steps left (2 and 3 never
    appear in the data). Goal "right" ends with reward 10 in cell 4, goal "left" in cell 0.
    The behaviour is uniformly random over {0, 1}; episodes are truncated after 12 steps."""
    rng = np.random.default_rng(seed)
    episodes = []
    for i in range(n_episodes):
        goal, end = ("right", 4) if i % 2 == 0 else ("left", 0)
        pos, cells, actions = 2, [2], []
        for _ in range(12):
            a = int(rng.integers(0, 2))
            pos = min(pos + 1, 4) if a == 0 else max(pos - 1, 0)
            actions.append(a)
            cells.append(pos)
            if pos == end:
                break
        T = len(actions)
        done = cells[-1] == end
        episodes.append(
            Episode(
                observations=np.eye(5, dtype=np.float32)[cells],
                actions=actions,
                rewards=[0.0] * (T - 1) + [10.0 * done],
                terminations=[False] * (T - 1) + [done],
                truncations=[False] * (T - 1) + [not done],
                goal=goal,
            )
        )
    return EpisodeDataset(episodes).transitions(), np.eye(2, dtype=np.float32)


# --------------------------------------------------------------------------- learning
def test_bc_clones_an_action_that_depends_only_on_the_goal():
    t, emb = goal_bandit(behaviour="expert")
    agent = train_offline(replace(PRESETS["bc"], gradient_steps=200, batch_size=64, **SMALL), t, emb)
    assert accuracy(agent, t, emb) == 1.0


def test_iql_picks_the_rewarded_action_from_uniformly_random_behaviour():
    t, emb = goal_bandit(behaviour="random")
    # β = 10 (the IQL paper's AntMaze value): with 10 actions the wanted one is only 10% of the data.
    config = replace(PRESETS["iql"], gradient_steps=600, batch_size=128, learning_rate=1e-3, target_tau=0.05,
                     iql_temperature=10.0, **SMALL)  # fmt: skip
    agent = train_offline(config, t, emb)
    assert accuracy(agent, t, emb) == 1.0
    # BC on the same data copies the random behaviour, so the reward is what IQL learned from.
    bc = train_offline(replace(PRESETS["bc"], gradient_steps=600, batch_size=128, **SMALL), t, emb)
    assert accuracy(bc, t, emb) < 0.6


def test_cql_learns_the_optimal_goal_dependent_action_and_pushes_down_unseen_actions():
    t, emb = chain()
    # α = 1: with Huber TD errors (gradient ≤ 1) and uniform behaviour, the conservative term
    # shrinks the gap between the two data actions to about Δy / (1 + 2α); α = 10 suits KALM's
    # rewards of 100, not this chain's 10.
    config = replace(PRESETS["cql"], gradient_steps=1500, batch_size=64, learning_rate=1e-3, target_update_interval=100,
                     gamma=0.9, cql_alpha=1.0, n_actions=4, **SMALL)  # fmt: skip
    cql = train_offline(config, t, emb)
    dqn = train_offline(replace(config, cql_alpha=0.0), t, emb)  # plain double DQN on the same data
    cells = np.eye(5, dtype=np.float32)
    for goal, best, non_terminal in ((0, 0, [0, 1, 2, 3]), (1, 1, [1, 2, 3, 4])):
        obs, g = cells[non_terminal], np.repeat(emb[goal : goal + 1], len(non_terminal), 0)
        assert (cql.act(obs, g) == best).all()
        q_cql, q_dqn = cql.q_values(obs, g), dqn.q_values(obs, g)
        # Actions 2 and 3 never occur in the data: CQL ranks them below both data actions ...
        assert (q_cql[:, 2:].max(1) < q_cql[:, :2].min(1)).all()
        # ... and its values for them lie well below the unpenalised DQN's.
        assert (q_cql[:, 2:] < q_dqn[:, 2:] - 1.0).all()


# --------------------------------------------------------------------------- batches
def test_mixed_batches_take_the_mix_ratio_from_the_imaginary_data_with_its_own_goal_embeddings():
    real, real_emb = goal_bandit(100)
    imaginary, _ = goal_bandit(50, seed=1)
    imaginary.actions[:] = 9  # marks imaginary rows
    imaginary = replace(imaginary, goals=["stack", "sort"])
    imaginary_emb = np.full((2, 8), 100.0, dtype=np.float32)
    sampler = BatchSampler(real, real_emb, imaginary, imaginary_emb, batch_size=32, mix_ratio=0.25)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        b = sampler.sample(g)
        from_imaginary = b.actions == 9
        assert int(from_imaginary.sum()) == 8  # round(0.25 * 32)
        assert (b.x[from_imaginary, 4:] == 100.0).all()
        assert (b.x[~from_imaginary, 4:] != 100.0).all()
    # Without imaginary data every row is real, whatever the mix ratio.
    b = BatchSampler(real, real_emb, batch_size=32, mix_ratio=0.5).sample(g)
    assert not (b.actions == 9).any()


# --------------------------------------------------------------------------- runs
def test_a_killed_run_resumes_to_bit_identical_parameters(tmp_path):
    t, emb = goal_bandit(300, behaviour="random")
    for algo in ("cql", "iql"):
        config = replace(PRESETS[algo], gradient_steps=40, batch_size=16, hidden_sizes=(16,), log_every=10,
                         checkpoint_every=20, target_update_interval=7)  # fmt: skip
        whole = train_offline(config, t, emb, out_dir=tmp_path / f"{algo}-whole")

        def kill_at_20(step, row):
            if step == 20:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            train_offline(config, t, emb, out_dir=tmp_path / f"{algo}-killed", progress=kill_at_20)
        resumed = train_offline(config, t, emb, out_dir=tmp_path / f"{algo}-killed", resume=True)
        for (name, a), b in zip(whole.nets.state_dict().items(), resumed.nets.state_dict().values()):
            assert torch.equal(a, b), f"{algo}: {name} differs after resume"
        with open(tmp_path / f"{algo}-killed" / "progress.csv") as f:
            assert [int(r["step"]) for r in csv.DictReader(f)] == [10, 20, 30, 40]


def test_saved_agent_loads_and_acts_identically(tmp_path):
    t, emb = goal_bandit(200)
    agent = train_offline(replace(PRESETS["bc"], gradient_steps=20, **SMALL), t, emb, out_dir=tmp_path / "run")
    loaded = OfflineAgent.load(tmp_path / "run" / "agent.pt")
    x, g = t.observations[:50], emb[t.goal_ids[:50]]
    assert np.array_equal(agent.scores(x, g), loaded.scores(x, g))
    assert loaded.config.algo == "bc" and loaded.n_actions == 8  # 1 + the largest action (7)
    sampled = [loaded.act(x, g, greedy=False, rng=np.random.default_rng(s)) for s in (0, 0, 1)]
    assert np.array_equal(sampled[0], sampled[1]) and not np.array_equal(sampled[0], sampled[2])
    assert sampled[0].min() >= 0 and sampled[0].max() < 8


def test_the_last_snapshots_are_kept_and_the_final_one_is_the_agent(tmp_path):
    from llmrl.rl.offline import snapshot_paths

    t, emb = goal_bandit(200)
    config = replace(PRESETS["bc"], gradient_steps=100, snapshots=3, snapshot_every=10, **SMALL)
    assert config.snapshot_steps == [80, 90, 100]
    assert replace(config, snapshot_every=0, gradient_steps=500).snapshot_steps == [480, 490, 500]  # 1/50 of training
    final = train_offline(config, t, emb, out_dir=tmp_path / "run")
    paths = snapshot_paths(tmp_path / "run")
    assert [p.name for p in paths] == ["step_00000080.pt", "step_00000090.pt", "step_00000100.pt"]
    x, g = t.observations[:20], emb[t.goal_ids[:20]]
    assert np.array_equal(OfflineAgent.load(paths[-1]).scores(x, g), final.scores(x, g))
    assert not np.array_equal(OfflineAgent.load(paths[0]).scores(x, g), final.scores(x, g))
    with pytest.raises(ValueError, match="do not fit"):
        replace(config, snapshots=20)


def test_a_finished_run_folder_is_not_overwritten_without_resume(tmp_path):
    t, emb = goal_bandit(100)
    config = replace(PRESETS["bc"], gradient_steps=5, **SMALL)
    train_offline(config, t, emb, out_dir=tmp_path)
    with pytest.raises(FileExistsError, match="resume"):
        train_offline(config, t, emb, out_dir=tmp_path)
    with pytest.raises(ValueError, match="learning_rate"):
        train_offline(replace(config, learning_rate=0.1), t, emb, out_dir=tmp_path, resume=True)


# --------------------------------------------------------------------------- bad input
def test_bad_input_gets_errors_that_say_what_to_fix():
    t, emb = goal_bandit(100)
    with pytest.raises(ValueError, match="bc, cql, iql"):
        OfflineConfig(algo="dqn")
    with pytest.raises(ValueError, match=r"\(2, e\)"):
        train_offline(PRESETS["bc"], t, emb[:1])
    none = slice(0)
    empty = replace(t, observations=t.observations[none], next_observations=t.observations[none],
                    actions=t.actions[none], rewards=t.rewards[none], terminals=t.terminals[none],
                    timeouts=t.timeouts[none], goal_ids=t.goal_ids[none])  # fmt: skip
    with pytest.raises(ValueError, match="no transitions"):
        train_offline(PRESETS["bc"], empty, emb)
    other_goals = replace(t, goals=["a", "b"])
    with pytest.raises(ValueError, match="imaginary_goal_embeddings"):
        train_offline(PRESETS["bc"], t, emb, imaginary=other_goals)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        train_offline(replace(PRESETS["bc"], n_actions=5), t, emb)
    agent = train_offline(replace(PRESETS["bc"], gradient_steps=1, **SMALL), t, emb)
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        agent.act(t.observations[:3], emb[:1, :4])
