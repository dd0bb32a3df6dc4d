"""Learning curves and an HTML report from training run folders (``llmrl plot RUN...``).

A run folder, as the GLAM trainer and the SB3 baseline write it::

    RUN/config.json        recipe, label, env_id, seed, total_env_steps, ... (command, if recorded)
    RUN/progress.csv       one row per update: env_steps, episodes (cumulative), success_rate, losses...
    RUN/eval/results.json  optional, from ``llmrl.evaluation.write_results``

Runs with the same ``(env_id, label)`` are seeds of one series: each seed's smoothed curve is
interpolated on a common env-step grid, and the plot shows the mean over seeds with a band
(min-max for 2 seeds, a 95% t-interval of the mean for 3 or more). Evaluation folders written by
``llmrl eval`` (random, bot, zero-shot LM) are drawn as horizontal reference lines.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import shlex
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from llmrl.stats import t975

REQUIRED_COLUMNS = ("env_steps", "success_rate")
# Per-episode metrics are averaged over episodes (rows weighted by episodes finished in them);
# per-update metrics (losses) over updates.
EPISODE_METRICS = ("success_rate", "mean_return", "mean_length", "achievements", "intrinsic_return")
LOSS_METRICS = ("policy_loss", "value_loss", "entropy", "approx_kl")
BAND_NONE, BAND_MINMAX, BAND_T = "", "min–max over seeds", "95% t-interval of the mean"


class RunFormatError(ValueError):
    """A folder or file is not what ``llmrl plot`` reads; the message says what to pass instead."""


# ---------------------------------------------------------------------------------------- loading


@dataclass
class Run:
    """One training run: its config, its progress columns (float arrays, NaN for empty cells)
    and the evaluation summaries from ``eval/results.json`` (empty if it has none)."""

    path: Path
    config: dict[str, Any]
    progress: dict[str, np.ndarray]
    evals: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return str(self.config.get("label") or self.config.get("recipe") or self.path.name)

    @property
    def env_id(self) -> str:
        return str(self.config.get("env_id") or "unknown env")

    @property
    def seed(self) -> Any:
        return self.config.get("seed", "?")


def _is_run(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "progress.csv").is_file()


def read_progress(csv_path: Path) -> dict[str, np.ndarray]:
    """Columns of a progress.csv as float arrays; an empty cell (no episode finished) is NaN."""
    with csv_path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise RunFormatError(f"{csv_path} is empty: it needs a header row starting with env_steps.")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise RunFormatError(
            f"{csv_path} has no column {', '.join(missing)} (header: {','.join(header)}). "
            f"A progress.csv needs at least {', '.join(REQUIRED_COLUMNS)}; pass a run folder "
            "written by the GLAM trainer or the SB3 baseline.")
    data = np.full((len(rows) - 1, len(header)), np.nan)
    for i, row in enumerate(rows[1:]):
        for j, cell in enumerate(row[: len(header)]):
            if cell.strip():
                try:
                    data[i, j] = float(cell)
                except ValueError:
                    raise RunFormatError(
                        f"{csv_path} line {i + 2}, column {header[j]}: {cell!r} is not a number") from None
    return {h: data[:, j] for j, h in enumerate(header)}


def load_run(path: str | Path) -> Run:
    """Read a run folder (config.json, progress.csv and, if present, eval/results.json)."""
    path = Path(path)
    if not path.is_dir():
        raise RunFormatError(f"{path} is not a folder: pass a training run folder (with config.json and "
                             "progress.csv), or a folder that holds such run folders.")
    for name in ("config.json", "progress.csv"):
        if not (path / name).is_file():
            raise RunFormatError(
                f"{path} is not a training run folder: no {name}. Pass the folder a trainer wrote "
                "(it holds config.json and progress.csv); evaluation results from `llmrl eval` go "
                "in as references instead.")
    try:
        config = json.loads((path / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise RunFormatError(f"{path / 'config.json'} is not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise RunFormatError(f"{path / 'config.json'} must hold a JSON object, not {type(config).__name__}")
    evals = load_references(path / "eval" / "results.json") if (path / "eval" / "results.json").is_file() else []
    return Run(path, config, read_progress(path / "progress.csv"), evals)


def find_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Load each path as a run; a folder that is not a run but holds runs stands for all of them
    (so ``llmrl plot runs/`` works)."""
    runs: list[Run] = []
    for p in map(Path, paths):
        children = sorted(c for c in p.iterdir() if c.is_dir() and _is_run(c)) if p.is_dir() and not _is_run(p) else []
        runs.extend(load_run(c) for c in (children or [p]))
    return runs


