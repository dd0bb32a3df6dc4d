"""The OpenAI-compatible backend against llmrl's own server, serving a hand-set word-level model."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import numpy as np
import pytest

from llmrl.lm.base import CandidateScores, LanguageModel, LMError
from llmrl.lm.base import truncate_at_stop
from llmrl.lm.openai import OpenAILM
from llmrl.lm.serve import LMServer, serve_in_thread

from fakes import MisbehavingServer, ServeOptions, WordLM


CONTEXTS = ["Goal: go to the red ball.\nAction: ", "You see a wall.\nNext action:", "Mission x"]
ACTIONS = ["turn left", "turn right", "go forward", "pick up", "drop", "toggle"]


@pytest.fixture
def serve() -> Iterator:
    """``serve(**ServeOptions fields) -> (server, url)``; every server is stopped at test end."""
    servers: list[LMServer] = []

    def start(model: LanguageModel | None = None, **options):
        server, url = serve_in_thread(model or WordLM(), server_class=MisbehavingServer, options=ServeOptions(**options))
        servers.append(server)
        return server, url

    yield start
    for s in servers:
        s.stop()


def client(url: str, **kw) -> OpenAILM:
    kw.setdefault("backoff", 0.01)
    return OpenAILM(url, "word-lm", **kw)


def assert_exact_scores(results: list[CandidateScores], contexts, candidate_lists, lm: WordLM | None = None) -> None:
    lm = lm or WordLM()
    assert len(results) == len(contexts)
    for r, ctx, cands in zip(results, contexts, candidate_lists):
        assert r.candidates == tuple(cands)
        expected = [lm.expected(ctx, c) for c in cands]
        assert r.logprob.tolist() == [e[0] for e in expected]
        assert r.n_tokens.tolist() == [e[1] for e in expected]
        np.testing.assert_array_equal(r.mean_logprob, r.logprob / r.n_tokens)


@pytest.mark.parametrize("mode", ["echo", "prompt_logprobs", "auto"])
def test_scores_equal_the_served_models_exact_logprobs(serve, mode):
    server, url = serve()
    lm = client(url, logprobs_mode=mode)
    results = lm.score(CONTEXTS, ACTIONS)
    assert_exact_scores(results, CONTEXTS, [ACTIONS] * len(CONTEXTS))
    # The trailing space of "Action: " moved onto the candidate: " turn left" is two tokens.
    assert results[0].n_tokens[0] == 2
    expected_kind = "prompt_logprobs" if mode == "prompt_logprobs" else "echo"
    assert server.requests[expected_kind] == len(CONTEXTS) * len(ACTIONS)
    assert lm.stats.score_calls == 1 and lm.stats.scored_contexts == len(CONTEXTS)
    assert lm.stats.prompt_tokens > 0
    lm.close()


def test_per_context_candidate_lists_and_duplicate_pairs_are_sent_once(serve):
    server, url = serve()
    lm = client(url, logprobs_mode="echo")
    contexts = ["a b", "a b", "c d e"]
    lists = [["f", "g h"], ["f", "g h"], ["i"]]
    assert_exact_scores(lm.score(contexts, lists), contexts, lists)
    assert server.requests["echo"] == 3


def test_auto_falls_back_to_prompt_logprobs_and_remembers_it(serve):
    server, url = serve(no_echo=True)
    lm = client(url)
    assert_exact_scores(lm.score(CONTEXTS, ACTIONS), CONTEXTS, [ACTIONS] * 3)
    assert server.requests["echo"] == 2  # the probe, refused with max_tokens 0 and 1
    lm.score(CONTEXTS[:1], ACTIONS)
    assert server.requests["echo"] == 2
    assert server.requests["prompt_logprobs"] == len(CONTEXTS) * len(ACTIONS) + len(ACTIONS)


def test_echo_retries_with_one_token_when_the_server_rejects_max_tokens_zero(serve):
    server, url = serve(min_max_tokens=1)
    lm = client(url, logprobs_mode="echo")
    assert_exact_scores(lm.score(CONTEXTS, ACTIONS), CONTEXTS, [ACTIONS] * 3)
    assert server.requests["echo"] == len(CONTEXTS) * len(ACTIONS) + 1  # one refused probe


def test_prompt_logprobs_without_decoded_tokens_finds_the_boundary_with_tokenize(serve):
    server, url = serve(decoded_tokens=False)
    lm = client(url, logprobs_mode="prompt_logprobs")
    assert_exact_scores(lm.score(CONTEXTS, ACTIONS), CONTEXTS, [ACTIONS] * 3)
    assert server.requests["tokenize"] == len(CONTEXTS)  # once per context, then cached


@pytest.mark.parametrize("mode", ["echo", "prompt_logprobs"])
def test_a_bos_token_shown_as_text_does_not_move_the_boundary(serve, mode):
    model = WordLM(bos=True)
    server, url = serve(model, bos_text="<bos>")
    lm = client(url, logprobs_mode=mode)
    assert_exact_scores(lm.score(CONTEXTS, ACTIONS), CONTEXTS, [ACTIONS] * 3, model)
    assert server.requests["tokenize"] == 0
    # With a BOS, even a candidate that is the whole prompt has a log-prob.
    assert_exact_scores(lm.score([""], ["go left"]), [""], [["go left"]], model)


def test_echoed_raw_vocabulary_pieces_fall_back_to_tokenize(serve):
    model = WordLM(bos=True)
    server, url = serve(model, raw_token_text=True, bos_text="<s>")
    lm = client(url, logprobs_mode="echo")
    assert_exact_scores(lm.score(CONTEXTS, ACTIONS), CONTEXTS, [ACTIONS] * 3, model)
    # Each context once, and each prompt once (echo gives no token ids to compare with).
    assert server.requests["tokenize"] == len(CONTEXTS) + len(CONTEXTS) * len(ACTIONS)


def test_generation_round_trips_with_stop_strings_n_and_seed(serve):
    _, url = serve()
    lm = client(url)
    model = WordLM()
    prompts = ["Go:", "Then you"]

    greedy = lm.generate(prompts, max_new_tokens=6, stop=["."], n=2)
    for g, p in zip(greedy, prompts):
        full = model.generate([p], max_new_tokens=6)[0].texts[0]
        assert "." in full  # the server did not cut: the client did
        assert g.prompt == p and g.texts == (truncate_at_stop(full, ["."]),) * 2

    a = lm.generate(prompts, max_new_tokens=8, temperature=1.0, n=3, seed=7)
    b = lm.generate(prompts, max_new_tokens=8, temperature=1.0, n=3, seed=7)
    c = lm.generate(prompts, max_new_tokens=8, temperature=1.0, n=3, seed=8)
    assert a == b and a != c
    assert all(len(g.texts) == 3 and len(set(g.texts)) > 1 for g in a)
    assert lm.stats.generate_calls == 4 and lm.stats.generated_prompts == 8


def test_embeddings_come_from_the_server_when_an_embedding_model_is_named(serve):
    _, url = serve()
    lm = client(url, embedding_model="word-lm")
    texts = ["go to the door", "pick up the key", "x"]
    got = lm.embed(texts)
    want = WordLM().embed(texts)
    np.testing.assert_allclose(got, want / np.linalg.norm(want, axis=1, keepdims=True), rtol=1e-6)


def test_retries_succeed_after_two_503s(serve):
    server, url = serve(fail_first=2)
    lm = client(url, max_retries=2)
    assert_exact_scores(lm.score(CONTEXTS[:1], ["go"]), CONTEXTS[:1], [["go"]])
    assert server.requests["failed"] == 2
    assert lm.stats.extra["http_retries"] == 2


def test_503s_beyond_the_retry_budget_name_the_status(serve):
    server, url = serve(fail_first=10)
    lm = client(url, max_retries=1)
    with pytest.raises(LMError, match=r"HTTP 503.*starting up.*gave up after 2 attempts"):
        lm.generate(["x"], max_new_tokens=1)
    assert server.requests["post"] == 2


def test_client_errors_are_not_retried_and_carry_the_servers_message(serve):
    server, url = serve()
    lm = OpenAILM(url, "no-such-model", backoff=0.01)
    with pytest.raises(LMError, match=r"HTTP 404.*no-such-model.*does not exist.*GET /v1/models"):
        lm.generate(["x"], max_new_tokens=1)
    assert server.requests["post"] == 1


def test_server_down_says_start_the_server():
    with socket.socket() as s:  # a free port with nothing listening on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lm = client(f"http://127.0.0.1:{port}", max_retries=1)
    with pytest.raises(LMError, match=rf"could not connect to http://127.0.0.1:{port}/v1/completions .*start the server or fix base_url"):
        lm.score(["a b"], ["c"])
    assert lm.stats.extra["http_requests"] == 2


def test_server_without_logprobs_says_which_backends_work(serve):
    _, url = serve(no_logprobs=True)
    with pytest.raises(LMError, match=r"returned no prompt log-probs.*echo\+logprobs.*prompt_logprobs.*hf backend"):
        client(url).score(CONTEXTS, ACTIONS)


def test_server_that_cannot_score_at_all_says_which_backends_work(serve):
    _, url = serve(no_echo=True, no_prompt_logprobs=True)
    with pytest.raises(LMError, match=r"returned no prompt log-probs \(echo: HTTP 400 echo is not supported"):
        client(url).score(CONTEXTS, ACTIONS)


def test_malformed_json_is_reported_with_the_start_of_the_body(serve):
    _, url = serve(malformed=True)
    with pytest.raises(LMError, match=r"malformed response from .*/v1/completions: '<html><body>502 Bad Gateway"):
        client(url).score(CONTEXTS, ACTIONS)


def test_a_slow_server_times_out_with_advice(serve):
    _, url = serve(delay_s=0.3)
    with pytest.raises(LMError, match=r"no complete answer .* within 0.05 s: .*raise timeout="):
        client(url, timeout=0.05, max_retries=0).generate(["x"], max_new_tokens=1)


def test_empty_context_cannot_be_scored_without_bos(serve):
    _, url = serve()
    with pytest.raises(LMError, match="first token of a prompt.*non-empty context"):
        client(url, logprobs_mode="echo").score([""], ["go"])


def test_bad_arguments_name_the_fix(serve):
    _, url = serve()
    with pytest.raises(ValueError, match="unknown logprobs_mode 'logits'"):
        client(url, logprobs_mode="logits")
    with pytest.raises(ValueError, match="candidates is empty"):
        client(url).score(["a"], [])
    with pytest.raises(ValueError, match="empty candidate list"):
        client(url).score(["a", "b"], [["c"], []])
    with pytest.raises(ValueError, match="not an http"):
        OpenAILM("localhost:8000", "m")


def test_the_server_lists_its_model_and_answers_without_token_logprobs(serve):
    import json
    import urllib.request

    _, url = serve()
    with urllib.request.urlopen(url + "/v1/models", timeout=5) as r:
        assert json.load(r)["data"][0]["id"] == "word-lm"

    class NoScores(WordLM):
        token_logprobs = None  # type: ignore[assignment]

    with LMServer(NoScores()) as server:
        lm = client(server.url)
        assert lm.generate(["a"], max_new_tokens=2)[0].texts[0].strip()
        with pytest.raises(LMError, match="has no token_logprobs method"):
            lm.score(["a b"], ["c"])
