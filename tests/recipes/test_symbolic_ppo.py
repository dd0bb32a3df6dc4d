"""Symbolic-PPO: the observation SB3 sees, and tiny real runs that write the shared run directory."""

from __future__ import annotations

import csv
import json

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env

from llmrl.agents.sb3 import SB3PolicyAgent
from llmrl.envs.babyai_symbolic import MISSION_VOCAB, SymbolicObservation, encode_mission
from llmrl.recipes.symbolic_ppo import SymbolicPPOConfig, run
from llmrl.rl.ppo import PPOConfig
from llmrl.runs import PROGRESS_COLUMNS

ENV = "BabyAI-Text-GoToLocalS5N2-v0"
HEADER = (
    "env_steps,updates,wall_s,episodes,success_rate,mean_return,mean_length,"
    "policy_loss,value_loss,entropy,approx_kl,clip_fraction,steps_per_s"
)


def tiny(**kw) -> SymbolicPPOConfig:
    ppo = PPOConfig(n_steps=64, minibatch_size=64, learning_rate=kw.pop("learning_rate", 3e-4))
    base = dict(env_id=ENV, total_env_steps=1024, n_envs=4, ppo=ppo, eval_episodes=4, checkpoint_every=256)
    return SymbolicPPOConfig(**{**base, **kw})


def train_symbolic_ppo(config: SymbolicPPOConfig, out, resume: bool = False, progress: bool = True):
    return run(config, out, resume=resume, progress=progress).out


