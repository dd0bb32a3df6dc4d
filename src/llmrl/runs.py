"""The run folder every recipe writes, and the one layer that writes it (docs/architecture.md).

A run folder holds:

============================  =================================================================
``config.json``               ``recipe``, ``label`` (series name: runs with one label and
                              ``env_id`` are seeds of one series), ``env_id``, ``seed``, the
                              ``command`` that made it, and the whole config (nested) as ``config``
``progress.csv``              one row per logging step, keyed by ``env_steps`` (online) or
                              ``step`` (offline); online runs have at least ``PROGRESS_COLUMNS``
``tb/``                       the same rows in TensorBoard: ``charts/*`` and ``losses/*``
``checkpoints/latest.pt``     what a resumed run needs, written atomically (a kill leaves the
                              old file or the new one)
``done.json``                 the headline numbers, once the run has finished
============================  =================================================================

:class:`RunFolder` owns the rules: a folder that already holds files needs ``resume=True``; a
resumed run must have been started by the same recipe with the same settings (fields listed in
``may_change`` excepted) and is refused, naming the fields, otherwise; progress rows a killed run
wrote after its last checkpoint are cut away (:class:`ProgressLog`, :class:`JsonLines`).
Checkpoints that ``--resume`` reads are the user's own files and are unpickled; nothing a user
is handed by someone else (trained policy weights) is ever unpickled.

Seeds: :func:`env_seeds` gives the environment seeds of a run, :func:`rng` its numpy generators.
"""

from __future__ import annotations

import contextvars
import csv
import json
import math
import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmrl.config import differences, from_dict, to_dict

PROGRESS_COLUMNS: tuple[str, ...] = (
    "env_steps", "updates", "wall_s", "episodes", "success_rate", "mean_return", "mean_length",
    "policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "steps_per_s",
)  # fmt: skip
"""The columns every online run's progress.csv starts with (``llmrl plot`` reads them). ``episodes``
is cumulative; the episode metrics cover the episodes that finished since the previous row."""

LOSS_COLUMNS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "loss", "td_loss",
                "q_loss", "v_loss", "conservative_loss", "cross_entropy", "mse_state", "ce_action", "ce_text")
"""Columns that TensorBoard groups under ``losses/`` (everything else goes under ``charts/``)."""

COMMAND: contextvars.ContextVar[str | None] = contextvars.ContextVar("llmrl_command", default=None)
"""The command line that started this process's runs (set by the CLI; None from Python)."""


# --------------------------------------------------------------------------- atomic files
def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write to a temporary sibling, fsync, rename: a kill leaves the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.integer, np.floating, np.bool_)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (Path, tuple, set)):
        return str(x) if isinstance(x, Path) else list(x)
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


def atomic_torch_save(path: str | os.PathLike[str], obj: Any, **save_kwargs: Any) -> None:
    """``torch.save`` to a temporary sibling, fsync, then rename. Every checkpoint goes through here."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f, **save_kwargs)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _copy_tensors(obj: Any) -> Any:
    """``obj`` with every tensor copied to CPU memory (dicts, lists and tuples walked; the rest kept)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _copy_tensors(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copy_tensors(v) for v in obj)
    return obj


# --------------------------------------------------------------------------- seeds
def env_seeds(seed: int, n: int, *, stride: int, offset: int = 0) -> list[int]:
    """The reset seeds of a run's ``n`` environments: ``seed * stride + offset + i``.

    ``stride`` is the number of seeds a run may use, so runs with consecutive seeds never share
    a level; ``offset`` moves a restarted run (resumed without its environments) to new levels.
    """
    return [seed * stride + offset + i for i in range(n)]


def rng(seed: int, *stream: int) -> np.random.Generator:
    """A numpy generator for one purpose of a run: ``rng(seed, 1)`` is independent of ``rng(seed, 2)``."""
    return np.random.default_rng([seed, *stream]) if stream else np.random.default_rng(seed)


