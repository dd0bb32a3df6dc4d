"""`llmrl plot`: run folders in, learning curves and a self-contained HTML report out."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from llmrl.evaluation import Episode, EvalResult, write_results
from llmrl.report import RunFormatError, load_run, metric_curve, plot_command, rolling_mean, series
from llmrl.report.plot import BAND_MINMAX, BAND_T, aggregate, seed_band, t975

ENV = "BabyAI-Text-GoToLocal-v0"
TEST_ENV = "BabyAI-Text-MixedTestLocal-v0"
GLAM = "glam-lora <gemma-3-270m> & co"  # markup in a label must come out escaped
HEADER = ("env_steps,updates,wall_s,episodes,success_rate,mean_return,mean_length,policy_loss,value_loss,"
          "entropy,approx_kl,clip_fraction,steps_per_s")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(folder, label, seed, success, episodes, env_id=ENV, recipe="glam", command=None):
    """A run folder as the trainers write it; ``None`` in ``success`` is an empty cell."""
    folder.mkdir(parents=True)
    config = {"recipe": recipe, "label": label, "env_id": env_id, "seed": seed,
              "total_env_steps": 100 * len(success), "lr": 1e-4}
    if command:
        config["command"] = command
    (folder / "config.json").write_text(json.dumps(config))
    rows = [HEADER]
    for i, (s, e) in enumerate(zip(success, episodes)):
        cell = "" if s is None else str(s)
        rows.append(f"{100 * (i + 1)},{i + 1},{i * 2.0},{e},{cell},{cell},20,{0.5 - 0.01 * i},"
                    f"{1.0 / (i + 1)},1.9,0.01,0.1,50")
    (folder / "progress.csv").write_text("\n".join(rows) + "\n")
    return folder


def eval_result(agent, env_id, successes, n):
    episodes = [Episode(seed=k, success=k < successes, episode_return=0.9 if k < successes else 0.0,
                        length=10, mission="go to the red ball") for k in range(n)]
    return EvalResult(agent, env_id, episodes, wall_seconds=1.0)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Two seeds of GLAM, one of symbolic PPO, evaluations, and references from `llmrl eval`."""
    root = tmp_path_factory.mktemp("plot")
    runs = root / "runs"
    success = [None, 0.0, 0.25, None, 0.5, 0.5, 0.75, 1.0]
    episodes = [0, 4, 8, 8, 12, 16, 20, 24]
    s0 = write_run(runs / "glam-s0", GLAM, 0, success, episodes,
                   command=["llmrl", "train", "glam", "--label", GLAM, "--seed", "0"])
    s1 = write_run(runs / "glam-s1", GLAM, 1, [None, 0.25, 0.25, 0.5, None, 0.75, 1.0, 1.0], episodes)
    write_run(runs / "ppo-s0", "symbolic-ppo", 0, [0.0, None, 0.0, 0.1, 0.2, 0.2, 0.3, 0.3],
              [10, 10, 20, 30, 40, 50, 60, 70], recipe="symbolic-ppo")
    write_results([eval_result("glam", ENV, 8, 10), eval_result("glam", TEST_ENV, 5, 10)], s0 / "eval")
    write_results([eval_result("glam", ENV, 9, 10)], s1 / "eval")
    refs = write_results([eval_result("random", ENV, 3, 10), eval_result("bot", ENV, 10, 10),
                          eval_result("random", "BabyAI-Text-PickupLocal-v0", 1, 10)], root / "zero-shot")
    out = root / "report"
    path = plot_command([str(runs)], str(out), [str(refs / "results.json")], title="GLAM <vs> PPO")
    return out, path.read_text()


