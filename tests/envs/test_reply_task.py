"""The RLHF reply task: held-out missions and the gold judge's rules."""

from __future__ import annotations

import pytest

from llmrl.envs.reply_task import gold_reward, prompt, split_prompts


def test_held_out_missions_share_no_colour_object_pair_with_training():
    train, test = split_prompts(seed=1)
    pair = lambda p: tuple(p.split("the ", 1)[1].split(".")[0].split()[-2:])  # noqa: E731
    assert test and train and not {pair(p) for p in train} & {pair(p) for p in test}
    assert split_prompts(seed=1) == (train, test) and split_prompts(seed=2) != (train, test)


def test_the_gold_judge_rules():
    p = prompt("pick up", "red", "key")
    got = gold_reward([p] * 6, [" pick up the red key", " find the key", "", " key key key red",
                                " walk past one two three four five six seven eight red key", " go\nred key"])  # fmt: skip
    assert got.tolist() == [2.0, 1.0, -1.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="no mission"):
        gold_reward(["hello"], ["x"])
