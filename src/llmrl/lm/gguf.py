"""GGUF files -> a dequantized transformers checkpoint, cached once per user.

transformers can read a GGUF file directly, but that dequantizes every tensor and rebuilds the
tokenizer from GGUF metadata on every load (~75 s for gemma-3-270m on 2 cores). We do that once
and keep a safetensors copy plus the tokenizer files in the per-user cache, so later loads take
seconds.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from filelock import FileLock

from llmrl.lm.base import LMError
from llmrl.config import cache_dir

_FORMAT_VERSION = 2  # bump when the converted layout changes, so stale copies are rebuilt (2: file fingerprints)


def file_fingerprint(path: Path) -> str:
    """A cheap identity for a large file: its size, and hashes of its first and last MiB."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def converted_dir(gguf_path: Path, name: str | None = None) -> Path:
    """Where the dequantized copy of ``gguf_path`` lives in the cache."""
    stem = name or gguf_path.stem
    return cache_dir() / "models" / f"{stem}-{file_fingerprint(gguf_path)}-v{_FORMAT_VERSION}"


MARKER = "llmrl-converted.json"


def ensure_converted(gguf_path: str | os.PathLike[str], name: str | None = None) -> Path:
    """Return a folder with ``config.json``, safetensors weights and tokenizer for ``gguf_path``.

    Converts on first use. Safe under concurrent processes: one converts while the others wait on
    a file lock; the folder appears atomically (written to a temporary sibling, then renamed), and
    temporary folders a killed conversion left behind are removed under the lock. The marker file
    records every file's size and fingerprint; a copy that no longer matches (a file deleted,
    truncated or changed) is converted again, with a warning that says so.
    """
    gguf_path = Path(gguf_path).expanduser().resolve()
    if not gguf_path.is_file():
        raise LMError(f"GGUF file not found: {gguf_path}. Pass the path of an existing .gguf file.")
    target = converted_dir(gguf_path, name)
    if intact(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        for stale in target.parent.glob(glob.escape(target.name) + ".*"):
            if stale.is_dir():  # a conversion killed before its rename
                shutil.rmtree(stale, ignore_errors=True)
        if intact(target):
            return target
        if target.exists():
            warnings.warn(f"llmrl: the converted model in {target} is damaged or incomplete; converting "
                          f"{gguf_path.name} again", stacklevel=2)
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
        try:
            _convert(gguf_path, tmp)
            files = {p.name: [p.stat().st_size, file_fingerprint(p)] for p in sorted(tmp.iterdir()) if p.is_file()}
            (tmp / MARKER).write_text(json.dumps({"source": str(gguf_path), "format_version": _FORMAT_VERSION,
                                                  "files": files}))
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def intact(folder: Path) -> bool:
    """True when ``folder`` holds a finished conversion whose files match what was written."""
    try:
        files = json.loads((folder / MARKER).read_text())["files"]
        return all((folder / f).stat().st_size == size and file_fingerprint(folder / f) == fp
                   for f, (size, fp) in files.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _convert(gguf_path: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, fname = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
    except Exception as e:  # transformers raises many types for unsupported architectures
        raise LMError(
            f"transformers could not load {gguf_path} ({type(e).__name__}: {e}). Its GGUF reader "
            "supports common architectures (llama, gemma, qwen, ...); for others convert the model "
            "to a Hugging Face folder, or serve it with llama.cpp and use an 'openai:' URL."
        ) from e
    check_tokenizer(tokenizer, gguf_path)
    # The weights are dequantized now; drop the GGUF quantizer so save_pretrained accepts them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


# Any subword vocabulary splits this into roughly one token per word; a tokenizer rebuilt wrongly
# from GGUF metadata falls back to single characters (transformers 5.17 does so for gemma-3).
_PROBE = "Push the red ball to the left of the blue ball, then go forward and pick up the key."


def check_tokenizer(tokenizer: Any, source: Path | str) -> None:
    """Refuse a tokenizer that splits plain English into characters (a broken GGUF conversion).

    A policy scored through such a tokenizer still runs, but every multi-letter action becomes a
    long token sequence, so the shortest action wins almost every time: training goes nowhere
    without an error. Better to stop at conversion time.
    """
    n = len(tokenizer(_PROBE, add_special_tokens=False)["input_ids"])
    if n > len(_PROBE) // 2:
        import transformers

        raise LMError(
            f"transformers {transformers.__version__} rebuilt a character-level tokenizer from {source} "
            f"({n} tokens for a {len(_PROBE)}-character sentence; a working one gives about "
            f"{len(_PROBE.split())}). Upgrade transformers (5.24 converts gemma-3 correctly), or pass a "
            "Hugging Face model folder whose tokenizer works."
        )
