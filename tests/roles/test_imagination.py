"""KALM on a real LM (smollm2-135m-instruct, fp32): the four tasks, grounding, and imagination."""

from __future__ import annotations

import copy
import csv
from collections import Counter

import numpy as np
import pytest
import torch

from llmrl.lm.numeric import Action, GroundedLM, State
from llmrl.roles.imagination import (
    GroundingConfig,
    act_in_world,
    explain,
    ground,
    imagine,
    kalm_sequences,
    rollout_generation,
    teacher_forced_metrics,
)

COLOURS = ("red", "blue", "green", "purple", "cyan")
DIRECTIONS = {"to the right": (1, 0), "behind": (0, 1), "to the left": (-1, 0), "in front": (0, -1)}


def expert_episode(rng: np.random.Generator, ball: int, direction: int, T: int) -> dict:
    """Push one ball T times the same way (action = 8 * ball + direction, as in CLEVR-Robot)."""
    name, (dx, dy) = list(DIRECTIONS.items())[direction]
    s = rng.uniform(-0.4, 0.4, 10).astype(np.float32)
    obs = [s]
    for _ in range(T):
        s = s.copy()
        s[2 * ball] += 0.1 * dx
        s[2 * ball + 1] += 0.1 * dy
        obs.append(s)
    return {"observations": np.stack(obs), "actions": np.full(T, 8 * ball + direction, dtype=np.int64),
            "goal": f"Push the {COLOURS[ball]} ball {name}."}


