"""The persistent result cache: hits and misses, equality with uncached results, processes."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from llmrl.lm.base import CandidateScores
from llmrl.lm.cache import CachedLM, ResultCache, cache_dir, cache_key, default_cache_path

from fakes import CountingLM, EmbeddingLM

ACTIONS = ["turn left", "turn right", "go forward", "pick up", "drop", "toggle"]


def assert_same_scores(a: list[CandidateScores], b: list[CandidateScores]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.candidates == y.candidates
        np.testing.assert_array_equal(x.logprob, y.logprob)
        np.testing.assert_array_equal(x.mean_logprob, y.mean_logprob)
        np.testing.assert_array_equal(x.n_tokens, y.n_tokens)
        assert x.n_tokens.dtype == np.int64


def test_score_counts_hits_and_misses_and_sends_only_misses(tmp_path):
    inner = CountingLM()
    lm = CachedLM(inner, tmp_path / "c.sqlite")
    first = lm.score(["a", "b", "impossible"], ACTIONS)
    assert (lm.stats.cache_hits, lm.stats.cache_misses) == (0, 3)
    assert_same_scores(first, CountingLM().score(["a", "b", "impossible"], ACTIONS))
    assert first[2].logprob[0] == -np.inf  # survives the JSON round trip

    second = lm.score(["b", "c", "a", "c"], ACTIONS)
    assert inner.scored == ["a", "b", "impossible", "c"]  # only the miss, once
    assert (lm.stats.cache_hits, lm.stats.cache_misses) == (2, 5)
    assert_same_scores(second, CountingLM().score(["b", "c", "a", "c"], ACTIONS))
    assert lm.stats.score_calls == 2 and lm.stats.scored_contexts == 7


def test_score_keys_include_the_candidates_and_the_model(tmp_path):
    path = tmp_path / "c.sqlite"
    inner = CountingLM()
    lm = CachedLM(inner, path)
    lm.score(["a", "a"], [ACTIONS, ACTIONS[::-1]])
    assert inner.scored == ["a", "a"]
    other = CountingLM()
    CachedLM(other, path, model_key="counting-lm@step-100").score(["a"], ACTIONS)
    assert other.scored == ["a"]


def test_greedy_generation_is_cached_per_prompt(tmp_path):
    inner = CountingLM()
    lm = CachedLM(inner, tmp_path / "c.sqlite")
    a = lm.generate(["p", "q"], max_new_tokens=5, stop=["."])
    b = lm.generate(["q", "r"], max_new_tokens=5, temperature=0, stop=(".",))  # 0 == 0.0, tuple == list
    assert inner.generated == ["p", "q", "r"]
    assert a == CountingLM().generate(["p", "q"], max_new_tokens=5)
    assert b == CountingLM().generate(["q", "r"], max_new_tokens=5)
    lm.generate(["p"], max_new_tokens=6)  # another parameter, another key
    assert inner.generated[-1] == "p"
    assert (lm.stats.cache_hits, lm.stats.cache_misses) == (1, 4)


def test_seeded_sampling_is_cached_per_batch_and_keyed_by_seed(tmp_path):
    inner = CountingLM()
    lm = CachedLM(inner, tmp_path / "c.sqlite")
    a = lm.generate(["p", "q"], temperature=1.0, n=2, seed=3)
    assert lm.generate(["p", "q"], temperature=1.0, n=2, seed=3) == a
    assert len(inner.generated) == 2
    assert lm.generate(["p", "q"], temperature=1.0, n=2, seed=4) != a
    # Alone, "q" draws from the start of the seeded stream, not where it drew in the batch:
    # a per-prompt cache would have answered with its batch sample.
    assert lm.generate(["q"], temperature=1.0, n=2, seed=3) != a[1:]
    assert len(inner.generated) == 5


def test_unseeded_sampling_is_never_cached(tmp_path):
    inner = CountingLM()
    lm = CachedLM(inner, tmp_path / "c.sqlite")
    a = lm.generate(["p"], temperature=0.7)
    b = lm.generate(["p"], temperature=0.7)
    assert a != b and inner.generated == ["p", "p"]
    assert len(lm.cache) == 0
    assert (lm.stats.cache_hits, lm.stats.cache_misses) == (0, 0)


def test_the_cache_survives_reopening(tmp_path):
    path = tmp_path / "deep" / "folder" / "c.sqlite"
    lm = CachedLM(CountingLM(), path)
    first = lm.score(["a"], ACTIONS)
    greedy = lm.generate(["p"])
    lm.close()

    inner = CountingLM()
    again = CachedLM(inner, ResultCache(path))
    assert_same_scores(again.score(["a"], ACTIONS), first)
    assert again.generate(["p"]) == greedy
    assert inner.scored == [] and inner.generated == []
    assert again.stats.cache_hits == 2


def test_cache_dir_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMRL_CACHE_DIR", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x"
    assert default_cache_path() == tmp_path / "x" / "lm-cache.sqlite"
    assert ResultCache().path == tmp_path / "x" / "lm-cache.sqlite"
    monkeypatch.delenv("LLMRL_CACHE_DIR")
    assert cache_dir() == Path.home() / ".cache" / "llmrl"


def test_keys_are_canonical():
    assert cache_key("m", "score", ["a", ("b",)], {"x": 1, "y": 2}) == cache_key("m", "score", ["a", ["b"]], {"y": 2, "x": 1})
    assert cache_key("m", "score", "a", {}) != cache_key("m2", "score", "a", {})
    assert cache_key("m", "score", "a", {}) != cache_key("m", "generate", "a", {})


def test_a_file_that_is_not_sqlite_gets_a_clear_error(tmp_path):
    bad = tmp_path / "c.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(Exception, match=r"not a usable sqlite file|cannot open the LM cache"):
        ResultCache(bad)


def _hammer(path: str, worker: int, n_keys: int) -> None:
    """Write and read keys that overlap with the neighbouring workers', one transaction each."""
    cache = ResultCache(path)
    for i in range(worker * n_keys // 2, worker * n_keys // 2 + n_keys):
        key = f"k{i}"
        cache.put(key, {"i": i, "v": [i, -i / 3]})
        assert cache.get(key) == {"i": i, "v": [i, -i / 3]}
    batch = {f"b{i}": i for i in range(20)}  # the same batch from every worker
    cache.put_many(batch)
    assert cache.get_many(batch) == batch
    cache.close()


def test_concurrent_processes_share_one_file_without_errors(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    n_workers, n_keys = 4, 60
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(path, w, n_keys)) for w in range(n_workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * n_workers

    cache = ResultCache(path)
    n_distinct = (n_workers - 1) * n_keys // 2 + n_keys
    values = cache.get_many(f"k{i}" for i in range(n_distinct))
    assert values == {f"k{i}": {"i": i, "v": [i, -i / 3]} for i in range(n_distinct)}
    assert len(cache) == n_distinct + 20


def test_cache_identity_separates_servers_and_models():
    from llmrl.lm.openai import OpenAILM

    a = OpenAILM("http://127.0.0.1:1/v1", "m")
    b = OpenAILM("http://127.0.0.1:2/v1", "m")
    assert a.cache_identity != b.cache_identity
    assert CachedLM(a).model_key != CachedLM(b).model_key


def test_embeddings_are_cached_per_text_and_equal_fresh_ones(tmp_path):
    inner = EmbeddingLM()
    lm = CachedLM(inner, tmp_path / "c.sqlite")
    first = lm.embed(["chop tree", "drink water"])
    again = CachedLM(EmbeddingLM(), tmp_path / "c.sqlite").embed(["drink water", "chop tree", "eat cow"])
    np.testing.assert_allclose(again[:2], first[::-1], rtol=1e-6)
    np.testing.assert_allclose(again[2], inner.embed(["eat cow"])[0], rtol=1e-6)
    assert inner.embedded == ["chop tree", "drink water", "eat cow"]  # the last call is the check above
    assert lm.embed([]).shape[0] == 0


def test_embedding_cache_is_keyed_on_the_embedder(tmp_path):
    a = CachedLM(EmbeddingLM(), tmp_path / "c.sqlite", embed_key="embedder-a")
    b_inner = EmbeddingLM()
    b = CachedLM(b_inner, tmp_path / "c.sqlite", embed_key="embedder-b")
    a.embed(["chop tree"])
    b.embed(["chop tree"])
    assert b_inner.embedded == ["chop tree"]  # another embedder's vector is not reused
