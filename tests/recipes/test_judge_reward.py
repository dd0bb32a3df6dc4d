"""Judge-Reward end to end at a tiny scale, with a judge that misbehaves: no yes/no mass, a failing
generator, a failing scorer. The run must go on and count what it could not judge."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmrl.envs import ultimatum as U
from llmrl.lm.base import CandidateScores, Generation, LanguageModel
from llmrl.recipes import judge_reward as jr
from llmrl.runs import read_json_lines, read_rows


class UnrulyJudge(LanguageModel):
    """Answers like a sensible judge on some prompts, puts no mass on yes/no on others, cannot
    generate at all, and crashes on matrix prompts."""

    name = "unruly"

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def score(self, contexts, candidates):
        self.calls += 1
        out = []
        for c in contexts:
            if "two-player game" in c:
                raise RuntimeError("malformed answer")
            last = c.rsplit("Outcome:", 1)[-1]
            p2 = float(last.split("$")[2].split(" ")[0])
            if p2 > 8:  # nothing sensible to say: almost no mass on either answer
                lp = [-30.0, -31.0]
            else:
                lp = [np.log(0.9), np.log(0.1)] if p2 < 3 else [np.log(0.1), np.log(0.9)]
            out.append(CandidateScores.from_sums(candidates, lp, [1, 1]))
        return out

    def generate(self, prompts, **kwargs):
        raise RuntimeError("the server returned garbage")


def tiny(**kw):
    base = dict(objectives=("percentage-0.3",), labellers=("lm-10", "lm-10-cal", "lm-1", "lm-0", "sl-10", "sl-1", "true"),
                matrix_games=("prisoners",), matrix_objectives=("welfare",), seeds=1, n_test=12, dqn_steps=100,
                matrix_dqn_steps=60, workers=1)
    return jr.config_from("cpu", **{**base, **kw})


@pytest.fixture
def unruly(monkeypatch):
    lm = UnrulyJudge()
    monkeypatch.setattr(jr, "_lm", lambda config: lm)
    return lm


def test_a_misbehaving_judge_never_stops_the_run_and_is_counted(unruly, tmp_path):
    result = jr.run(tiny(), tmp_path / "run", progress=False)
    records = read_json_lines(tmp_path / "run" / "labels.jsonl")
    assert len(records) == 7 + 4
    by = {(r["labeller"], r["game"], r["seed"]): r for r in records}
    lm10 = by[("lm-10", "ultimatum", 0)]
    offers = U.make_offers("percentage-0.3", 0, 10, 12)["test"]
    silent = offers[:, 1] > 8
    assert lm10["abstained"] == int(silent.sum()) and all(p is None for p, s in zip(lm10["p_yes"], silent) if s)
    # An abstention labels the offer "accept"; a confident "yes" labels it "reject".
    assert all(lab == (U.REJECT if p is not None and p >= 0.5 else U.ACCEPT) for lab, p in zip(lm10["labels"], lm10["p_yes"]))
    cal = by[("lm-10-cal", "ultimatum", 0)]
    assert 0.1 < cal["threshold"] < 0.9 and cal["labels"] == lm10["labels"]  # learnt from the labelled offers alone
    assert by[("lm-1", "ultimatum", 0)]["abstained"] == 12  # it could not think, so it abstained on all
    assert by[("lm", "prisoners", 0)]["abstained"] == 4  # the scorer crashed: abstained, not raised
    assert by[("true", "prisoners", 0)]["label_accuracy"] == 1.0
    agents = read_rows(tmp_path / "run" / "agents.csv", "seed")
    assert len(agents) == len(records)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["labellers"]["ultimatum"]["true"]["label_accuracy"]["mean"] == 1.0
    assert result.metrics["ultimatum/sl-10/label_accuracy"] >= 0.75  # the supervised model finds the threshold
    # Resuming a finished run asks the judge nothing new and trains nothing new.
    calls = unruly.calls
    jr.run(tiny(), tmp_path / "run", resume=True, progress=False)
    assert unruly.calls == calls and len(read_rows(tmp_path / "run" / "agents.csv", "seed")) == len(records)


def test_the_prompts_follow_the_paper():
    offers = U.make_offers("payoff-100", 0)
    ten = jr.ultimatum_judge("payoff-100", "lm-10", offers["train"], 48, 0.5)
    assert len(ten.examples) == 10 and ten.objective == U.OBJECTIVES["payoff-100"].objective
    one = jr.ultimatum_judge("payoff-100", "lm-1", offers["train"], 48, 0.5)
    assert one.examples[0][:2] == (U.outcome_text(700.0, 300.0), False) and one.reasoning_tokens == 48
    assert jr.ultimatum_judge("payoff-100", "lm-blank", offers["train"], 48, 0.5).objective == U.BLANK
    with pytest.raises(ValueError, match="labellers"):
        jr.config_from("cpu", labellers=("gpt-3",))