def test_report_writes_valid_pngs_and_a_self_contained_html(report):
    out, page = report
    for name in ("plot.png", "losses.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width > 300 and height > 200
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 2 and all(base64.b64decode(i)[:8] == PNG_MAGIC for i in images)
    assert "http://" not in page and "https://" not in page


def test_report_names_each_series_with_its_seed_count_escaped(report):
    _, page = report
    escaped = "glam-lora &lt;gemma-3-270m&gt; &amp; co"
    assert escaped in page and "<gemma-3-270m>" not in page
    assert "GLAM &lt;vs&gt; PPO" in page and "<vs>" not in page
    assert f"{escaped} · {ENV} (2 seeds)" in page
    assert f"symbolic-ppo · {ENV} (1 seed)" in page
    # The recorded command line is shown (escaped, shell-quoted) and each config is collapsible.
    assert "llmrl train glam --label &#x27;glam-lora &lt;gemma-3-270m&gt; &amp; co&#x27; --seed 0" in page
    assert page.count("<details><summary>config.json</summary>") == 3


def test_report_tables_give_eval_success_with_intervals(report):
    _, page = report
    # Two seeds on the training env: mean of 0.8 and 0.9, min-max across seeds.
    row = re.search(rf"<tr><td>{re.escape('glam-lora &lt;gemma-3-270m&gt; &amp; co')}</td><td>{ENV}</td>"
                    rf"<td>{ENV}</td>(.*?)</tr>", page).group(1)
    assert "<td>2 of 2</td><td>0.850</td><td>[0.800, 0.900]</td>" in row and BAND_MINMAX in row
    # One seed on the held-out env: its Wilson interval over episodes.
    row = re.search(rf"<td>{TEST_ENV}</td>(.*?)</tr>", page).group(1)
    assert "<td>1 of 2</td><td>0.500</td><td>[0.237, 0.763]</td><td>Wilson 95% over episodes</td>" in row
    # References from `llmrl eval` are listed with their own interval.
    assert "<td>bot</td><td>" + ENV + "</td><td>10</td><td>1.000</td>" in page
    assert "<td>random</td><td>" + ENV + "</td><td>10</td><td>0.300</td>" in page


def test_training_table_reports_last_window_success(report):
    _, page = report
    # Default window 100 episodes > the 24 a GLAM seed ran: the whole run, episode-weighted.
    # seed 0: 4 episodes each at 0, .25, .5, .5, .75, 1 -> 0.5. Seed 1 below: the 0.5 row finished no
    # episode (episodes did not grow) and the empty cell carries none, so both weigh 0.
    s1 = (4 * 0.25 + 4 * 0.25 + 0 * 0.5 + 4 * 0.75 + 4 * 1.0 + 4 * 1.0) / 20
    assert f"seed 0: 0.500; seed 1: {s1:.3f}" in page


def test_folder_without_config_is_refused_with_what_to_pass(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunFormatError, match="no config.json.*config.json and progress.csv"):
        load_run(tmp_path / "empty")
    with pytest.raises(RunFormatError, match="config.json"):
        plot_command([str(tmp_path / "empty")], str(tmp_path / "out"), [], None)


def test_progress_without_success_column_is_refused_naming_the_file(tmp_path):
    run = write_run(tmp_path / "r", "x", 0, [0.5], [1])
    (run / "progress.csv").write_text("env_steps,episodes\n100,1\n")
    with pytest.raises(RunFormatError, match=r"progress\.csv has no column success_rate"):
        load_run(run)


def test_rolling_mean_weights_rows_by_episodes_and_skips_empty_cells():
    v = np.array([1.0, 0.0])
    assert rolling_mean(v, [1, 3], 4)[-1] == pytest.approx(0.25)
    assert rolling_mean(v, [1, 3], 3)[-1] == 0.0  # the last update alone fills the window
    assert rolling_mean(v, [1, 3], 3.5)[-1] == pytest.approx(0.25)  # whole updates: reach back one more
    out = rolling_mean(np.array([np.nan, 1.0, np.nan, 0.0]), [0, 1, 5, 1], 2)
    assert np.isnan(out[0]) and out[1:].tolist() == [1.0, 1.0, 0.5]


def test_mean_curve_over_seeds_matches_hand_computation(tmp_path):
    episodes = [0, 2, 4, 6]
    a = load_run(write_run(tmp_path / "a", "L", 0, [None, 0.5, 1.0, 0.5], episodes))
    b = load_run(write_run(tmp_path / "b", "L", 1, [None, 0.0, 0.5, None], [0, 2, 4, 4]))
    x, y = metric_curve(b, window=1)
    assert x.tolist() == [200, 300, 400] and y.tolist() == [0.0, 0.5, 0.5]  # the empty cell repeats 0.5
    (s,) = series([a, b], window=1, n_points=5)
    assert s.n_seeds == 2 and s.band == BAND_MINMAX and "(2 seeds, min–max)" in s.legend()
    assert s.steps.tolist() == [200, 250, 300, 350, 400]
    # At 250 steps: seed a interpolates 0.5 -> 1.0 to 0.75, seed b 0.0 -> 0.5 to 0.25.
    assert s.mean.tolist() == pytest.approx([0.25, 0.5, 0.75, 0.625, 0.5])
    assert (s.low[2], s.high[2]) == (0.5, 1.0)


def test_grid_covers_only_steps_every_seed_reached():
    grid, mean, *_ = aggregate([(np.array([0.0, 100.0]), np.array([0.0, 1.0])),
                                (np.array([50.0, 200.0]), np.array([1.0, 1.0]))], n_points=3)
    assert grid.tolist() == [50.0, 75.0, 100.0] and mean.tolist() == pytest.approx([0.75, 0.875, 1.0])


def test_three_seeds_get_a_t_interval():
    mean, low, high, band = seed_band(np.array([[0.0], [0.5], [1.0]]))
    half = 4.303 * 0.5 / np.sqrt(3)
    assert band == BAND_T and mean[0] == 0.5 and (low[0], high[0]) == pytest.approx((0.5 - half, 0.5 + half))


def test_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 5, 30, 31, 60, 200):
        assert t975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=2e-3)