def load_references(path: str | Path) -> list[dict[str, Any]]:
    """The evaluation summaries in a ``results.json`` (or a folder holding one)."""
    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise RunFormatError(f"{path}: no results.json. Pass a results.json written by `llmrl eval` "
                             "(or llmrl.evaluation.write_results), or its folder.")
    try:
        data = json.loads(file.read_text())
        summaries = [dict(r["summary"]) for r in data["results"]]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise RunFormatError(f"{file} is not an evaluation results file ({e!r}); expected "
                             '{"results": [{"summary": {...}}, ...]} as write_results writes it.') from None
    for s in summaries:
        s.setdefault("source", str(file))
    return summaries


def _as_summaries(references: Iterable[dict[str, Any] | str | Path]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for r in references:
        out.extend([r] if isinstance(r, dict) else load_references(r))
    return out


# ------------------------------------------------------------------------------------------ curves


def rolling_mean(values: np.ndarray, weights: np.ndarray, window: float) -> np.ndarray:
    """Weighted mean of ``values`` over the most recent rows whose weights add up to ``window``.

    Whole rows are kept, so a window holds at least ``window`` weight (or all rows so far). Rows
    with NaN values carry no weight: an update in which no episode finished repeats the last value.
    Before any weight, the result is NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    w = np.where(np.isnan(values), 0.0, np.asarray(weights, dtype=np.float64))
    cw = np.concatenate([[0.0], np.cumsum(w)])
    cwv = np.concatenate([[0.0], np.cumsum(w * np.nan_to_num(values))])
    end = np.arange(1, len(values) + 1)
    # The window over rows start..i is the last one whose weight still reaches `window`.
    start = np.clip(np.searchsorted(cw, cw[end] - window, side="right") - 1, 0, None)
    total = cw[end] - cw[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (cwv[end] - cwv[start]) / total, np.nan)


def steps_to_reach(run: Run, threshold: float = 0.8, metric: str = "success_rate",
                   window: float | None = None) -> float | None:
    """The first env step at which the run's smoothed ``metric`` (:func:`metric_curve`: the
    episodes of the last ``window``, default 100) reaches ``threshold``; None if it never does.
    The sample-efficiency number GLAM's curves show (GFlan-T5: about 0.8 at 250k steps)."""
    x, y = metric_curve(run, metric, window)
    hit = np.flatnonzero(y >= threshold)
    return float(x[hit[0]]) if len(hit) else None


