"""The real path: the openai backend talking to an OpenAI-compatible server that serves the real
default model must give the same scores and text as calling that model directly."""

from __future__ import annotations

import numpy as np
import pytest

from llmrl.lm.openai import OpenAILM
from llmrl.lm.serve import serve_in_thread

ACTIONS = ["turn left", "turn right", "go forward", "pick up", "drop", "toggle"]
CONTEXTS = [
    "Goal of the agent: go to the red ball\nObservation 0: You see a red ball 2 steps forward\nAction 0: ",
    # Contexts end at a word boundary, as prompts do: a candidate glued to a word ("istoggle")
    # tokenises differently when a server sees the joined text.
    "The capital of France is ",
]


@pytest.mark.parametrize("mode", ["echo", "prompt_logprobs"])
def test_openai_scores_match_direct_scores_on_gemma(gemma_fp32, mode):
    server, url = serve_in_thread(gemma_fp32)
    try:
        remote = OpenAILM(url, "gemma-3-270m", logprobs_mode=mode, timeout=120)
        got = remote.score(CONTEXTS, ACTIONS)
        want = gemma_fp32.score(CONTEXTS, ACTIONS)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g.logprob, w.logprob, atol=1e-3)
            np.testing.assert_array_equal(g.n_tokens, w.n_tokens)
        text = remote.generate(["1, 2, 3,"], max_new_tokens=6)[0].texts[0]
        assert text == gemma_fp32.generate(["1, 2, 3,"], max_new_tokens=6)[0].texts[0]
        remote.close()
    finally:
        server.stop()


def test_llmrl_serve_answers_scoring_generation_and_embeddings(smollm2_fp32):
    """`llmrl serve`, the command, in its own process: the OpenAI path a vLLM server takes."""
    import os
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, "-m", "llmrl.cli", "serve", "smollm2-135m-instruct", "--port", str(port),
                          "--dtype", "fp32", "--name", "small"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        line = p.stdout.readline()
        deadline = time.time() + 120
        while "serving" not in line:
            assert p.poll() is None and time.time() < deadline, line + p.stdout.read()
            line = p.stdout.readline()
        remote = OpenAILM(f"http://127.0.0.1:{port}/v1", "small", logprobs_mode="prompt_logprobs", timeout=120,
                          embedding_model="small")
        for got, want in zip(remote.score(CONTEXTS, ACTIONS), smollm2_fp32.score(CONTEXTS, ACTIONS)):
            np.testing.assert_allclose(got.logprob, want.logprob, atol=1e-3)
        assert remote.generate(["1, 2, 3,"], max_new_tokens=5) == smollm2_fp32.generate(["1, 2, 3,"], max_new_tokens=5)
        np.testing.assert_allclose(remote.embed(["a red ball"]), smollm2_fp32.embed(["a red ball"]), atol=1e-5)
    finally:
        p.terminate()
        p.wait(timeout=30)
