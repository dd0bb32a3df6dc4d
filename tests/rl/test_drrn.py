"""DRRN: Q over changing candidate sets of text actions learns a two-step task."""

from __future__ import annotations

import numpy as np

from llmrl.rl.drrn import DRRN, DRRNConfig, TextEmbeddings

VOCAB = ["start", "middle", "end", "open box", "take key", "dance", "sing", "goal", "look"]


def one_hot(texts):
    out = np.zeros((len(texts), len(VOCAB)), np.float32)
    for i, t in enumerate(texts):
        out[i, VOCAB.index(t)] = 1.0
    return out


def test_drrn_learns_which_command_pays_in_each_state():
    emb = TextEmbeddings(one_hot)
    agent = DRRN(DRRNConfig(learning_rate=3e-3, batch_size=16, learning_starts=16, target_update=20), emb,
                 dim=len(VOCAB), state_parts=2, seed=0)
    moves = {"start": (["open box", "dance"], "open box", "middle"), "middle": (["take key", "sing"], "take key", "end")}
    for _ in range(150):
        state = "start"
        while state != "end":
            cands, good, nxt = moves[state]
            a = cands[agent.act((state, "goal"), cands)]
            reward, new = (1.0 if nxt == "end" else 0.0, nxt) if a == good else (0.0, state)
            agent.observe((state, "goal"), a, reward, (new, "goal"), moves.get(new, ([],))[0], new == "end")
            agent.update()
            state = new
    for state, (cands, good, _) in moves.items():
        assert cands[agent.act((state, "goal"), cands, greedy=True)] == good
    q = agent.q_values(("start", "goal"), ["open box", "dance"])
    assert 0.5 < q[0] < 1.2  # γ · 1 = 0.9 discounted from the second step


def test_each_text_is_embedded_once():
    calls = []
    emb = TextEmbeddings(lambda texts: calls.append(list(texts)) or one_hot(texts))
    assert emb.ids(["start", "end", "start"]) == [0, 1, 0]
    emb.ids(["end", "goal"])
    assert calls == [["start", "end"], ["goal"]]
