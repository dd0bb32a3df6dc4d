"""The transformers backend on the real default model (gemma-3-270m from its PyPI package)."""

from __future__ import annotations

import numpy as np
import pytest

from llmrl.lm import LMError, load_model
from llmrl.lm.base import truncate_at_stop

ACTIONS = ["turn left", "turn right", "go forward", "pick up", "drop", "toggle"]
PROMPT = (
    "Possible action of the agent: turn left, turn right, go forward, pick up, drop, toggle\n"
    "Goal of the agent: go to the red ball\n"
    "Observation 0: You see a wall 2 steps forward, You see a red ball 1 step left and 2 steps forward\n"
    "Action 0: "
)


def test_shared_prefix_scores_equal_naive_scores(gemma_fp32):
    contexts = [PROMPT, "The capital of France is", "Observation: a door.\nAction:"]
    candidates = [ACTIONS, [" Paris", " London", " a city with a very long name indeed"], ["open", " toggle", "x"]]
    fast = gemma_fp32.score(contexts, candidates)
    naive = gemma_fp32.score_naive(contexts, candidates)
    for f, n in zip(fast, naive):
        assert f.candidates == n.candidates
        np.testing.assert_allclose(f.logprob, n.logprob, atol=1e-3)
        np.testing.assert_array_equal(f.n_tokens, n.n_tokens)
        np.testing.assert_allclose(f.mean_logprob, f.logprob / f.n_tokens, rtol=1e-6)


def test_scores_do_not_depend_on_batching(gemma_fp32):
    contexts = [PROMPT, "Goal: pick up the key\nAction: ", "Hello"]
    together = gemma_fp32.score(contexts, ACTIONS)
    alone = [gemma_fp32.score([c], ACTIONS)[0] for c in contexts]
    for t, a in zip(together, alone):
        np.testing.assert_allclose(t.logprob, a.logprob, atol=1e-3)


def test_chunked_scoring_matches_one_batch(gemma_fp32):
    contexts = [f"Observation {i}: You see a wall {i} steps forward\nAction: " for i in range(5)]
    one = gemma_fp32.score(contexts, ACTIONS)
    old = (gemma_fp32.context_batch_size, gemma_fp32.pair_batch_size)
    try:
        gemma_fp32.context_batch_size, gemma_fp32.pair_batch_size = 2, 7
        chunked = gemma_fp32.score(contexts, ACTIONS)
    finally:
        gemma_fp32.context_batch_size, gemma_fp32.pair_batch_size = old
    for a, b in zip(one, chunked):
        np.testing.assert_allclose(a.logprob, b.logprob, atol=1e-3)


def test_scores_are_log_probabilities(gemma_fp32):
    # Every single-token continuation: their probabilities must sum to 1 over the vocabulary, so
    # a handful of them sums to at most 1, and each log-prob is negative.
    s = gemma_fp32.score(["The capital of France is"], [[" Paris", " London", " the", " a"]])[0]
    assert (s.logprob < 0).all()
    assert np.exp(s.logprob).sum() <= 1.0
    assert s.candidates[int(np.argmax(s.logprob))] in (" Paris", " the", " a")


def test_policy_softmax_is_a_distribution(gemma_fp32):
    s = gemma_fp32.score([PROMPT], ACTIONS)[0]
    for normalise in (False, True):
        p = s.probs(normalise)
        assert p.shape == (6,) and np.isclose(p.sum(), 1.0) and (p > 0).all()


def test_seeded_generation_is_deterministic(gemma_fp32):
    kw = dict(max_new_tokens=12, temperature=1.0, top_p=0.95, n=2, seed=7)
    a = gemma_fp32.generate(["Once upon a time", "The robot"], **kw)
    b = gemma_fp32.generate(["Once upon a time", "The robot"], **kw)
    assert a == b
    assert all(len(g.texts) == 2 for g in a)
    c = gemma_fp32.generate(["Once upon a time", "The robot"], **{**kw, "seed": 8})
    assert c != a