def metric_curve(run: Run, metric: str = "success_rate", window: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(env_steps, smoothed metric) for one run, NaN-free.

    Episode metrics weight each update by the episodes that finished in it (the diff of the
    cumulative ``episodes`` column), so ``window`` counts episodes (default 100); other metrics
    weight updates equally and ``window`` counts updates (default 10).
    """
    p = run.progress
    if metric not in p:
        return np.empty(0), np.empty(0)
    order = np.argsort(p["env_steps"], kind="stable")
    x, y = p["env_steps"][order], p[metric][order]
    if metric in EPISODE_METRICS and "episodes" in p:
        finished = np.diff(np.nan_to_num(p["episodes"][order]), prepend=0.0).clip(min=0)
        smooth = rolling_mean(y, finished, 100 if window is None else window)
    else:
        default = 100 if metric in EPISODE_METRICS else 10
        smooth = rolling_mean(y, np.ones_like(y), default if window is None else window)
    keep = ~np.isnan(smooth) & ~np.isnan(x)
    return x[keep], smooth[keep]


def seed_band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Mean over seeds (axis 0) and its band: none for 1 seed, min-max for 2 (a t-interval with one
    degree of freedom is mostly width), mean ± t·sd/√n for 3 or more."""
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    n = values.shape[0]
    mean = values.mean(axis=0)
    if n == 1:
        return mean, mean, mean, BAND_NONE
    if n == 2:
        return mean, values.min(axis=0), values.max(axis=0), BAND_MINMAX
    half = t975(n - 1) * values.std(axis=0, ddof=1) / math.sqrt(n)
    return mean, mean - half, mean + half, BAND_T


@dataclass
class Series:
    """One label on one environment: seeds' curves on a common grid, averaged."""

    env_id: str
    label: str
    runs: list[Run]
    steps: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    band: str

    @property
    def n_seeds(self) -> int:
        return len(self.runs)

    def legend(self) -> str:
        seeds = f"{self.n_seeds} seed" + ("s" if self.n_seeds != 1 else "")
        return f"{self.label} ({seeds}{', ' + _short_band(self.band) if self.band else ''})"


def _short_band(band: str) -> str:
    return {BAND_MINMAX: "min–max", BAND_T: "95% t-CI"}.get(band, band)


# Config fields that do not change what a run learns: runs differing only in them are seeds of one series.
BOOKKEEPING = {"seed", "seeds", "label", "command", "recipe", "env_id", "n_updates", "threads", "torch_threads",
               "lm_torch_threads", "lm_threads", "checkpoint_every", "log_every", "eval_episodes", "eval_seed",
               "device", "lm_cache", "methods", "total_env_steps"}


def settings(run: Run) -> dict[str, Any]:
    """The run's config, flattened to dotted names, without bookkeeping fields."""
    config = run.config.get("config", run.config) if isinstance(run.config.get("config"), dict) else run.config
    flat: dict[str, Any] = {}

    def walk(prefix: str, d: dict[str, Any]) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(f"{prefix}{k}.", v)
            elif k not in BOOKKEEPING:
                flat[prefix + k] = json.dumps(v, sort_keys=True, default=str)

    walk("", config)
    return flat


def group_runs(runs: Sequence[Run]) -> dict[tuple[str, str], list[Run]]:
    """Runs keyed by (env_id, label), sorted, so colours and table rows are stable.

    Runs that share a label but were made with different settings are not seeds of one series:
    each distinct setting becomes its own series, its label followed by what differs
    (``glam-cpu [ppo.learning_rate=0.001]``).
    """
    groups: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.env_id, r.label), []).append(r)
    split: dict[tuple[str, str], list[Run]] = {}
    for (env_id, label), group in groups.items():
        variants: dict[tuple[tuple[str, Any], ...], list[Run]] = {}
        for r in group:
            variants.setdefault(tuple(sorted(settings(r).items())), []).append(r)
        if len(variants) == 1:
            split[(env_id, label)] = group
            continue
        keys = [dict(v) for v in variants]
        differing = sorted({k for d in keys for k in d if any(d.get(k) != e.get(k) for e in keys)})
        for variant, members in variants.items():
            d = dict(variant)
            tag = ", ".join(f"{k}={json.loads(d[k]) if k in d else '-'}" for k in differing[:3])
            split[(env_id, f"{label} [{tag}{', ...' if len(differing) > 3 else ''}]")] = members
    return {k: sorted(split[k], key=lambda r: str(r.seed)) for k in sorted(split)}


