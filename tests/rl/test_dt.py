"""Decision Transformer and Online Decision Transformer: tiny models, hand-made episodes, Pendulum-v1."""

from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from llmrl.data import Episode, EpisodeDataset
from llmrl.rl.dt import (
    DTConfig,
    TrajectoryBuffer,
    WindowSampler,
    evaluate_dt,
    load_dt,
    make_dt,
    returns_to_go,
    rollout,
    train_dt,
    train_odt,
)

torch.set_num_threads(1)

TINY = DTConfig(hidden_size=32, n_layer=1, n_head=1, context_len=5, batch_size=16, learning_rate=1e-3,
                warmup_steps=1, train_steps=40, log_every=10, checkpoint_every=20, max_episode_length=64,
                action_scale=2.0)


def linear_control_episodes(n: int = 12, length: int = 16, seed: int = 0) -> list[Episode]:
    """Pendulum-shaped (3-d state, 1-d action in [−2, 2]) episodes whose action is a fixed
    function of the state, so an action loss can fall quickly."""
    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(n):
        obs = rng.normal(size=(length + 1, 3)).astype(np.float32)
        actions = np.clip(obs[:-1, :1] - 0.5 * obs[:-1, 1:2], -2, 2)
        rewards = -np.abs(actions[:, 0]) + rng.normal(scale=0.1, size=length)
        episodes.append(Episode(obs, actions, rewards, [False] * length, [False] * (length - 1) + [True], goal=""))
    return episodes


def rows(path) -> list[dict[str, str]]:
    with open(path / "progress.csv") as f:
        return list(csv.DictReader(f))


def test_action_loss_falls_on_a_tiny_dataset():
    seen = []
    train_dt(replace(TINY, train_steps=60), EpisodeDataset(linear_control_episodes()),
             progress=lambda step, row: seen.append(row["action_loss"]))
    assert len(seen) == 6
    assert seen[-1] < 0.5 * seen[0], seen


def test_windows_are_left_padded_with_normalised_states_and_scaled_returns_to_go():
    T = 3
    obs = np.arange(4 * 2, dtype=np.float32).reshape(4, 2)
    short = Episode(obs, [[1.0], [-1.0], [2.0]], [1.0, 2.0, 4.0], [False, False, True], [False] * T, goal="")
    long = Episode(np.zeros((9, 2)), np.zeros((8, 1)), np.ones(8), [False] * 8, [False] * 7 + [True], goal="")
    mean, std = np.array([1.0, 2.0], np.float32), np.array([2.0, 4.0], np.float32)
    sampler = WindowSampler([short, long], context_len=5, state_mean=mean, state_std=std, return_scale=10.0,
                            action_scale=np.array([2.0], np.float32), max_episode_length=2)
    b = sampler.windows(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 2]))
    # Episode 0 from step 1: two real steps at the right, three padded on the left.
    np.testing.assert_array_equal(b.mask[1].numpy(), [0, 0, 0, 1, 1])
    np.testing.assert_allclose(b.states[1].numpy(), [[0, 0]] * 3 + [[(2 - 1) / 2, (3 - 2) / 4],
                                                                    [(4 - 1) / 2, (5 - 2) / 4]])
    np.testing.assert_allclose(b.actions[1, :, 0].numpy(), [0, 0, 0, -0.5, 1.0])
    np.testing.assert_allclose(b.returns_to_go[1, :, 0].numpy(), [0, 0, 0, 0.6, 0.4])  # (2+4)/10, 4/10
    np.testing.assert_array_equal(b.timesteps[1].numpy(), [0, 0, 0, 1, 1])  # step 2 capped at max_episode_length−1
    np.testing.assert_allclose(b.returns_to_go[0, :, 0].numpy(), [0, 0, 0.7, 0.6, 0.4])
    # Episode 1 from step 2: a full window of five real steps.
    np.testing.assert_array_equal(b.mask[2].numpy(), [1] * 5)
    np.testing.assert_allclose(b.returns_to_go[2, :, 0].numpy(), [0.6, 0.5, 0.4, 0.3, 0.2])
    np.testing.assert_array_equal(returns_to_go(np.array([1.0, 2.0, 4.0])), [7.0, 6.0, 4.0])

    # Trajectories are drawn in proportion to their length (3 : 8), starts uniformly.
    g = torch.Generator().manual_seed(0)
    batch = sampler.sample(4000, g)
    from_short = batch.states[:, -1, 1] > -0.4  # the long episode's states are all (0 − 2) / 4
    assert abs(from_short.float().mean().item() - 3 / 11) < 0.03
    n_real = batch.mask[from_short].sum(1)  # starts 0, 1, 2 leave 3, 2, 1 real steps
    assert all(abs((n_real == k).float().mean().item() - 1 / 3) < 0.05 for k in (1, 2, 3))