def rows(run) -> list[dict[str, str]]:
    with (run / "progress.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_wrapper_space_passes_sb3_check_and_every_observation_is_in_it():
    env = SymbolicObservation(gym.make("BabyAI-Text-MixedTrainLocal-v0"))
    check_env(env, warn=False)
    assert set(env.observation_space.spaces) == {"image", "direction", "mission"}  # no sentences
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        assert env.observation_space.contains(obs)
        for a in [2, 0, 2, 1, 3, 5, 4, 2]:
            obs, *_ = env.step(a)
            assert env.observation_space.contains(obs)


def test_mission_ids_tell_colours_and_objects_apart_and_pad_with_zero():
    missions = ("go to the red ball", "go to the blue ball", "go to the red key")
    red_ball, blue_ball, red_key = (encode_mission(m) for m in missions)
    assert red_ball.shape == (16,) and red_ball.dtype == np.int64
    assert np.flatnonzero(red_ball != blue_ball).tolist() == [3]  # only the colour differs
    assert np.flatnonzero(red_ball != red_key).tolist() == [4]  # only the object differs
    assert (red_ball[5:] == 0).all() and (red_ball[:5] > 1).all()  # known words, then padding
    unk = MISSION_VOCAB.index("<unk>")
    assert encode_mission("go to the dax")[3] == unk
    seq = encode_mission("pick up the grey box, then go to the grey key")
    assert seq[:10].tolist() == [MISSION_VOCAB.index(w) for w in "pick up the grey box then go to the grey".split()]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return train_symbolic_ppo(tiny(), tmp_path_factory.mktemp("run") / "symbolic", progress=False)


def test_a_run_writes_config_progress_checkpoints_and_evaluation(tiny_run):
    config = json.loads((tiny_run / "config.json").read_text())
    assert list(config)[:5] == ["recipe", "label", "env_id", "seed", "total_env_steps"]
    assert config["recipe"] == "symbolic-ppo" and config["env_id"] == ENV and config["config"]["reward_scale"] == 20.0
    assert (tiny_run / "progress.csv").read_text().splitlines()[0] == HEADER == ",".join(PROGRESS_COLUMNS)
    r = rows(tiny_run)
    assert [int(x["env_steps"]) for x in r] == [256, 512, 768, 1024]
    assert [int(x["updates"]) for x in r] == [1, 2, 3, 4]
    episodes = [int(x["episodes"]) for x in r]
    assert episodes == sorted(episodes) and episodes[-1] > 0
    for x in r:  # losses of the update made on that row's rollout; returns unscaled (at most 1)
        assert x["value_loss"] and 0 < float(x["entropy"]) <= np.log(6) + 1e-6
        assert x["mean_return"] == "" or 0 <= float(x["mean_return"]) <= 1
    assert sorted(p.name for p in (tiny_run / "checkpoints").iterdir())[-1] == "step_000001024.zip"
    assert any((tiny_run / "tb").iterdir())
    result = json.loads((tiny_run / "eval" / "results.json").read_text())
    assert result["results"][0]["summary"]["episodes"] == 4
    assert result["results"][0]["summary"]["agent"] == "symbolic-ppo"
    assert result["meta"]["env_steps"] == 1024


def test_a_finished_run_is_not_overwritten_without_resume(tiny_run):
    with pytest.raises(FileExistsError, match="--resume"):
        train_symbolic_ppo(tiny(), tiny_run, progress=False)


def test_resume_continues_from_the_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    train_symbolic_ppo(tiny(total_env_steps=512, eval_episodes=0), run, progress=False)
    # A killed run may have logged past its last checkpoint: those rows must go.
    with (run / "progress.csv").open("a") as f:
        f.write("768,3,9,9,0,0,0,0,0,0,0,0,0\n")
    train_symbolic_ppo(tiny(total_env_steps=1024, eval_episodes=0), run, resume=True, progress=False)
    steps = [int(x["env_steps"]) for x in rows(run)]
    assert steps == [256, 512, 768, 1024]
    assert float(rows(run)[2]["wall_s"]) >= float(rows(run)[1]["wall_s"])
    assert PPO.load(run / "checkpoints" / "step_000001024.zip").num_timesteps == 1024
    with pytest.raises(ValueError, match="learning_rate"):
        train_symbolic_ppo(tiny(learning_rate=1e-3), run, resume=True, progress=False)


def test_the_same_seed_gives_the_same_run(tmp_path):
    def numbers(run):
        return [{k: v for k, v in x.items() if k not in ("wall_s", "steps_per_s")} for x in rows(run)]

    a = train_symbolic_ppo(tiny(total_env_steps=512, eval_episodes=0), tmp_path / "a", progress=False)
    b = train_symbolic_ppo(tiny(total_env_steps=512, eval_episodes=0), tmp_path / "b", progress=False)
    assert numbers(a) == numbers(b) and len(numbers(a)) == 2


def test_the_agent_acts_on_raw_observations_and_its_episodes_do_not_depend_on_batching(tiny_run):
    from llmrl.evaluation import evaluate

    model = PPO.load(tiny_run / "checkpoints" / "step_000001024.zip")
    agent = SB3PolicyAgent(model, seed=3)
    one = evaluate(agent, lambda: gym.make(ENV), n_episodes=4, n_envs=1, seed=100)
    four = evaluate(agent, lambda: gym.make(ENV), n_episodes=4, n_envs=4, seed=100)
    assert [(e.seed, e.length, e.action_counts) for e in one.episodes] == [
        (e.seed, e.length, e.action_counts) for e in four.episodes
    ]


def test_a_recurrent_run_trains_resumes_and_its_agent_carries_memory_per_episode(tmp_path):
    from sb3_contrib import RecurrentPPO

    from llmrl.evaluation import evaluate

    run = tmp_path / "lstm"
    train_symbolic_ppo(tiny(memory=True, total_env_steps=512, eval_episodes=0), run, progress=False)
    train_symbolic_ppo(tiny(memory=True, total_env_steps=1024, eval_episodes=4), run, resume=True, progress=False)
    assert [int(x["env_steps"]) for x in rows(run)] == [256, 512, 768, 1024]
    model = RecurrentPPO.load(run / "checkpoints" / "step_000001024.zip")
    assert model.policy.lstm_actor.hidden_size == 128
    agent = SB3PolicyAgent(model, seed=3)
    assert agent.recurrent
    one = evaluate(agent, lambda: gym.make(ENV), n_episodes=4, n_envs=1, seed=100)
    four = evaluate(agent, lambda: gym.make(ENV), n_episodes=4, n_envs=4, seed=100)
    assert [(e.seed, e.length, e.action_counts) for e in one.episodes] == [
        (e.seed, e.length, e.action_counts) for e in four.episodes
    ]  # each environment's LSTM state is its own
    assert json.loads((run / "eval" / "results.json").read_text())["results"][0]["summary"]["episodes"] == 4
