"""D4RL-style datasets made here: every quality from one behaviour agent, rebuilt bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmrl.data import d4rl

# SAC learns nothing at this size; the mechanics are the same. Training it takes seconds: slow.
TINY = {"sac_steps": 400, "dataset_steps": 250}


@pytest.fixture(scope="module")
def behaviour():
    return d4rl.train_behaviour("pendulum", 0, d4rl._spec("pendulum", **TINY))


@pytest.mark.slow
def test_a_dataset_is_rebuilt_bit_for_bit_from_its_seed_and_differs_across_seeds(behaviour):
    again = d4rl.make("pendulum-medium", 0, **TINY)  # a fresh behaviour agent, trained again
    kept = d4rl.make("pendulum-medium", 0, **TINY, behaviour=behaviour)
    assert again.metadata["sha256"] == kept.metadata["sha256"] == d4rl.fingerprint(kept)
    assert again.metadata["command"] == "llmrl data make pendulum-medium --seed 0 --sac-steps 400 --dataset-steps 250"
    seeds = [d4rl.make("pendulum-random", s, **TINY, behaviour=behaviour).metadata["sha256"] for s in (0, 1)]
    assert seeds[0] != seeds[1]


@pytest.mark.slow
def test_each_quality_comes_from_the_part_of_training_d4rl_names(behaviour):
    sets = {q: d4rl.make(f"pendulum-{q}", 0, **TINY, behaviour=behaviour) for q in d4rl.QUALITIES}
    for q, data in sets.items():
        assert data.act_dim == 1 and data.obs_dim == 3, q
        assert data.n_steps >= (TINY["dataset_steps"] if q != "medium-replay" else 1), q
        assert all(ep.truncations[-1] for ep in data), q  # Pendulum only ends by its time limit
        assert np.all(np.abs(data.transitions().actions) <= 2.0 + 1e-6), q  # env bounds, not SAC's [-1, 1]
    cut = behaviour.snapshot_steps[behaviour.medium_index]
    assert sets["medium-replay"].n_steps <= cut
    assert sets["medium-replay"].metadata["behaviour_step"] == cut
    assert len(sets["medium-expert"]) == len(sets["medium"]) + len(sets["expert"])
    # The replay buffer's episodes are SAC's own: its first one is the start of training.
    first = sets["medium-replay"][0]
    assert np.array_equal(first.observations[:-1], behaviour.replay[0].observations[:-1])


@pytest.mark.slow
def test_load_caches_every_quality_and_the_cli_reports_and_exports(tmp_path, monkeypatch, capsys):
    from llmrl.cli import main

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    assert main(["data", "make", "pendulum-expert", "--seed", "0", "--sac-steps", "400", "--dataset-steps", "250",
                 "--root", str(tmp_path), "--minari"]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert line["name"] == "pendulum-expert" and line["steps"] >= 250
    assert sorted(p.name for p in (tmp_path / "pendulum").glob("*.npz")) == sorted(
        f"{q}-seed0-sac400-n250.npz" for q in d4rl.QUALITIES)
    import minari

    assert minari.load_dataset("llmrl/pendulum/expert-s0-v0").total_steps == line["steps"]


def test_bad_names_and_unordered_references_say_what_to_do():
    with pytest.raises(ValueError, match="pendulum-medium-replay"):
        d4rl.parse_name("pendulum-mediocre")
    with pytest.raises(ValueError, match="--sac-steps"):
        d4rl.normalized_score([0.0], {"ref_min_score": -100.0, "ref_max_score": -200.0})
    assert d4rl.normalized_score([-150.0], {"ref_min_score": -200.0, "ref_max_score": -100.0})[0] == 50.0