class CausalEncoder(nn.Module):
    """Another body with the encoder's interface: a causal nn.TransformerEncoder of width 48."""

    def __init__(self, width: int) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(width, nhead=2, dim_feedforward=2 * width, dropout=0.0, batch_first=True)
        self.body = nn.TransformerEncoder(layer, num_layers=1)

    def forward(self, inputs_embeds, attention_mask, position_ids):
        n = inputs_embeds.shape[1]
        causal = torch.triu(torch.full((n, n), float("-inf")), diagonal=1)
        # Padding is only on the left and never predicted from, so a causal mask alone is enough here.
        return (self.body(inputs_embeds, mask=causal),)


@pytest.mark.parametrize("body", ["gpt2", "torch"])
def test_a_model_with_a_swapped_encoder_and_mlp_embeddings_trains_and_evaluates(body):
    from transformers import GPT2Config, GPT2Model

    width = 48
    config = replace(TINY, train_steps=30)
    model = make_dt(config, state_dim=3, act_dim=1, action_scale=2.0)
    if body == "gpt2":
        model.encoder = GPT2Model(GPT2Config(n_embd=width, n_layer=1, n_head=2, vocab_size=1, n_positions=64))
    else:
        model.encoder = CausalEncoder(width)
    mlp = lambda n_in: nn.Sequential(nn.Linear(n_in, width), nn.GELU(), nn.Linear(width, width))  # noqa: E731
    model.embed_state, model.embed_action, model.embed_return = mlp(3), mlp(1), mlp(1)
    model.embed_timestep = nn.Embedding(config.max_episode_length, width)
    model.embed_ln = nn.LayerNorm(width)
    model.predict_action = nn.Sequential(nn.Linear(width, 1), nn.Tanh())
    before = [p.detach().clone() for p in model.encoder.parameters()]
    seen = []
    trained = train_dt(config, linear_control_episodes(), model=model, progress=lambda s, r: seen.append(r["loss"]))
    assert trained is model
    assert seen[-1] < seen[0]
    assert any(not torch.equal(a, b) for a, b in zip(before, model.encoder.parameters()))
    returns = evaluate_dt(model, "Pendulum-v1", target_return=-100.0, n_episodes=2, seed=0, max_episode_steps=12)
    assert len(returns) == 2 and all(np.isfinite(returns))


def test_an_auxiliary_loss_is_added_and_trains_its_parameters():
    extra = nn.Parameter(torch.tensor(3.0))
    model = make_dt(TINY, 3, 1, 2.0)
    model.register_parameter("lm_probe", extra)  # stands in for LaMo's LM head inside the model
    seen = []
    train_dt(replace(TINY, train_steps=20), linear_control_episodes(), model=model, aux_loss=lambda: extra**2,
             progress=lambda s, r: seen.append(r))
    assert "aux_loss" in seen[0]
    assert seen[-1]["loss"] == pytest.approx(seen[-1]["action_loss"] + seen[-1]["aux_loss"], rel=1e-4)
    assert extra.item() < 3.0


def test_the_fifo_buffer_starts_with_the_best_offline_trajectories_and_drops_the_oldest():
    def episode(ret: float, length: int = 2) -> Episode:
        return Episode(np.zeros((length + 1, 3)), np.zeros((length, 1)), [ret] + [0.0] * (length - 1),
                       [False] * length, [True] * length, goal="")

    offline = [episode(r) for r in (5.0, 1.0, 9.0, 3.0, 7.0)]
    buffer = TrajectoryBuffer(3, offline)
    assert [ep.episode_return for ep in buffer.episodes] == [5.0, 7.0, 9.0]  # top 3, lowest first out
    buffer.add([episode(-1.0), episode(-2.0)])
    assert [ep.episode_return for ep in buffer.episodes] == [9.0, -1.0, -2.0]
    buffer.add([episode(-3.0)])
    assert [ep.episode_return for ep in buffer.episodes] == [-1.0, -2.0, -3.0]


def test_online_trajectories_are_relabelled_with_the_returns_they_obtained():
    config = replace(TINY, stochastic=True)
    model = make_dt(config, 3, 1, 2.0)
    with torch.no_grad():
        model.return_scale.fill_(100.0)
    online_rtg = 1000.0  # far above anything Pendulum pays: the rollout is conditioned on it
    (ep,) = rollout(model, "Pendulum-v1", online_rtg, 1, seed=3, sample=True, max_episode_steps=10)
    assert len(ep) == 10 and ep.truncations[-1]
    sampler = WindowSampler([ep], 5, np.zeros(3, np.float32), np.ones(3, np.float32), 100.0,
                            np.array([2.0], np.float32), 64)
    b = sampler.windows(torch.tensor([0]), torch.tensor([0]))
    hindsight = np.cumsum(ep.rewards[::-1])[::-1][:5] / 100.0
    np.testing.assert_allclose(b.returns_to_go[0, :, 0].numpy(), hindsight, rtol=1e-5)
    assert b.returns_to_go[0, 0, 0].item() < 0 < online_rtg  # Pendulum's rewards are all ≤ 0


