"""Configs: dataclasses with a docstring under each field, named presets, overrides by dotted name.

Every recipe configures itself with one dataclass (``Config``) whose fields are documented by the
string under them (CleanRL's style: that string is also the field's ``--help``). A sub-config
nests as a field with a dataclass default (``ELLMConfig.dqn: DQNConfig``); its fields are named
with a dot from outside (``dqn.learning_rate``, ``--dqn.learning-rate``). Presets are named
instances of the same class. From Python, the CLI or a run's ``config.json`` a config is made
the same way::

    config = config_from(PRESETS, "cpu", {"dqn.learning_rate": 1e-4, "seeds": (1, 2)})
    data = to_dict(config)             # plain JSON-able dict, nested
    same = from_dict(ELLMConfig, data) # and back

``config_from`` names unknown fields and presets with the valid ones. Validation lives in each
dataclass's ``__post_init__``, so a bad value fails where the config is made, before any work.

This module imports only the standard library: ``llmrl --help`` stays fast.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import textwrap
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")


@dataclasses.dataclass(frozen=True)
class FlatField:
    """One leaf field of a (possibly nested) config: its dotted name, type and docstring."""

    name: str  # dotted: "dqn.learning_rate"
    type: Any  # the resolved annotation: int, float, str, bool, tuple[int, ...], int | None, ...
    doc: str


def is_config(obj: Any) -> bool:
    """True for a dataclass type or instance."""
    return dataclasses.is_dataclass(obj)


@functools.lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """The string literal under each field of ``cls`` (and of its dataclass bases), read from the source."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for a, b in zip(body, body[1:]):
            if (isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name) and isinstance(b, ast.Expr)
                    and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str)):
                docs[a.target.id] = " ".join(b.value.value.split())
    return docs


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _sub_config(cls: type, name: str) -> type | None:
    """The dataclass type of field ``name`` of ``cls``, if it is a nested config."""
    t = _hints(cls).get(name)
    return t if isinstance(t, type) and dataclasses.is_dataclass(t) else None


def flat_fields(cls: type, prefix: str = "") -> list[FlatField]:
    """Every leaf field of ``cls``, nested configs flattened to dotted names, in declaration order."""
    out = []
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        sub = _sub_config(cls, f.name)
        if sub is not None:
            out += flat_fields(sub, f"{prefix}{f.name}.")
        else:
            out.append(FlatField(prefix + f.name, _hints(cls)[f.name], docs.get(f.name, "")))
    return out


def get_field(config: Any, name: str) -> Any:
    """The value of a dotted field: ``get_field(cfg, "dqn.learning_rate")``."""
    for part in name.split("."):
        config = getattr(config, part)
    return config


def _unknown(names: list[str], valid: list[str], what: str) -> ValueError:
    hints = []
    for n in names:
        close = difflib.get_close_matches(n, valid, n=1)
        hints.append(f"{n} (did you mean {close[0]}?)" if close else n)
    return ValueError(f"unknown {what} field(s) {', '.join(hints)}: valid are {', '.join(valid)}")


def _group(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``{"dqn.lr": 1, "dqn": {"gamma": 0.9}, "seed": 2}`` -> ``{"dqn": {"lr": 1, "gamma": 0.9}, "seed": 2}``."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if rest:
            out.setdefault(head, {})
            if not isinstance(out[head], dict):
                raise ValueError(f"field {head} is given both whole and by its part {key}")
            out[head][rest] = value
        elif isinstance(value, Mapping):
            out.setdefault(head, {})
            out[head].update(value)
        else:
            out[head] = value
    return out


def replace(config: C, overrides: Mapping[str, Any]) -> C:
    """A copy of ``config`` with (dotted) fields replaced; each changed level is re-validated."""
    cls = type(config)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    grouped = _group(overrides)
    bad = [k for k in grouped if k not in names]
    if bad:
        raise _unknown(bad, [f.name for f in flat_fields(cls)], cls.__name__)
    changes: dict[str, Any] = {}
    for key, value in grouped.items():
        sub = _sub_config(cls, key)
        if sub is not None and isinstance(value, Mapping):
            try:
                changes[key] = replace(getattr(config, key), value)
            except ValueError as e:
                raise ValueError(f"{key}: {e}") from None
        else:
            changes[key] = value
    return dataclasses.replace(config, **changes)  # type: ignore[type-var]


def config_from(presets: Mapping[str, C], preset: str, overrides: Mapping[str, Any] | None = None) -> C:
    """Preset ``preset`` with ``overrides`` (dotted names or nested dicts) applied.

    Unknown presets and fields are errors that list the valid ones.
    """
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}: choose from {', '.join(presets)}")
    return replace(presets[preset], dict(overrides or {}))


# --------------------------------------------------------------------------- where llmrl keeps files
def cache_dir() -> Path:
    """llmrl's cache folder: ``$LLMRL_CACHE_DIR``, else ``~/.cache/llmrl`` (not created here).
    Converted models, the LM result cache and generated TextWorld games live under it."""
    import os

    return Path(os.environ.get("LLMRL_CACHE_DIR") or "~/.cache/llmrl").expanduser()


# --------------------------------------------------------------------------- to and from JSON
def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain JSON-able data (nested configs as dicts, tuples as lists)."""

    def plain(x: Any) -> Any:
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return {f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x) if f.init}
        if isinstance(x, (tuple, list)):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x

    return plain(config)


def _coerce(tp: Any, value: Any) -> Any:
    """A JSON value back into the field's type (lists into tuples, ints into floats)."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
        origin = typing.get_origin(tp)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        item = args[0] if args else Any
        return tuple(_coerce(item, v) for v in value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def from_dict(cls: type[C], data: Mapping[str, Any], *, missing_as_default: bool = True) -> C:
    """Rebuild a config from :func:`to_dict`'s output. Unknown keys are errors; a field the data
    lacks (added after it was written) takes its default unless ``missing_as_default=False``."""
    names = {f.name: f for f in dataclasses.fields(cls) if f.init}
    bad = sorted(set(data) - set(names))
    if bad:
        raise _unknown(bad, list(names), cls.__name__)
    if not missing_as_default:
        lacking = sorted(set(names) - set(data))
        if lacking:
            raise ValueError(f"{cls.__name__} data lacks field(s) {', '.join(lacking)}")
    kwargs = {}
    for name, value in data.items():
        sub = _sub_config(cls, name)
        if sub is not None and isinstance(value, Mapping):
            kwargs[name] = from_dict(sub, value, missing_as_default=missing_as_default)
        else:
            kwargs[name] = _coerce(_hints(cls)[name], value)
    return cls(**kwargs)


def differences(a: Any, b: Any) -> list[str]:
    """Dotted names of the leaf fields whose values differ between two configs of one class."""
    return [f.name for f in flat_fields(type(a)) if get_field(a, f.name) != get_field(b, f.name)]


def walk(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, value) of every leaf field."""
    for f in flat_fields(type(config)):
        yield prefix + f.name, get_field(config, f.name)


# --------------------------------------------------------------------------- validation helpers
def require_positive(config: Any, *names: str) -> None:
    """Raise a ValueError naming the first of ``names`` that is not a positive number."""
    for name in names:
        value = getattr(config, name)
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")


def require_choice(config: Any, name: str, choices: Any) -> None:
    """Raise a ValueError unless ``config.name`` is one of ``choices``."""
    value = getattr(config, name)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
