"""Goal-conditioned episode datasets: files, flat transitions and Minari export."""

from __future__ import annotations

import numpy as np
import pytest

from llmrl.data import Episode, EpisodeDataset


def episode(T: int, goal: str, end: str = "terminated", seed: int = 0, **infos) -> Episode:
    rng = np.random.default_rng(seed)
    return Episode(
        observations=rng.normal(size=(T + 1, 3)),
        actions=rng.integers(0, 40, T),
        rewards=rng.normal(size=T),
        terminations=[False] * (T - 1) + [end == "terminated"],
        truncations=[False] * (T - 1) + [end == "truncated"],
        goal=goal,
        infos=infos,
    )


@pytest.fixture
def dataset() -> EpisodeDataset:
    return EpisodeDataset(
        [
            episode(3, "push the red ball left", "terminated", 0, level="seen", success=True),
            episode(2, "push the blue ball behind the green ball", "truncated", 1, level="rephrase", success=False),
            episode(4, "push the red ball left", "truncated", 2, level="seen", success=np.bool_(False)),
        ],
        metadata={"env": "clevr-numpy", "imaginary": False},
    )


def assert_same(a: EpisodeDataset, b: EpisodeDataset) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for name in ("observations", "actions", "rewards", "terminations", "truncations"):
            assert np.array_equal(getattr(x, name), getattr(y, name)), name
            assert getattr(x, name).dtype == getattr(y, name).dtype, name
        assert x.goal == y.goal
        assert x.infos == y.infos


def test_save_then_load_gives_back_every_array_goal_info_and_the_metadata(dataset, tmp_path):
    path = dataset.save(tmp_path / "sub" / "real.npz")
    loaded = EpisodeDataset.load(path)
    assert_same(dataset, loaded)
    assert loaded.metadata == dataset.metadata
    assert loaded[2].infos["success"] is False  # numpy scalars are stored as plain JSON values
    assert [p.name for p in path.parent.iterdir()] == ["real.npz"]  # no temporary file left behind


def test_an_empty_dataset_round_trips(tmp_path):
    loaded = EpisodeDataset.load(EpisodeDataset(metadata={"n": 0}).save(tmp_path / "empty.npz"))
    assert len(loaded) == 0 and loaded.metadata == {"n": 0}


def test_loading_a_missing_or_corrupt_file_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.npz.*EpisodeDataset\.save"):
        EpisodeDataset.load(tmp_path / "nothere.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"bad\.npz.*regenerate"):
        EpisodeDataset.load(bad)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(ValueError, match=r"other\.npz.*format"):
        EpisodeDataset.load(other)


def test_transitions_pair_each_observation_with_the_next_and_truncation_is_not_a_terminal(dataset):
    t = dataset.transitions()
    assert len(t) == dataset.n_steps == 9
    assert t.observations.shape == t.next_observations.shape == (9, 3)
    assert np.array_equal(t.observations[:3], dataset[0].observations[:-1])
    assert np.array_equal(t.next_observations[:3], dataset[0].observations[1:])
    assert t.goals == ["push the red ball left", "push the blue ball behind the green ball"]
    assert t.goal_ids.tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 0]
    ends = np.zeros(9, bool)
    ends[[2, 4, 8]] = True
    assert t.terminals.tolist() == [False, False, True] + [False] * 6  # only the terminated episode
    assert t.timeouts.tolist() == [False] * 4 + [True] + [False] * 3 + [True]  # the truncated ones
    assert not (t.terminals & t.timeouts).any()
    assert (t.terminals | t.timeouts).tolist() == ends.tolist()


def test_transitions_can_share_a_goal_index_with_an_embedding_matrix(dataset):
    index = {"unused goal": 0, "push the blue ball behind the green ball": 1, "push the red ball left": 2}
    t = dataset.transitions(goal_index=index)
    assert t.goals == list(index)
    assert t.goal_ids.tolist() == [2, 2, 2, 1, 1, 2, 2, 2, 2]
    with pytest.raises(KeyError, match="missing from goal_index"):
        dataset.transitions(goal_index={"push the red ball left": 0})


