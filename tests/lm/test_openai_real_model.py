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