def test_odt_fine_tunes_online_and_logs_each_iteration(tmp_path):
    config = replace(TINY, stochastic=True, train_steps=10, online_iterations=2, updates_per_iteration=5,
                     replay_size=13, eval_every=1, eval_episodes=2, online_rtg=0.0, eval_rtg=-100.0,
                     max_episode_steps=16, eval_context_len=3)
    model = train_odt(config, linear_control_episodes(), "Pendulum-v1", out_dir=tmp_path)
    online = [r for r in rows(tmp_path) if r["iteration"]]
    assert [int(r["step"]) for r in online] == [15, 20]
    assert [int(r["env_steps"]) for r in online] == [16, 32]
    assert all(r["eval_return"] and r["online_return"] and r["temperature"] for r in online)
    ckpt = torch.load(tmp_path / "checkpoints" / "latest.pt", weights_only=False)
    # 12 offline trajectories (saved as their index) and the 2 online ones, less the lowest-return offline one.
    assert len(ckpt["buffer"]) == 13 and [len(ep) for ep in ckpt["buffer"][-2:]] == [16, 16]
    offline = linear_control_episodes()
    assert sorted(ckpt["buffer"][:11]) == sorted(np.argsort([ep.episode_return for ep in offline])[1:].tolist())
    assert ckpt["buffer"][-1].episode_return == pytest.approx(float(online[-1]["online_return"]), rel=1e-4)
    loaded = load_dt(tmp_path / "agent.pt")
    same = [evaluate_dt(m, "Pendulum-v1", -100.0, 1, seed=5, max_episode_steps=8) for m in (model, loaded)]
    assert same[0] == same[1]


def test_a_killed_run_resumes_to_the_same_parameters_as_an_uninterrupted_one(tmp_path):
    episodes = linear_control_episodes()
    odt = replace(TINY, stochastic=True, train_steps=20, online_iterations=3, updates_per_iteration=5,
                  eval_every=2, eval_episodes=1, online_rtg=0.0, eval_rtg=-50.0, max_episode_steps=10)
    for name, config, run in (("dt", TINY, lambda **kw: train_dt(TINY, episodes, **kw)),
                              ("odt", odt, lambda **kw: train_odt(odt, episodes, "Pendulum-v1", **kw))):
        whole = run(out_dir=tmp_path / f"{name}-whole")

        def kill(step, row, at=30):  # after step 20's checkpoint; step 30's row must be cut on resume
            if step == at:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            run(out_dir=tmp_path / f"{name}-killed", progress=kill)
        resumed = run(out_dir=tmp_path / f"{name}-killed", resume=True)
        for (key, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
            assert torch.equal(a, b), f"{name}: {key} differs after resume"
        drop = ("wall_s", "steps_per_s")
        assert [{k: v for k, v in r.items() if k not in drop} for r in rows(tmp_path / f"{name}-killed")] == \
            [{k: v for k, v in r.items() if k not in drop} for r in rows(tmp_path / f"{name}-whole")]


@pytest.mark.parametrize(("change", "message"), [
    (dict(hidden_size=30, n_head=4), "multiple of n_head"),
    (dict(context_len=0), "context_len must be at least 1"),
    (dict(dropout=1.0), "dropout"),
    (dict(eval_context_len=50), "eval_context_len"),
    (dict(return_scale=0.0), "return_scale must be positive"),
    (dict(action_scale=-1.0), "action bound"),
])
def test_a_bad_config_is_refused_with_the_reason(change, message):
    with pytest.raises(ValueError, match=message):
        replace(TINY, **change)


def test_bad_inputs_are_refused_with_the_fix():
    discrete = Episode(np.zeros((3, 3)), [0, 1], [0.0, 0.0], [False, True], [False, False], goal="")
    with pytest.raises(ValueError, match="continuous actions"):
        train_dt(TINY, [discrete])
    with pytest.raises(ValueError, match="online_rtg"):
        train_odt(replace(TINY, stochastic=True), linear_control_episodes(2), "Pendulum-v1")
    with pytest.raises(ValueError, match="stochastic=True"):
        train_odt(replace(TINY, online_rtg=0.0, eval_rtg=0.0), linear_control_episodes(2), "Pendulum-v1")
    with pytest.raises(ValueError, match="make_dt"):
        train_dt(TINY, linear_control_episodes(2), model=make_dt(TINY, state_dim=4, act_dim=1))