def episodes(seed: int, n: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [expert_episode(rng, k % 2, (k // 2) % 2, int(rng.integers(2, 4))) for k in range(n)]


@pytest.fixture(scope="module")
def base_lm(smollm2_fp32):
    return smollm2_fp32


def config(**kw) -> GroundingConfig:
    base = dict(model="smollm2-135m-instruct", dtype="fp32", batch_size=4, learning_rate=3e-3,
                checkpoint_every=4, log_every=2)
    return GroundingConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(base_lm, tmp_path_factory):
    out = tmp_path_factory.mktemp("ground")
    eps = episodes(0, 8)
    g = ground(config(epochs=4, tasks=("generation", "explanation")), eps, out, n_actions=40, lm=copy.deepcopy(base_lm))
    return g, eps, out


def test_kalm_sequences_build_the_four_tasks_with_their_targets():
    ep = episodes(1, 1)[0]
    T = len(ep["actions"])
    rollout, dynamics, terminal, explanation = kalm_sequences([ep], (0, 1, 2, 3), np.random.default_rng(0))
    # 0: s0 is input only; every action and every later state is a target.
    assert isinstance(rollout[1], State) and not rollout[1].target
    assert [type(x) for x in rollout[2:]] == [Action, State] * T and all(x.target for x in rollout[2:])
    assert ep["goal"] in rollout[0].text
    # 1: one step; only the next state is a target, and it follows the state and action given.
    states = [x for x in dynamics if isinstance(x, State)]
    assert [x.target for x in states] == [False, True]
    t = next(k for k in range(T) if np.array_equal(ep["observations"][k], states[0].vector))
    np.testing.assert_array_equal(states[1].vector, ep["observations"][t + 1])
    # 2: the terminal state is the only target.
    assert [x.target for x in terminal] == [False, False, False, True]
    np.testing.assert_array_equal(terminal[-1].vector, ep["observations"][-1])
    # 3: the whole rollout is input; the goal text is the target.
    assert not any(x.target for x in explanation[:-1])
    assert explanation[-1].target and ep["goal"] in explanation[-1].text


def test_grounding_lowers_the_loss_and_writes_progress_checkpoint_and_model(trained):
    g, eps, out = trained
    with open(out / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(2, 17, 2))  # 16 sequences, batch 4, 4 epochs
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert float(rows[0]["tokens_per_s"]) > 0
    assert (out / "checkpoints" / "latest.pt").exists() and (out / "grounded" / "grounded.pt").exists()


def test_a_grounded_lm_imitates_the_expert_and_names_the_goal(trained):
    g, eps, _ = trained
    # 16 steps on 4 goals (one action each): chance is 1/40, always the commonest action ~0.3.
    assert teacher_forced_metrics(g, eps)["action_accuracy"] >= 0.5
    names = explain(g, eps[:4])
    assert all(n.startswith("Push the") for n in names), names
    assert any(n == ep["goal"] for n, ep in zip(names, eps)), names


def test_resumed_grounding_reaches_the_same_weights_as_an_uninterrupted_run(base_lm, tmp_path):
    eps = episodes(2, 6)
    cfg = config(tasks=("dynamics",), batch_size=2, checkpoint_every=1, log_every=1)
    full = ground(cfg, eps, tmp_path / "full", n_actions=40, lm=copy.deepcopy(base_lm)).trainable_state()

    class Killed(Exception):
        pass

    def kill_at_2(row):
        if row["step"] == 2:
            raise Killed

    with pytest.raises(Killed):
        ground(cfg, eps, tmp_path / "resumed", n_actions=40, progress=kill_at_2, lm=copy.deepcopy(base_lm))
    resumed = ground(cfg, eps, tmp_path / "resumed", n_actions=40, resume=True,
                     lm=copy.deepcopy(base_lm)).trainable_state()
    assert full.keys() == resumed.keys()
    for k in full:
        torch.testing.assert_close(full[k], resumed[k], atol=1e-6, rtol=1e-5)
    with open(tmp_path / "resumed" / "progress.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3]


def test_imagination_stops_when_the_predicate_holds(trained):
    g, eps, _ = trained
    calls: Counter = Counter()
    seen = []

    def stop_on_second_state(i, s0, s):
        calls[i] += 1
        seen.append((i, s0, s))
        return calls[i] == 2

    s0 = np.stack([ep["observations"][0] for ep in eps[:3]])
    rollouts = imagine(g, [ep["goal"] for ep in eps[:3]], s0, stop=stop_on_second_state, max_steps=10)
    for i, r in enumerate(rollouts):
        assert r["actions"].shape == (2,) and r["observations"].shape == (3, 10)
        np.testing.assert_array_equal(r["observations"][0], s0[i])
        assert r["goal"] == eps[i]["goal"]
    # The predicate saw the real s0 and each generated state.
    for i, start, s in seen:
        np.testing.assert_array_equal(start, s0[i])
    np.testing.assert_array_equal(seen[-1][2], rollouts[seen[-1][0]]["observations"][-1])


def test_acting_in_a_world_feeds_its_states_back_and_stops_when_it_says_done(trained):
    g, eps, _ = trained
    s0 = np.stack([ep["observations"][0] for ep in eps[:2]])
    taken = {0: [], 1: []}

    def world(i, action):  # a fake dynamics: every ball drifts +0.01 per step; rollout i ends after i + 2 steps
        taken[i].append(action)
        return s0[i] + 0.01 * len(taken[i]), len(taken[i]) == i + 2

    rollouts = act_in_world(g, [ep["goal"] for ep in eps[:2]], s0, world, max_steps=10)
    for i, r in enumerate(rollouts):
        assert r["actions"].tolist() == taken[i] and len(taken[i]) == i + 2
        np.testing.assert_allclose(r["observations"][1:], [s0[i] + 0.01 * k for k in range(1, i + 3)], atol=1e-6)
    # The first action depends only on the prompt: the same as imagination's.
    imagined = imagine(g, [ep["goal"] for ep in eps[:2]], s0, max_steps=1)
    assert [r["actions"][0] for r in rollouts] == [r["actions"][0] for r in imagined]


def test_projected_states_are_judged_recorded_and_fed_back_while_raw_ones_are_kept(trained):
    g, eps, _ = trained
    s0 = np.stack([ep["observations"][0] for ep in eps[:2]])
    goals = [ep["goal"] for ep in eps[:2]]
    judged = []

    def stop(i, start, s):
        judged.append(s.copy())
        return False

    zero = imagine(g, goals, s0, stop=stop, max_steps=3, project=lambda prev, s: np.zeros_like(s))
    plain = imagine(g, goals, s0, max_steps=3)
    for z, p in zip(zero, plain):
        assert not z["observations"][1:].any()  # what is recorded is the projection
        np.testing.assert_array_equal(z["raw_observations"][0], z["observations"][0])
        np.testing.assert_allclose(z["raw_observations"][1], p["observations"][1], atol=1e-5)  # the LM's own first step
        assert z["raw_observations"][1:].any()
    assert not np.any(judged)
    # The projection is fed back: the second prediction comes from the zero state, not the raw one.
    assert not np.allclose(zero[0]["raw_observations"][2], plain[0]["observations"][2], atol=1e-4)


def test_imagination_respects_max_steps(trained):
    g, eps, _ = trained
    rollouts = imagine(g, [eps[0]["goal"]] * 2, np.stack([eps[0]["observations"][0]] * 2), max_steps=3)
    assert [len(r["actions"]) for r in rollouts] == [3, 3]


def test_batched_imagination_equals_one_rollout_at_a_time(trained):
    g, eps, _ = trained
    # Goals of different token lengths (left padding) and rollouts that stop at different steps.
    goals = [eps[0]["goal"], "Move it.", eps[1]["goal"] + " Then wait for a long while, please.", eps[2]["goal"], "Go"]
    s0 = np.stack([ep["observations"][0] for ep in eps[:5]])

    def stop(i, start, s):
        return i % 2 == 1 and abs(float(s[0] - start[0])) + abs(float(s[1] - start[1])) > 0.05 * (i + 1)

    together = imagine(g, goals, s0, stop=stop, max_steps=4, batch_size=3)
    alone = [imagine(g, [goals[i]], s0[i : i + 1], stop=lambda _, a, b, i=i: stop(i, a, b), max_steps=4)[0]
             for i in range(len(goals))]
    assert len({len(r["actions"]) for r in together}) > 1  # rows really left the batch early
    for t, a in zip(together, alone):
        np.testing.assert_array_equal(t["actions"], a["actions"])
        np.testing.assert_allclose(t["observations"], a["observations"], atol=1e-4)


def test_imagined_rollouts_match_the_teacher_forced_predictions(trained):
    """The KV-cache decoding path predicts what a full forward pass over the same rollout does."""
    g, eps, _ = trained
    pick = [eps[0], eps[3]]
    rollouts = imagine(g, [e["goal"] for e in pick], np.stack([e["observations"][0] for e in pick]), max_steps=4)
    batch = g.batch([rollout_generation(r) for r in rollouts])
    with torch.no_grad():
        h = g.hidden_states(batch)
        actions = g.action_logits(h[batch.action_from[0], batch.action_from[1]]).argmax(-1)
        states = g.adapters.destandardise(g.state_prediction(h[batch.state_from[0], batch.state_from[1]]))
    np.testing.assert_array_equal(actions.numpy(), np.concatenate([r["actions"] for r in rollouts]))
    np.testing.assert_allclose(states.numpy(), np.concatenate([r["observations"][1:] for r in rollouts]), atol=1e-4)


def test_grounded_lm_saved_by_ground_loads_back(trained, base_lm):
    g, eps, out = trained
    g2 = GroundedLM.load(out / "grounded", copy.deepcopy(base_lm))
    s0 = np.stack([eps[0]["observations"][0]])
    a, b = imagine(g, [eps[0]["goal"]], s0, max_steps=3)[0], imagine(g2, [eps[0]["goal"]], s0, max_steps=3)[0]
    np.testing.assert_array_equal(a["actions"], b["actions"])
    np.testing.assert_allclose(a["observations"], b["observations"], atol=1e-6)
