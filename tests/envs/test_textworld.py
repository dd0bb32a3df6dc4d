"""TextWorld games: made here from a seed, cached, bit-for-bit reproducible, played through Gymnasium."""

from __future__ import annotations

import pytest

pytest.importorskip("textworld")

from llmrl.envs import textworld as TW


@pytest.fixture(scope="module")
def easy(tmp_path_factory):
    cache = tmp_path_factory.mktemp("tw")
    return cache, TW.make_games("easy", "train", 1, cache=cache)


def test_a_game_is_remade_bit_for_bit_from_its_seed_and_cached(easy, tmp_path):
    cache, (game,) = easy
    again = TW.make_games("easy", "train", 1, cache=tmp_path)[0]
    assert again.read_bytes() == game.read_bytes()
    assert again.with_suffix(".json").read_bytes() == game.with_suffix(".json").read_bytes()
    stamp = game.stat().st_mtime_ns
    assert TW.make_games("easy", "train", 1, cache=cache)[0].stat().st_mtime_ns == stamp  # found, not remade


def test_train_and_test_games_are_different_games():
    train = TW.game_paths("easy", "train", 2)
    test = TW.game_paths("easy", "test", 2)
    assert not set(train) & set(test)


def test_the_walkthrough_wins_and_the_reward_is_the_score(easy):
    _, games = easy
    env = TW.TextWorldEnv(games, max_steps=20)
    obs, info = env.reset(seed=0)
    assert set(obs) == {"text", "description", "inventory", "objective"} and obs["objective"]
    assert info["admissible"] and info["walkthrough"] and info["max_score"] >= 1
    assert ">" not in obs["text"][-3:]  # the prompt and status bar are gone
    total, done = 0.0, False
    for command in info["walkthrough"]:
        assert command in info["admissible"]
        obs, reward, done, _, info = env.step(command)
        total += reward
    assert done and info["won"] and total == info["max_score"]
    env.close()


def test_the_episode_truncates_at_max_steps(easy):
    env = TW.TextWorldEnv(easy[1], max_steps=2)
    env.reset(seed=0)
    assert not env.step("look")[3]
    assert env.step("look")[3]


def test_bad_input_names_the_fix(tmp_path):
    with pytest.raises(ValueError, match="unknown TextWorld level"):
        TW.make_games("impossible", "train", 1, cache=tmp_path)
    with pytest.raises(FileNotFoundError, match="make_games"):
        TW.TextWorldEnv([tmp_path / "missing.z8"])
    with pytest.raises(ValueError, match="at least one game"):
        TW.TextWorldEnv([])