def test_n_samples_share_their_prompt_and_equal_generates_own_expansion(gemma_fp32):
    # HFLM reads each prompt once and copies its KV cache n times; transformers' own
    # num_return_sequences reads it n times. Left-padded rows must get the same positions.
    import torch

    lm, prompts = gemma_fp32, ["The capital of France is", "Once upon a time in a small village by the sea, an"]
    ours = [t for g in lm.generate(prompts, max_new_tokens=6, temperature=1.0, n=3, seed=1) for t in g.texts]
    rows = [lm._bos + lm.encode(p) for p in prompts]
    width = max(map(len, rows))
    ids = torch.tensor([[lm.tokenizer.pad_token_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    torch.manual_seed(1)
    with torch.inference_mode():
        out = lm.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=True, temperature=1.0,
                                top_k=0, top_p=1.0, num_return_sequences=3, pad_token_id=lm.tokenizer.pad_token_id)
    assert ours == lm.tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)


def test_greedy_generation_honours_stop_strings(gemma_fp32):
    g = gemma_fp32.generate(["1, 2, 3, 4,"], max_new_tokens=12, stop=[" 7"])[0]
    assert " 7" not in g.texts[0]
    assert g.texts[0].strip().startswith("5")


def test_hidden_state_of_last_context_token_is_exposed(gemma_fp32):
    st = gemma_fp32.score_tensors([PROMPT, "Hi"], [ACTIONS, ["a", "b"]])
    assert st.context_hidden.shape == (2, gemma_fp32.hidden_size)
    assert st.logprob.shape == (8,)
    assert st.context_index.tolist() == [0] * 6 + [1] * 2


def test_truncate_at_stop_cuts_at_first_stop():
    assert truncate_at_stop("a\n\nb.c", ["\n\n", "."]) == "a"
    assert truncate_at_stop("abc", []) == "abc"


@pytest.mark.parametrize(
    "contexts,candidates,match",
    [
        (["a"], [], "candidates is empty"),
        (["a", "b"], [["x"]], "one list per context"),
        (["a"], [[]], "empty candidate list"),
        ("a", ["x"], "wrap it as"),
        (["a"], [""], "non-empty strings"),
    ],
)
def test_bad_score_input_names_the_fix(gemma_fp32, contexts, candidates, match):
    with pytest.raises(ValueError, match=match):
        gemma_fp32.score(contexts, candidates)


def test_unknown_model_name_suggests_a_registered_one():
    with pytest.raises(LMError, match="Did you mean 'gemma-3-270m'"):
        load_model("gemma-3-270")


def test_hub_id_is_refused_without_download():
    with pytest.raises(LMError, match="never downloads"):
        load_model("google/gemma-3-270m")


def test_missing_gguf_file_is_named(tmp_path):
    with pytest.raises(LMError, match="GGUF file not found"):
        load_model(str(tmp_path / "nope.gguf"))


def test_folder_without_config_is_refused(tmp_path):
    from llmrl.lm.hf import HFLM

    with pytest.raises(LMError, match="no config.json"):
        HFLM(tmp_path)


def test_bad_openai_name_shows_the_format():
    with pytest.raises(LMError, match="openai:<base_url>#<model>"):
        load_model("openai:http://127.0.0.1:1/v1")


@pytest.mark.slow
def test_smollm2_loads_from_its_wheel_and_scores():
    lm = load_model("smollm2-135m-instruct", dtype="fp32")
    s = lm.score(["The capital of France is"], [" Paris", " London"])[0]
    assert s.logprob[0] > s.logprob[1]
    fast, naive = lm.score([PROMPT], ACTIONS)[0], lm.score_naive([PROMPT], ACTIONS)[0]
    np.testing.assert_allclose(fast.logprob, naive.logprob, atol=1e-3)


def test_reinitialise_keeps_the_architecture_and_embeddings_but_not_the_knowledge(smollm2_fp32):
    import copy

    import torch

    pretrained = smollm2_fp32
    a, b = copy.deepcopy(pretrained), copy.deepcopy(pretrained)
    a.reinitialise(seed=1)
    b.reinitialise(seed=1)
    layer = lambda lm: lm.model.model.layers[3].mlp.up_proj.weight  # noqa: E731
    assert not torch.equal(layer(a), layer(pretrained)) and torch.equal(layer(a), layer(b))  # seeded
    assert torch.equal(a.model.get_input_embeddings().weight, pretrained.model.get_input_embeddings().weight)
    assert a.cache_identity != pretrained.cache_identity and a.cache_identity.endswith("random:1:pretrained-embeddings")
    knows = pretrained.score(["The capital of France is"], [" Paris", " banana"])[0].logprob
    forgot = a.score(["The capital of France is"], [" Paris", " banana"])[0].logprob
    assert knows[0] - knows[1] > 5 and abs(forgot[0] - forgot[1]) < 2


def test_mean_hidden_is_a_batch_independent_unit_sentence_vector(smollm2_fp32):
    texts = ["Push the red ball behind the blue ball.", "Move the red ball behind the blue ball.",
             "The cyan ball is left of the green ball, and that is how it should stay."]
    together = smollm2_fp32.mean_hidden(texts)
    alone = np.concatenate([smollm2_fp32.mean_hidden([t]) for t in texts])
    assert together.shape == (3, smollm2_fp32.hidden_size)
    np.testing.assert_allclose(together, alone, atol=1e-4)  # padding does not leak into the mean
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert together[0] @ together[1] > together[0] @ together[2]


def test_embeddings_are_normalised_and_semantic():
    from llmrl.lm.embed import default_embedder

    e = default_embedder().embed(["chop a tree", "cut down a tree", "drink water"])
    assert e.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-4)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.3


def test_cache_identity_names_weights_and_dtype(gemma_fp32):
    ident = gemma_fp32.cache_identity
    assert ident.startswith("hf:") and ident.endswith(":float32") and "model.safetensors" in ident


def test_a_single_stop_string_is_not_split_into_characters(gemma_fp32):
    g = gemma_fp32.generate(["1, 2, 3, 4,"], max_new_tokens=12, stop=" 7")[0]
    assert g.texts[0].strip().startswith("5") and " 7" not in g.texts[0]


def test_long_contexts_past_the_sliding_window_score_like_naive(gemma_fp32):
    # gemma-3 attends locally (512 tokens) in 5 of 6 layers: a ~700-token context batched with a
    # short one must still match the naive scorer.
    long = "Observation: You see a wall 2 steps forward, You see a red ball 1 step left. " * 40 + "Action: "
    contexts = [long, "Goal: go to the key\nAction: "]
    fast = gemma_fp32.score(contexts, ACTIONS[:2])
    naive = gemma_fp32.score_naive(contexts, ACTIONS[:2])
    assert len(gemma_fp32.encode(long)) > 600
    for f, n in zip(fast, naive):
        np.testing.assert_allclose(f.logprob, n.logprob, atol=1e-3)