def aggregate(
    curves: Sequence[tuple[np.ndarray, np.ndarray]], n_points: int = 200
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Interpolate each seed's curve on a shared grid and take :func:`seed_band` across seeds.

    The grid spans only the steps every seed has reached, so the mean never silently drops a
    seed that started reporting later or stopped earlier.
    """
    curves = [(x, y) for x, y in curves if len(x)]
    if not curves:
        return np.empty(0), np.empty(0), np.empty(0), np.empty(0), BAND_NONE
    lo, hi = max(x[0] for x, _ in curves), min(x[-1] for x, _ in curves)
    if hi < lo:  # seeds do not overlap: show each one's last value at its own end
        lo = hi
    grid = np.linspace(lo, hi, n_points) if hi > lo else np.array([hi])
    stacked = np.stack([np.interp(grid, x, y) for x, y in curves])
    mean, low, high, band = seed_band(stacked)
    return grid, mean, low, high, band


def series(runs: Sequence[Run], metric: str = "success_rate", window: float | None = None,
           n_points: int = 200) -> list[Series]:
    """One :class:`Series` per (env_id, label): the seeds' smoothed ``metric`` curves averaged."""
    out = []
    for (env_id, label), group in group_runs(runs).items():
        grid, mean, low, high, band = aggregate([metric_curve(r, metric, window) for r in group], n_points)
        out.append(Series(env_id, label, group, grid, mean, low, high, band))
    return out


# ---------------------------------------------------------------------------------------- figures


def _colours(labels: Iterable[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {lab: cmap(i % 10) for i, lab in enumerate(sorted(set(labels)))}


def _new_figure(n_panels: int, ncols: int = 3, size: tuple[float, float] = (5.0, 3.6)) -> tuple[Figure, list[Any]]:
    # An explicit Agg canvas: no pyplot, no display, no global backend switch for the caller.
    ncols = max(1, min(ncols, n_panels))
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def plot_runs(runs: Sequence[Run], out_png: str | Path, metric: str = "success_rate",
              references: Sequence[dict[str, Any] | str | Path] = (), window: float | None = None,
              title: str | None = None, max_steps: float | None = None) -> Path:
    """One panel per env_id: per label, the mean over seeds with a shaded band; references
    (``llmrl eval`` results) as horizontal lines with their Wilson interval, on matching envs.
    ``max_steps`` cuts the x axis (runs of very different lengths on one panel)."""
    refs = _as_summaries(references)
    all_series = series(runs, metric, window)
    env_ids = sorted({s.env_id for s in all_series})
    colours = _colours(s.label for s in all_series)
    ref_colours = ("0.2", "tab:brown", "tab:olive", "tab:gray", "tab:pink")
    fig, axes = _new_figure(max(len(env_ids), 1))
    for ax, env_id in zip(axes, env_ids):
        for s in (s for s in all_series if s.env_id == env_id):
            c = colours[s.label]
            if len(s.steps) == 1:
                ax.plot(s.steps, s.mean, "o", color=c, label=s.legend())
            elif len(s.steps):
                ax.plot(s.steps, s.mean, color=c, lw=1.6, label=s.legend())
            else:
                ax.plot([], [], color=c, label=f"{s.label} (no data yet)")
            if s.band and len(s.steps):
                low, high = s.low, s.high
                if metric == "success_rate":
                    low, high = np.clip(low, 0, 1), np.clip(high, 0, 1)
                ax.fill_between(s.steps, low, high, color=c, alpha=0.2, lw=0)
        matching = [r for r in refs if r.get("env_id") == env_id and metric in r]
        for i, r in enumerate(matching):
            c = ref_colours[i % len(ref_colours)]
            ax.axhline(r[metric], color=c, ls=("--", ":", "-.")[i % 3], lw=1.2,
                       label=f"{r.get('agent', '?')} (eval, {r.get('episodes', '?')} episodes)")
            ci = r.get("success_ci95") if metric == "success_rate" else r.get("return_ci95")
            if ci:
                ax.axhspan(ci[0], ci[1], color=c, alpha=0.08, lw=0)
        ax.set_title(env_id, fontsize=10)
        ax.set_xlabel("env steps")
        ax.set_ylabel(metric.replace("_", " "))
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        if max_steps:
            ax.set_xlim(0, max_steps)
        if metric == "success_rate":
            ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    return out_png


def plot_losses(runs: Sequence[Run], out_png: str | Path, window: float | None = None) -> Path:
    """Policy/value loss, entropy and approx-KL per series (mean over seeds), smoothed over updates."""
    fig, axes = _new_figure(len(LOSS_METRICS), ncols=2, size=(5.0, 3.2))
    groups = group_runs(runs)
    many_envs = len({env for env, _ in groups}) > 1
    colours = _colours(label for _, label in groups)
    styles = {env: ("-", "--", ":", "-.")[i % 4] for i, env in enumerate(sorted({env for env, _ in groups}))}
    for ax, metric in zip(axes, LOSS_METRICS):
        for s in series(runs, metric, window):
            if len(s.steps):
                name = f"{s.label} · {s.env_id}" if many_envs else s.label
                ax.plot(s.steps, s.mean, color=colours[s.label], ls=styles[s.env_id], lw=1.3,
                        label=f"{name} ({s.n_seeds} seed{'s' if s.n_seeds != 1 else ''})")
        ax.set_title(metric.replace("_", " "), fontsize=10)
        ax.set_xlabel("env steps")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.ticklabel_format(axis="y", useOffset=False)  # a flat entropy reads 1.9, not 1e-12+1.9
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    return out_png


# ------------------------------------------------------------------------------------------ report


def _fmt(x: Any, digits: int = 3) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "–"
    return "–" if math.isnan(x) else f"{x:.{digits}f}"


def _across_seeds(values: Sequence[float]) -> tuple[float, str, str]:
    """(mean, '[lo, hi]', band name) of per-seed success rates, with the same rule as the plot
    bands; a t-interval is clipped to [0, 1], where a rate lives."""
    mean, lo, hi, band = seed_band(np.asarray(values, dtype=np.float64)[:, None])
    if not band:
        return float(mean[0]), "", ""
    return float(mean[0]), f"[{_fmt(max(lo[0], 0.0))}, {_fmt(min(hi[0], 1.0))}]", band


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table; every cell is escaped here, so callers pass plain text."""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _eval_rows(runs: Sequence[Run]) -> list[list[str]]:
    rows = []
    for (env_id, label), group in group_runs(runs).items():
        by_env: dict[str, list[tuple[Run, dict[str, Any]]]] = {}
        for r in group:
            for s in {s.get("env_id", "?"): s for s in r.evals}.values():  # last summary per env wins
                by_env.setdefault(str(s.get("env_id", "?")), []).append((r, s))
        for eval_env, pairs in by_env.items():
            rates = [float(s["success_rate"]) for _, s in pairs]
            mean, interval, band = _across_seeds(rates)
            if len(pairs) == 1:
                lo, hi = pairs[0][1].get("success_ci95", [math.nan, math.nan])
                interval, band = f"[{_fmt(lo)}, {_fmt(hi)}]", "Wilson 95% over episodes"
            per_seed = "; ".join(
                f"seed {r.seed}: {_fmt(s['success_rate'])} [{_fmt(s.get('success_ci95', [math.nan] * 2)[0])}, "
                f"{_fmt(s.get('success_ci95', [math.nan] * 2)[1])}] ({s.get('episodes', '?')} ep)" for r, s in pairs)
            rows.append([label, env_id, eval_env, f"{len(pairs)} of {len(group)}", _fmt(mean), interval, band,
                         per_seed])
    return rows


def _training_rows(runs: Sequence[Run], window: float, metric: str = "success_rate") -> list[list[str]]:
    rows = []
    for (env_id, label), group in group_runs(runs).items():
        finals = [(r, metric_curve(r, metric, window)) for r in group]
        values = [float(y[-1]) for _, (_, y) in finals if len(y)]
        mean, interval, band = _across_seeds(values) if values else (math.nan, "", "")
        steps = [int(r.progress["env_steps"][-1]) for r in group if len(r.progress["env_steps"])]
        per_seed = "; ".join(f"seed {r.seed}: {_fmt(y[-1]) if len(y) else 'no episode yet'}" for r, (_, y) in finals)
        rows.append([label, env_id, str(len(group)), f"{min(steps):,}" if steps else "0",
                     _fmt(mean), interval, band, per_seed])
    return rows


def _reference_rows(refs: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in refs:
        lo, hi = r.get("success_ci95", [math.nan, math.nan])
        rows.append([str(r.get("agent", "?")), str(r.get("env_id", "?")), str(r.get("episodes", "?")),
                     _fmt(r.get("success_rate")), f"[{_fmt(lo)}, {_fmt(hi)}]", str(r.get("source", ""))])
    return rows


def _command(config: dict[str, Any]) -> str | None:
    cmd = config.get("command")
    if cmd is None:
        return None
    return shlex.join(map(str, cmd)) if isinstance(cmd, (list, tuple)) else str(cmd)


def _png_tag(png: Path, alt: str) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3}img{max-width:100%}pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.85em}
.caption{color:#555;font-size:.9em}details{margin:.3em 0}"""


def write_report(runs: Sequence[Run], out_dir: str | Path, references: Sequence[dict[str, Any] | str | Path] = (),
                 title: str | None = None, window_episodes: float = 100, window_updates: float = 10,
                 metric: str = "success_rate") -> Path:
    """Write ``plot.png``, ``losses.png`` and a self-contained ``report.html`` into ``out_dir``.

    ``metric`` is the progress.csv column to plot and tabulate: success_rate (GLAM), or
    achievements / crafter_score (ELLM's runs), or any other column."""
    if not runs:
        raise RunFormatError("no runs to report: pass at least one run folder (with config.json and progress.csv)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    refs = _as_summaries(references)
    title = title or "Training report: " + ", ".join(sorted({r.label for r in runs}))
    missing = [str(r.path) for r in runs if metric not in r.progress]
    if missing:
        raise RunFormatError(f"no column {metric!r} in the progress.csv of {', '.join(missing)}: "
                             "choose a --metric those runs log")
    plot_png = plot_runs(runs, out / "plot.png", metric, refs, window_episodes)
    what = metric.replace("_", " ")
    losses_png = plot_losses(runs, out / "losses.png", window_updates)
    esc = html.escape
    n_win = f"{window_episodes:g}"

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{esc(title)}</h1>",
             f"<p class='caption'>{len(runs)} runs, generated {esc(time.strftime('%Y-%m-%d %H:%M'))}.</p>",
             f"<h2>Training: {esc(what)}</h2>", _png_tag(plot_png, f"training {what}"),
             f"<p class='caption'>{esc(what.capitalize())} over the last ≥{esc(n_win)} training episodes (whole updates), "
             "mean over seeds on a common env-step grid that every seed reaches. Shaded: "
             f"{esc(BAND_MINMAX)} with 2 seeds, {esc(BAND_T)} with 3 or more; none with 1. "
             "Horizontal lines: evaluation references with their Wilson 95% interval.</p>",
             "<h2>Final evaluation</h2>"]
    eval_rows = _eval_rows(runs)
    parts.append(_table(["series", "trained on", "evaluated on", "seeds", "success rate (mean over seeds)",
                         "interval", "interval kind", "per seed: rate [Wilson 95%] (episodes)"], eval_rows)
                 if eval_rows else "<p>No run has eval/results.json yet.</p>")
    if refs:
        parts += ["<h2>References</h2>",
                  _table(["agent", "env", "episodes", "success rate", "Wilson 95%", "source"], _reference_rows(refs))]
    parts += [f"<h2>Training: {esc(what)}, last {esc(n_win)} episodes</h2>",
              _table(["series", "env", "seeds", "env steps (shortest seed)", f"{what} (mean over seeds)",
                      "interval", "interval kind", "per seed"], _training_rows(runs, window_episodes, metric)),
              "<h2>Losses</h2>", _png_tag(losses_png, "training losses"),
              f"<p class='caption'>Mean over seeds, each smoothed over {esc(f'{window_updates:g}')} updates.</p>",
              "<h2>Runs</h2>"]
    for (env_id, label), group in group_runs(runs).items():
        parts.append(f"<h3>{esc(label)} · {esc(env_id)} ({len(group)} seed{'s' if len(group) != 1 else ''})</h3>")
        for r in group:
            cmd = _command(r.config)
            parts.append(f"<p>seed {esc(str(r.seed))}: <code>{esc(str(r.path))}</code></p>")
            if cmd:
                parts.append(f"<pre>{esc(cmd)}</pre>")
            parts.append(f"<details><summary>config.json</summary><pre>"
                         f"{esc(json.dumps(r.config, indent=2, default=str))}</pre></details>")
    parts.append("</body></html>")
    report = out / "report.html"
    report.write_text("\n".join(parts), encoding="utf-8")
    return report


def plot_command(run_paths: Sequence[str], out: str, references: Sequence[str] = (), title: str | None = None,
                 window_episodes: float = 100, metric: str = "success_rate") -> Path:
    """What ``llmrl plot RUN... --out DIR [--reference results.json]`` does; returns report.html."""
    if not run_paths:
        raise RunFormatError("no run folders given: pass one or more folders with config.json and progress.csv")
    runs = find_runs(run_paths)
    refs = _as_summaries(references)
    return write_report(runs, out, refs, title, window_episodes=window_episodes, metric=metric)