# --------------------------------------------------------------------------- results
@dataclass
class RunResult:
    """What a recipe's ``run`` returns: where it wrote, what, and its headline numbers."""

    recipe: str
    out: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    report: str = ""
    """A Markdown table or a few lines to print, if the recipe has one."""

    def summary(self) -> str:
        lines = [self.report.rstrip()] if self.report else []
        shown = {k: v for k, v in self.metrics.items() if isinstance(v, (int, float, str)) and v is not None}
        if shown and not self.report:
            lines.append(", ".join(f"{k} {_fmt(v)}" for k, v in shown.items()))
        lines.append(f"{self.recipe}: wrote {self.out}" + (f" ({', '.join(self.files)})" if self.files else ""))
        return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# --------------------------------------------------------------------------- the folder
class RunFolder:
    """One run's folder: checks it may be (re)used, writes ``config.json``, and hands out the
    progress log, the checkpoint and ``done.json``.

    Args:
        path: the folder (created if missing).
        recipe: the recipe's name (``config.json``'s ``recipe``).
        config: the run's config dataclass.
        resume: continue a run already in ``path``; without it a folder that holds files is refused.
        identity: ``label``, ``env_id``, ``seed`` and any other top-level keys for ``llmrl plot``.
        may_change: dotted config fields that a resumed run may change (budgets, logging).
    """

    def __init__(self, path: str | os.PathLike[str], recipe: str, config: Any, *, resume: bool = False,
                 identity: Mapping[str, Any] | None = None, may_change: Collection[str] = ()) -> None:
        self.path = Path(path)
        self.recipe = recipe
        self.config = config
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"{self.path} is a file, not a folder: give --out a folder path")
        # A lone config.json is a start that failed before any work (a model that would not load).
        started = self.path.is_dir() and any(p.name != "config.json" for p in self.path.iterdir())
        if started and not resume:
            raise FileExistsError(
                f"{self.path} already holds a run: pass --resume to continue it, or choose a new --out")
        self.resumed = bool(started)
        if started:
            self._check_same_run(may_change)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"cannot create the run folder {self.path}: {e.strerror or e}") from None
        if not os.access(self.path, os.W_OK):
            raise OSError(f"the run folder {self.path} is not writable: choose another --out")
        self._writer: Any = None  # the background checkpoint thread, started by the first such save
        self._pending: Any = None
        head = {"recipe": recipe, **(identity or {}), "command": COMMAND.get()}
        atomic_write_json(self.path / "config.json", {**head, "config": to_dict(config)})

    def _check_same_run(self, may_change: Collection[str]) -> None:
        saved_path = self.path / "config.json"
        if not saved_path.is_file():
            raise ValueError(f"{self.path} holds files but no config.json, so it is not a run folder to "
                             "resume: choose a new --out")
        try:
            saved = json.loads(saved_path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{saved_path} is damaged ({e}): it cannot be resumed; choose a new --out") from None
        if not isinstance(saved, dict) or saved.get("recipe") != self.recipe:
            other = saved.get("recipe") if isinstance(saved, dict) else None
            raise ValueError(f"{self.path} holds a {other or 'different'} run, not a {self.recipe} run: "
                             "resume it with its own recipe, or choose a new --out")
        try:
            before = from_dict(type(self.config), saved.get("config", {}))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{saved_path} does not describe a {self.recipe} config ({e}): choose a new --out") from None
        changed = [k for k in differences(before, self.config) if k not in may_change]
        if changed:
            raise ValueError(f"--resume: {self.path} was started with other settings ({', '.join(changed)}); "
                             "resume with the same settings or use a new --out")

    # ------------------------------------------------------------------ files
    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoints" / "latest.pt"

    def load_checkpoint(self, progress_file: str = "progress.csv", fingerprint: str | None = None
                        ) -> dict[str, Any] | None:
        """The latest checkpoint of a resumed run, or None for a new run (or one killed before its
        first checkpoint and with no progress rows). Checkpoints are this user's own files. With
        ``fingerprint`` (of the training data), a checkpoint saved with another one is refused."""
        ckpt = self._read_checkpoint(progress_file)
        if ckpt is not None and fingerprint is not None and ckpt.get("fingerprint") != fingerprint:
            raise ValueError(f"{self.path} was trained on other data (dataset fingerprint differs); "
                             "resume with the same data, or start a new --out")
        return ckpt

    def _read_checkpoint(self, progress_file: str) -> dict[str, Any] | None:
        import torch

        if not self.resumed:
            return None
        if not self.checkpoint_path.exists():
            if _has_rows(self.path / progress_file):
                raise ValueError(f"{self.path} has progress rows but no {self.checkpoint_path.name}: the run "
                                 "cannot continue where it stopped; start it again in a new --out")
            return None
        try:
            return torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 - a truncated or foreign file: say which, not a pickle trace
            raise ValueError(f"{self.checkpoint_path} cannot be read ({type(e).__name__}: {e}); "
                             "start the run again in a new --out") from None

    def save_checkpoint(self, state: Mapping[str, Any], plain: bool = False, background: bool = False) -> None:
        """Write ``checkpoints/latest.pt`` atomically. ``plain=True``: the state holds only tensors
        and plain data, saved so that ``torch.load(weights_only=True)`` reads it (pickle protocol
        2); otherwise the newest protocol (large numpy arrays, e.g. a replay buffer).

        ``background=True``: copy the tensors now (to CPU; training may change the originals in
        place) and write in a thread while training goes on — a full fine-tune's checkpoint is
        gigabytes. One write at a time: the next save, :meth:`wait_for_checkpoint` and
        :meth:`finish` wait for the one in flight and raise its error, if any."""
        import pickle

        protocol = 2 if plain else pickle.HIGHEST_PROTOCOL
        self.wait_for_checkpoint()
        if not background:
            atomic_torch_save(self.checkpoint_path, dict(state), pickle_protocol=protocol)
            return
        from concurrent.futures import ThreadPoolExecutor

        snapshot = _copy_tensors(dict(state))
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="checkpoint")
        self._pending = self._writer.submit(atomic_torch_save, self.checkpoint_path, snapshot, pickle_protocol=protocol)

    def wait_for_checkpoint(self) -> None:
        """Block until a background checkpoint write has landed (raising its error, if it failed)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def progress(self, columns: Sequence[str], key: str = "env_steps", resume_at: float = 0,
                 tensorboard: bool = True, digits: int | None = 6) -> ProgressLog:
        """``progress.csv`` (and ``tb/``), cut back to rows with ``key <= resume_at``; floats are
        written to ``digits`` significant digits (None: as given, for rows rounded by the recipe)."""
        return ProgressLog(self.path / "progress.csv", columns, key, resume_at,
                           self.path / "tb" if tensorboard else None, digits)

    @property
    def done(self) -> bool:
        return (self.path / "done.json").exists()

    def finish(self, summary: Mapping[str, Any]) -> None:
        self.wait_for_checkpoint()
        """Write ``done.json``: the run finished, with these numbers."""
        atomic_write_json(self.path / "done.json", dict(summary))


def _has_rows(path: Path) -> bool:
    if not path.exists():
        return False
    with path.open() as f:
        return sum(1 for line in f if line.strip()) > 1


def check_output_folder(path: str | os.PathLike[str]) -> Path:
    """Fail now, before any work, if ``path`` cannot be a folder this process writes into."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{p} is a file, not a folder: give --out a folder path")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"cannot create the folder {p}: {e.strerror or e}") from None
    if not os.access(p, os.W_OK):
        raise OSError(f"the folder {p} is not writable: choose another --out")
    return p


