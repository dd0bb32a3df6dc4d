"""The learner's LoRA adapters, pushed to a serving process between updates.

A server that loads adapters at run time (vLLM with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` and
``--enable-lora``; ``llmrl serve --enable-lora``) answers for a base model and for any adapter
it has loaded, by name. :class:`AdapterSync` writes the adapters in peft's format to a folder
the server can read (on the same machine, or a shared file system), asks the server to load
them under a name that carries the policy version (``policy-v12``), and unloads the versions
before the last ``keep``. A new name per version sidesteps re-loading under one name (which vLLM
refused before ``load_inplace``) and keeps any client-side result cache honest: scores from
version 11 are never served as version 12's.

Only the adapters travel (megabytes, not the model). What cannot ride in a LoRA adapter stays
with the learner: vLLM rejects peft's ``modules_to_save``, so GLAM's value head, which reads the
LM's hidden state that vLLM does not return, is computed by the learner (see docs/scale.md).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from llmrl.lm.errors import LMError


class AdapterSync:
    """Push a peft model's adapters to the server at ``base_url`` as ``{name}-v{version}``.

    Args:
        base_url: the server's root (``http://host:8000``; a trailing ``/v1`` is fine).
        folder: where adapter folders are written; the server must see the same path.
        name: the served name's stem.
        keep: versions kept loaded (the newest ``keep``), so a rollout still using the previous
            one is not cut off.
        api_key: bearer token (default ``$OPENAI_API_KEY``).
        timeout: seconds one request may take (a load reads the adapter from disk).
    """

    def __init__(self, base_url: str, folder: str | os.PathLike[str], name: str = "policy", keep: int = 2,
                 api_key: str | None = None, timeout: float = 120.0) -> None:
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"base_url {base_url!r} is not an http(s) URL: give e.g. http://localhost:8000")
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.folder = Path(folder)
        self.name, self.keep, self.timeout = name, keep, timeout
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.loaded: list[str] = []

    def push(self, peft_model: Any, version: int) -> str:
        """Save ``peft_model``'s adapters, have the server load them; returns the served name."""
        served = f"{self.name}-v{version}"
        path = self.folder / served
        tmp = self.folder / f".{served}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        peft_model.save_pretrained(str(tmp))
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)  # the server never reads a half-written folder
        self._post("/v1/load_lora_adapter", {"lora_name": served, "lora_path": str(path.resolve())})
        self.loaded.append(served)
        while len(self.loaded) > self.keep:
            old = self.loaded.pop(0)
            self._post("/v1/unload_lora_adapter", {"lora_name": old}, missing_ok=True)
            shutil.rmtree(self.folder / old, ignore_errors=True)
        return served

    def _post(self, path: str, body: dict[str, Any], missing_ok: bool = False) -> None:
        # vLLM answers these two endpoints with plain text, not JSON: only the status matters.
        req = urllib.request.Request(self.base_url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {self.api_key}"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                resp.read(1 << 16)
        except urllib.error.HTTPError as e:
            if missing_ok and e.code == 404:
                return
            detail = e.read(2000).decode("utf-8", "replace")
            hint = (" (vLLM: start it with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True; llmrl serve: "
                    "--enable-lora)") if e.code in (400, 404) else ""
            raise LMError(f"{self.base_url}{path} answered HTTP {e.code}: {detail[:300]}{hint}") from None
        except (urllib.error.URLError, OSError) as e:
            raise LMError(f"cannot reach {self.base_url}{path} ({e}): is the server running?") from None
