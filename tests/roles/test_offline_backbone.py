"""LaMo's graft: an LM's decoder as the Decision Transformer's body, LoRA, MLP embeddings, the
language loss, and checkpoints that leave the frozen LM out."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from fakes import tiny_model_folder

from llmrl.data import Episode
from llmrl.rl.dt import DTConfig, make_dt, train_dt
from llmrl.roles.offline_backbone import LanguageLoss, LMBody, graft_lm, load_backbone, lm_parameters, prose_corpus

CONFIG = DTConfig(context_len=3, hidden_size=16, n_layer=1, n_head=1, batch_size=4, train_steps=6, warmup_steps=1,
                  log_every=1, checkpoint_every=3, max_episode_length=50, dropout=0.0)


def episodes(n: int = 4, T: int = 8) -> list[Episode]:
    rng = np.random.default_rng(0)
    return [Episode(rng.normal(size=(T + 1, 3)), rng.uniform(-1, 1, (T, 1)), rng.normal(size=T), [False] * T,
                    [False] * (T - 1) + [True], goal="") for _ in range(n)]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return load_backbone(str(tiny_model_folder(tmp_path_factory.mktemp("tiny"))))


def lamo(tiny_lm, lora_r=4):
    lm = copy.deepcopy(tiny_lm)
    lm.tokenizer = tiny_lm.tokenizer
    return graft_lm(make_dt(CONFIG, 3, 1), lm, lora_r=lora_r), lm


def test_only_lora_embeddings_and_heads_train_and_the_lm_weights_stay_put(tiny_lm):
    model, lm = lamo(tiny_lm)
    frozen = {k: v.clone() for k, v in lm.state_dict().items() if "lora_" not in k}
    lora = {k: v.clone() for k, v in model.named_parameters() if "lora_B" in k}
    assert lora and all(p.requires_grad for p in lm_parameters(model))
    assert {n for n, p in lm.named_parameters() if p.requires_grad} == {n for n in dict(lm.named_parameters())
                                                                        if "lora_" in n}
    train_dt(CONFIG, episodes(), model=model)
    assert all(torch.equal(v, lm.state_dict()[k]) for k, v in frozen.items())
    after = dict(model.named_parameters())
    assert any(not torch.equal(v, after[k]) for k, v in lora.items())  # lora_B starts at 0 and moved
    assert isinstance(model.embed_state, torch.nn.Sequential)  # LaMo's MLP embeddings


def test_checkpoints_leave_the_frozen_lm_out_and_a_killed_run_resumes_exactly(tiny_lm, tmp_path):
    model, lm = lamo(tiny_lm)
    keys = set(model.state_dict())
    assert keys and all("lora_" in k or not k.startswith("encoder.") for k in keys)

    def trained(out, steps, resume=False, base=None):
        m, l = base or lamo(tiny_lm)
        aux = LanguageLoss(l, l.tokenizer, ["go left go right"] * 20, weight=0.1, tokens=4)
        train_dt(replace(CONFIG, train_steps=steps), episodes(), model=m, aux_loss=aux, out_dir=out, resume=resume)
        return m

    full = trained(tmp_path / "full", 6)
    trained(tmp_path / "cut", 3)  # a run stopped at its checkpoint ...
    resumed = trained(tmp_path / "cut", 6, resume=True)  # ... and continued by a fresh process's model
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_the_body_gives_left_padded_rows_the_positions_of_unpadded_ones(tiny_lm):
    body = LMBody(copy.deepcopy(tiny_lm).model).eval()
    x = torch.randn(1, 5, 16)
    padded = torch.cat([torch.zeros(1, 2, 16), x], dim=1)
    with torch.no_grad():
        plain = body(inputs_embeds=x, attention_mask=torch.ones(1, 5, dtype=torch.long))[0]
        left = body(inputs_embeds=padded, attention_mask=torch.tensor([[0, 0, 1, 1, 1, 1, 1]]),
                    position_ids=torch.zeros(1, 7, dtype=torch.long))[0]
    torch.testing.assert_close(left[:, 2:], plain, atol=1e-5, rtol=1e-5)


def test_the_language_loss_is_the_weighted_next_token_loss_and_bad_settings_are_refused(tiny_lm):
    lm = copy.deepcopy(tiny_lm)
    torch.manual_seed(0)
    a = LanguageLoss(lm, tiny_lm.tokenizer, ["go left right go"] * 10, weight=1.0, tokens=4)()
    torch.manual_seed(0)
    b = LanguageLoss(lm, tiny_lm.tokenizer, ["go left right go"] * 10, weight=0.1, tokens=4)()
    assert torch.isfinite(a) and a.item() > 0 and b.item() == pytest.approx(0.1 * a.item(), rel=1e-5)
    with pytest.raises(ValueError, match="fewer than one window"):
        LanguageLoss(lm, tiny_lm.tokenizer, ["go"], tokens=8)
    with pytest.raises(ValueError, match="hidden_size"):
        graft_lm(make_dt(replace(CONFIG, hidden_size=32, n_head=1), 3, 1), lm)


def test_the_prose_corpus_is_english_paragraphs_in_a_fixed_order():
    corpus = prose_corpus()
    assert corpus == prose_corpus() and len(corpus) > 100
    assert sum(len(p.split()) for p in corpus) > 5000 and all(len(p.split()) >= 12 for p in corpus)


def test_lamo_on_the_real_small_lm_trains_lora_under_the_language_loss(smollm2_fp32):
    lm = copy.deepcopy(smollm2_fp32.model)
    hidden = lm.config.hidden_size
    model = graft_lm(make_dt(replace(CONFIG, hidden_size=hidden), 3, 1), lm)
    aux = LanguageLoss(lm, smollm2_fp32.tokenizer, weight=1.0, tokens=16)
    torch.manual_seed(0)
    nll = aux().item()
    assert 0.5 < nll < 8.0  # English prose: a trained LM's loss, far below log(vocab) ≈ 10.8
    before = {k: v.clone() for k, v in model.named_parameters() if "lora_B" in k}
    train_dt(replace(CONFIG, train_steps=2, hidden_size=hidden), episodes(), model=model, aux_loss=aux)
    after = dict(model.named_parameters())
    assert sum(not torch.equal(v, after[k]) for k, v in before.items()) > 0