# --------------------------------------------------------------------------- logs
def format_cell(x: Any, digits: int | None = 6) -> Any:
    """CSV cell: floats to ``digits`` significant digits (None: as they are), None and NaN empty."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.{digits}g}" if digits else repr(float(x))
    return x


class ProgressLog:
    """``progress.csv`` (one row per logging step) and its TensorBoard mirror.

    On opening, rows whose ``key`` exceeds ``resume_at`` (written by a killed run after its last
    checkpoint) are dropped and the file is rewritten atomically; TensorBoard events past that
    step are purged. Each row is appended and flushed, so a kill loses at most the row in hand.
    """

    def __init__(self, path: Path, columns: Sequence[str], key: str, resume_at: float = 0,
                 tb_dir: Path | None = None, digits: int | None = 6) -> None:
        self.path, self.columns, self.key, self.digits = Path(path), tuple(columns), key, digits
        if key not in self.columns:
            raise ValueError(f"the progress key {key!r} is not one of the columns {self.columns}")
        rows = read_rows(self.path, key, resume_at) if resume_at else []
        buf = _CsvText(self.columns)
        buf.write_rows(rows)
        atomic_write_text(self.path, buf.text)
        self.tb = None
        if tb_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops the events a killed run logged after its last checkpoint.
            self.tb = SummaryWriter(str(tb_dir), purge_step=int(resume_at) + 1 if resume_at else None)

    def write(self, row: Mapping[str, Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow({k: format_cell(row.get(k), self.digits) for k in self.columns})
        if self.tb is not None:
            step = int(row[self.key])
            for k in self.columns:
                v = row.get(k)
                if k == self.key or isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
                    continue
                if isinstance(v, float) and not math.isfinite(v):
                    continue
                self.tb.add_scalar(f"{'losses' if k in LOSS_COLUMNS else 'charts'}/{k}", float(v), step)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


class _CsvText:
    def __init__(self, columns: Sequence[str]) -> None:
        import io

        self.io = io.StringIO(newline="")
        self.writer = csv.DictWriter(self.io, columns)
        self.writer.writeheader()

    def write_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self.writer.writerows(rows)

    @property
    def text(self) -> str:
        return self.io.getvalue()


def read_rows(path: Path, key: str, upto: float = math.inf) -> list[dict[str, str]]:
    """The rows of a CSV log with ``key <= upto`` (all by default)."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [r for r in csv.DictReader(f) if r.get(key) not in (None, "") and float(r[key]) <= upto]


