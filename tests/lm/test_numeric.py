"""Numeric adapters around a real causal LM (smollm2-135m-instruct, fp32): KALM's way in and out."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from llmrl.lm import LMError
from llmrl.lm.numeric import Action, GroundedLM, NumericAdapters, State, Text

D, N_ACTIONS = 10, 40


@pytest.fixture(scope="module")
def base_lm(smollm2_fp32):
    return smollm2_fp32


@pytest.fixture
def lm(base_lm):
    """A private copy: GroundedLM wraps the LM's model with LoRA in place."""
    return copy.deepcopy(base_lm)


def rand_state(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(-0.5, 0.6, D).astype(np.float32)


def test_adapters_map_between_numbers_and_the_hidden_size():
    ad = NumericAdapters(D, N_ACTIONS, hidden=64)
    assert ad.embed_state(torch.zeros(3, D)).shape == (3, 64)
    assert ad.embed_action(torch.tensor([0, 39])).shape == (2, 64)
    assert ad.state_out(torch.zeros(5, 64)).shape == (5, D)
    assert ad.action_out(torch.zeros(5, 64)).shape == (5, N_ACTIONS)


def test_normalisation_standardises_the_fitted_states():
    rng = np.random.default_rng(0)
    x = rng.normal([0.1] * D, [0.3] * D, size=(500, D)).astype(np.float32)
    ad = NumericAdapters(D, N_ACTIONS, hidden=8)
    ad.fit_normalisation(x)
    z = ad.standardise(torch.from_numpy(x))
    np.testing.assert_allclose(z.mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(0).numpy(), 1, atol=1e-4)
    np.testing.assert_allclose(ad.destandardise(z).numpy(), x, atol=1e-6)


def test_numeric_slots_carry_the_adapter_outputs_and_text_slots_the_token_embeddings(lm):
    g = GroundedLM(lm)
    rng = np.random.default_rng(0)
    s0, s1 = rand_state(rng), rand_state(rng)
    batch = g.batch([[Text("Trajectory:"), State(s0), Action(7), State(s1), Text(" done")]])
    emb = g.inputs_embeds(batch)[0]
    ids = batch.input_ids[0]
    n_text = len(lm._bos) + len(lm.encode("Trajectory:"))
    # BOS + prompt tokens, then state, action, state, then the closing text.
    torch.testing.assert_close(emb[:n_text], g.embed_tokens(ids[:n_text]))
    torch.testing.assert_close(emb[n_text], g.embed_state(torch.from_numpy(s0)))
    torch.testing.assert_close(emb[n_text + 1], g.embed_action(torch.tensor(7)))
    torch.testing.assert_close(emb[n_text + 2], g.embed_state(torch.from_numpy(s1)))
    torch.testing.assert_close(emb[n_text + 3:], g.embed_tokens(ids[n_text + 3:]))
    assert (ids[n_text : n_text + 3] == g.placeholder_id).all()
    assert ids[0].item() == lm._bos[0]


def test_each_target_is_predicted_from_the_position_before_it(lm):
    g = GroundedLM(lm)
    rng = np.random.default_rng(1)
    s = [rand_state(rng) for _ in range(3)]
    short = [Text("Go:"), State(s[0]), Action(3, target=True), State(s[1], target=True)]
    long = [Text("A longer prompt here:"), State(s[2]), Action(5), Text(" so", target=True)]
    for padding in ("right", "left"):
        batch = g.batch([short, long], padding=padding)
        enc = [g.encode(short), g.encode(long)]
        L = batch.input_ids.shape[1]
        off = [0 if padding == "right" else L - len(e) for e in enc]
        n0 = len(lm._bos) + len(lm.encode("Go:"))
        # short: action target at slot n0+1 (from n0), state target at n0+2 (from n0+1).
        assert batch.action_from.T.tolist() == [[0, off[0] + n0]]
        assert batch.action_targets.tolist() == [3]
        assert batch.state_from.T.tolist() == [[0, off[0] + n0 + 1]]
        torch.testing.assert_close(batch.state_targets[0], torch.from_numpy(s[1]))
        # long: the text target " so" follows the action slot.
        n1 = len(lm._bos) + len(lm.encode("A longer prompt here:")) + 2  # first " so" slot
        so = lm.encode(" so")
        assert batch.text_from.T.tolist() == [[1, off[1] + n1 - 1 + k] for k in range(len(so))]
        assert batch.text_targets.tolist() == so
        cols = batch.text_from[1] + 1
        assert batch.input_ids[1, cols].tolist() == so


def test_losses_do_not_depend_on_padding_side(lm):
    g = GroundedLM(lm)
    rng = np.random.default_rng(2)
    seqs = [
        [Text("Short:"), State(rand_state(rng)), Action(1, True), State(rand_state(rng), True)],
        [Text("A much longer prompt with more words:"), State(rand_state(rng)), Action(2, True),
         State(rand_state(rng), True), Text(" the end", True)],
    ]
    with torch.no_grad():
        right, left = g(g.batch(seqs, "right")), g(g.batch(seqs, "left"))
    for k in right:
        torch.testing.assert_close(right[k], left[k], atol=2e-4, rtol=1e-4)


def test_loss_is_the_kalm_weighted_sum_and_a_missing_kind_counts_zero(lm):
    g = GroundedLM(lm)
    rng = np.random.default_rng(3)
    with torch.no_grad():
        out = g(g.batch([[Text("x:"), State(rand_state(rng)), Action(4, True), State(rand_state(rng), True)]]))
        torch.testing.assert_close(out["loss"], 0.5 * out["mse_state"] + 0.5 * out["ce_action"] + out["ce_text"])
        assert out["ce_text"].item() == 0.0 and out["mse_state"].item() > 0 and out["ce_action"].item() > 0


def test_bad_items_raise_errors_that_name_the_problem(lm):
    g = GroundedLM(lm)
    with pytest.raises(ValueError, match="shape"):
        g.encode([Text("x"), State(np.zeros(3))])
    with pytest.raises(ValueError, match="outside"):
        g.encode([Text("x"), Action(40)])
    with pytest.raises(TypeError):
        g.encode([Text("x"), "a string"])  # type: ignore[list-item]
    with pytest.raises(LMError, match="already carries"):
        GroundedLM(lm)


def _episodes(rng: np.random.Generator, n: int) -> list[list]:
    seqs = []
    for _ in range(n):
        s = rand_state(rng)
        a = int(rng.integers(N_ACTIONS))
        nxt = s.copy()
        nxt[2 * (a // 8)] += 0.25
        seqs.append([Text("Step:"), State(s), Action(a), Text(" ->"), State(nxt, True), Text(" ok", True)])
    return seqs


def test_a_short_fine_tune_lowers_the_loss(lm):
    torch.manual_seed(0)
    g = GroundedLM(lm)
    rng = np.random.default_rng(4)
    batch = g.batch(_episodes(rng, 4))
    opt = torch.optim.AdamW([p for p in g.parameters() if p.requires_grad], lr=2e-3)
    first = None
    for _ in range(12):
        loss = g(batch)["loss"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_save_then_load_gives_identical_outputs(lm, base_lm, tmp_path):
    torch.manual_seed(0)
    g = GroundedLM(lm)
    rng = np.random.default_rng(5)
    g.adapters.fit_normalisation(rng.uniform(-0.5, 0.6, (50, D)))
    batch = g.batch(_episodes(rng, 4))
    opt = torch.optim.AdamW([p for p in g.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):  # LoRA's B starts at zero: train so the saved weights matter
        opt.zero_grad()
        g(batch)["loss"].backward()
        opt.step()
    path = g.save(tmp_path / "grounded")
    assert path.exists() and not list(path.parent.glob("*.tmp"))
    saved = g.trainable_state()
    assert any("lora_B" in k for k in saved) and "adapters.state_mean" in saved
    assert all("lora" in k or k.startswith("adapters.") for k in saved)  # no frozen LM weights
    g2 = GroundedLM.load(tmp_path / "grounded", copy.deepcopy(base_lm))
    with torch.no_grad():
        a, b = g(batch), g2(batch)
        h1, h2 = g.hidden_states(batch), g2.hidden_states(batch)
    torch.testing.assert_close(h1, h2, atol=0, rtol=0)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0)


def test_loading_from_a_folder_without_a_checkpoint_says_how_to_make_one(base_lm, tmp_path):
    with pytest.raises(LMError, match="GroundedLM.save"):
        GroundedLM.load(tmp_path, copy.deepcopy(base_lm))