def test_goals_success_rate_filter_and_concat(dataset):
    assert dataset.goals() == ["push the red ball left", "push the blue ball behind the green ball"]
    assert dataset.success_rate() == pytest.approx(1 / 3)
    seen = dataset.filter(lambda ep: ep.infos["level"] == "seen")
    assert len(seen) == 2 and seen.metadata == dataset.metadata
    both = seen.concat(EpisodeDataset([episode(1, "g", seed=5)], {"imaginary": True}))
    assert len(both) == 3 and both.n_steps == 8 and both.metadata["imaginary"] is True
    with pytest.raises(KeyError, match="success"):
        both.success_rate()


def test_episodes_with_inconsistent_lengths_are_rejected_with_the_expected_shape():
    with pytest.raises(ValueError, match=r"actions must have shape \(T,\) = \(2,\)"):
        Episode(np.zeros((3, 2)), [0, 1, 2], [0, 0], [False, False], [False, False], goal="g")
    with pytest.raises(ValueError, match="one observation size"):
        EpisodeDataset([episode(2, "a"), Episode(np.zeros((2, 5)), [0], [0], [True], [False], goal="b")])


def test_minari_export_reads_back_with_minari_load_dataset(dataset, tmp_path, monkeypatch):
    import minari

    exported = dataset.to_minari("llmrl/clevr-test-v0", data_path=tmp_path, algorithm_name="scripted expert")
    assert exported.total_episodes == 3 and exported.total_steps == 9

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    loaded = minari.load_dataset("llmrl/clevr-test-v0")
    assert loaded.action_space.n == int(max(ep.actions.max() for ep in dataset)) + 1
    for ours, theirs in zip(dataset, loaded.iterate_episodes()):
        assert np.array_equal(theirs.observations["observation"], ours.observations)
        assert theirs.observations["goal"] == [ours.goal] * (len(ours) + 1)
        assert np.array_equal(theirs.actions, ours.actions)
        assert np.array_equal(theirs.rewards, ours.rewards)
        assert np.array_equal(theirs.terminations, ours.terminations)
        assert np.array_equal(theirs.truncations, ours.truncations)

    back = EpisodeDataset.from_minari("llmrl/clevr-test-v0")
    assert_same(dataset, back)
    assert back.metadata == dataset.metadata


# --------------------------------------------------------------------------- continuous actions
def control_episode(T: int, seed: int, act_dim: int = 2) -> Episode:
    rng = np.random.default_rng(seed)
    return Episode(
        observations=rng.normal(size=(T + 1, 3)),
        actions=rng.uniform(-1, 1, size=(T, act_dim)),
        rewards=rng.normal(size=T),
        terminations=[False] * T,
        truncations=[False] * (T - 1) + [True],
        goal="",
    )


def test_continuous_actions_keep_their_width_through_transitions_files_and_minari(tmp_path, monkeypatch):
    import minari

    data = EpisodeDataset([control_episode(4, 0), control_episode(3, 1)], metadata={"env_id": "Pendulum-v1"})
    assert data.act_dim == 2 and data[0].continuous and data[0].actions.dtype == np.float32
    t = data.transitions()
    assert t.actions.shape == (7, 2) and t.act_dim == 2 and t.actions.dtype == np.float32

    assert_same(data, EpisodeDataset.load(data.save(tmp_path / "d.npz")))

    data.to_minari("llmrl/pendulum-test-v0", data_path=tmp_path)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    loaded = minari.load_dataset("llmrl/pendulum-test-v0")
    assert loaded.action_space.shape == (2,)
    assert loaded.observation_space.shape == (3,)  # goal-free data stays a flat Box, as D4RL's
    first = next(iter(loaded.iterate_episodes()))
    assert np.array_equal(first.observations, data[0].observations)
    back = EpisodeDataset.from_minari("llmrl/pendulum-test-v0")
    assert_same(data, back) and back.metadata == data.metadata


def test_mixing_discrete_and_continuous_episodes_or_1d_real_actions_is_rejected():
    mixed = EpisodeDataset([control_episode(2, 0), episode(2, "", seed=1)])
    with pytest.raises(ValueError, match="mix action shapes"):
        mixed.transitions()
    with pytest.raises(ValueError, match=r"shape \(T, 1\)"):
        Episode(observations=np.zeros((3, 2)), actions=[0.5, -0.2], rewards=[0, 0], terminations=[0, 0],
                truncations=[0, 1], goal="")