class JsonLines:
    """An append-only JSON-lines log (one record per finished episode, say), cut back on resume
    to the records with ``key <= resume_at``."""

    def __init__(self, path: Path, key: str, resume_at: float = 0) -> None:
        self.path, self.key = Path(path), key
        kept = [r for r in read_json_lines(self.path) if r.get(key, math.inf) <= resume_at] if resume_at else []
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self.file = self.path.open("a")

    def write(self, record: Mapping[str, Any]) -> None:
        self.file.write(json.dumps(record, default=_json_default) + "\n")

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file, or of its gzip-compressed copy ``<path>.gz`` (how
    results are committed); [] when neither exists."""
    path = Path(path)
    if not path.exists():
        packed = path.with_name(path.name + ".gz")
        if not packed.exists():
            return []
        import gzip

        with gzip.open(packed, "rt") as f:
            return [json.loads(line) for line in f if line.strip()]
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def read_study(folders: Sequence[Path], unit: Callable[[dict[str, Any]], Any]) -> list[dict[str, Any]]:
    """The records of one study run as several folders (e.g. its seeds in separate processes),
    concatenated. ``unit(record)`` names the run a record belongs to (None: no run); a folder
    without records, or one that repeats a run of an earlier folder, is a ValueError naming it."""
    records: list[dict[str, Any]] = []
    seen: set[Any] = set()
    for folder in folders:
        mine = read_json_lines(Path(folder) / "records.jsonl")
        if not mine:
            raise ValueError(f"no records.jsonl(.gz) in {folder}: pass run folders or their committed copies")
        here = {u for r in mine if (u := unit(r)) is not None}
        if here & seen:
            raise ValueError(f"{folder} repeats runs of an earlier folder: {sorted(here & seen, key=str)}")
        seen |= here
        records += mine
    return records


def copy_study(folders: Sequence[Path], records: Iterable[Mapping[str, Any]], dest: Path) -> None:
    """Commit a study's records to ``dest``: ``records.jsonl.gz`` (gzip mtime 0, so the same
    records give the same bytes and a re-copy does not show as a change) and each folder's
    config.json (``config-<folder>.json`` when there are several; a copy has none to give)."""
    import gzip
    import shutil

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r) + "\n" for r in records).encode()
    (dest / "records.jsonl.gz").write_bytes(gzip.compress(lines, mtime=0))
    for folder in map(Path, folders):
        if (folder / "config.json").exists():
            name = "config.json" if len(folders) == 1 else f"config-{folder.name}.json"
            shutil.copy(folder / "config.json", dest / name)
