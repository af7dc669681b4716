"""Typed dataclass configs from YAML plus dotted CLI overrides (`--optim.lr=1e-3`).

Every problem becomes one OlmoError line naming the key (and the closest valid key for typos),
so a bad config never reaches the trainer.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from olmo.errors import OlmoError
from olmo.fsutil import atomic_write_text

T = TypeVar("T")


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping; a missing file, bad YAML or a non-mapping is a one-line error."""
    p = Path(path)
    if not p.is_file():
        raise OlmoError(
            f"{p}: config file not found; pass an existing YAML file (e.g. configs/tiny.yaml)"
        )
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise OlmoError(
            f"{p}: not valid UTF-8 ({e.reason} at byte {e.start}); save it as UTF-8"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise OlmoError(
            f"{p}{where}: invalid YAML ({getattr(e, 'problem', e)}); fix the syntax"
        ) from None
    except RecursionError:  # PyYAML parses nested collections recursively
        raise OlmoError(f"{p}: nested too deeply to be a config; fix the file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise OlmoError(f"{p}: expected a mapping of config sections, got {type(data).__name__}")
    return data


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """`--a.b=1` / `a.b=1` / `--a.b 1` → nested dict; values parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i].removeprefix("--")
        if "=" in arg:
            key, raw = arg.split("=", 1)
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            key, raw = arg, args[i + 1]
            i += 1
        else:
            raise OlmoError(f"override '{args[i]}' has no value; write --{arg}=VALUE")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        set_dotted(out, key, value)
        i += 1
    return out


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    for part in parts[:-1]:
        nxt = d.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise OlmoError(f"override '{key}': '{part}' is a value, not a section")
        d = nxt
    d[parts[-1]] = value


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "", source: str = "config") -> T:
    """Build dataclass `cls` from `data`, checking every key and type."""
    if not isinstance(data, dict):
        raise OlmoError(
            f"{source}: '{prefix.rstrip('.') or '<root>'}' must be a mapping, got {type(data).__name__}"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            # str(): YAML keys may be ints or null (`1: x`, `~: x`)
            raise OlmoError(
                f"{source}: unknown key '{prefix}{key}'{_suggest(str(key), fields, prefix)}"
            )
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}", source)
    return cls(**kwargs)


def _suggest(key: str, fields: dict[str, Any], prefix: str) -> str:
    close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.5)
    if close:
        return f"; did you mean '{prefix}{close[0]}'?"
    return f"; valid keys: {', '.join(prefix + k for k in fields)}"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    bad = OlmoError(
        f"{source}: key '{key}' expects {_type_name(tp)}, got {type(value).__name__} "
        f"{repr(value)[:60]}"
    )
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key + ".", source)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key, source)
            except OlmoError:
                continue
        raise bad
    if origin is typing.Literal:
        if value not in args:
            raise OlmoError(
                f"{source}: key '{key}' must be one of {', '.join(map(repr, args))}, got {value!r}"
            )
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad
        item = args[0] if args else Any
        return [_coerce(v, item, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is float:
        return _finite_float(value, bad, key, source)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise bad
        return str(value)
    return value


def _finite_float(value: Any, bad: OlmoError, key: str, source: str) -> float:
    # Strings too: YAML 1.1 reads "1e-3" (no dot) as one. No key has a use for nan or inf.
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise bad
    try:
        out = float(value)
    except (ValueError, OverflowError):  # OverflowError: an integer of 400 digits
        raise bad from None
    if not math.isfinite(out):
        raise OlmoError(f"{source}: key '{key}' must be a finite number, got {value!r}")
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_yaml(data: dict[str, Any], path: str | os.PathLike) -> None:
    """Atomic write: a crash never leaves half a config behind."""
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal under each field) of a dataclass."""
    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def describe(cls: type, prefix: str = "") -> list[str]:
    """One line per leaf key: `key (type, default): doc` — for `olmo train --help-config`."""
    lines: list[str] = []
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            lines.append(f"{prefix}{f.name}: {docs.get(f.name, '')}")
            lines.extend(describe(tp, f"{prefix}{f.name}."))
        else:
            default = getattr(defaults, f.name)
            lines.append(
                f"  {prefix}{f.name} ({_type_name(tp)}, default {default!r}): {docs.get(f.name, '')}"
            )
    return lines
