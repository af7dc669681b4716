"""Checks of user inputs shared by the subcommands: argument types, output paths, JSON records.

Each failure is one OlmoError (or argparse usage error) line naming the argument, file or key,
so `olmo` exits 2 before doing any work, and never leaves half an output behind.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from olmo.errors import OlmoError

NUMBER = (int, float)


def at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= `minimum` (argparse names the option in its error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def finite_float(minimum: float, inclusive: bool) -> Callable[[str], float]:
    """argparse type: a finite float > `minimum` (>= when `inclusive`)."""
    op = ">=" if inclusive else ">"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(
                f"must be a finite number {op} {minimum:g}, got {text}"
            )
        return value

    return parse


positive_float = finite_float(0.0, inclusive=False)
nonnegative_float = finite_float(0.0, inclusive=True)


def check_output(
    path: str | os.PathLike, what: str, is_dir: bool = False, suffix: str | None = None
) -> Path:
    """Refuse an output path that cannot be created, before any work is done: an existing path
    of the other kind, a nearest existing ancestor that is not a writable directory, or a file
    name without `suffix` (the format it is written in)."""
    p = Path(path)
    if suffix is not None and p.suffix.lower() != suffix:
        raise OlmoError(f"{p}: {what} writes a {suffix} file; give a name ending in {suffix}")
    kind = "directory" if is_dir else "file"
    if p.exists() and p.is_dir() != is_dir:
        other = "a directory" if p.is_dir() else "a file"
        raise OlmoError(f"{p}: {what} must be a {kind} but this is {other}; choose another path")
    parent = next((a for a in p.parents if a.exists()), Path("."))
    if not parent.is_dir():
        raise OlmoError(f"{p}: cannot create {what} under {parent}, a file; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OlmoError(f"{p}: cannot create {what}: {parent} is not writable; choose another path")
    return p


def _type_names(types: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true/false"}
    names |= {dict: "an object", list: "a list", type(None): "null"}
    if float in types:  # "a number" covers the integers
        types = tuple(t for t in types if t is not int)
    return " or ".join(names.get(t, t.__name__) for t in types)


def _has_type(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # JSON true is not a number
        return bool in types
    return isinstance(value, types)


def check_record(
    data: Any,
    where: str,
    fields: Mapping[str, type | tuple[type, ...]],
    fix: str,
    required: tuple[str, ...] = (),
) -> dict[str, Any]:
    """`data` as a JSON object whose `fields` present have their types and `required` exist.

    Readers of the kit's own JSON files call it before any arithmetic, so a hand-edited or
    foreign file is one line naming `where` (file[:line]) and the key, plus `fix`.
    """
    if not isinstance(data, dict):
        got = _type_names((type(data),))
        raise OlmoError(f"{where}: expected a JSON object, got {got}; {fix}")
    for key in required:
        if key not in data:
            raise OlmoError(f"{where}: no '{key}'; {fix}")
    for key, types in fields.items():
        types = types if isinstance(types, tuple) else (types,)
        if key in data and not _has_type(data[key], types):
            shown = repr(data[key])[:40]
            raise OlmoError(f"{where}: '{key}' must be {_type_names(types)}, got {shown}; {fix}")
    return data


def read_json_lines(path: Path, fix: str) -> tuple[list[tuple[int, Any]], int]:
    """(line number, value) of each JSON line of `path` (blank lines skipped), and how many
    lines were not JSON: a last line still being written or cut short by a kill. A line that
    is JSON but unusable (nested too deeply, an integer of > 4300 digits) is an OlmoError."""
    out, cut = [], 0
    text = path.read_text(encoding="utf-8", errors="replace")
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((n, json.loads(line)))
        except json.JSONDecodeError:
            cut += 1
        except (ValueError, RecursionError) as e:
            raise OlmoError(f"{path}:{n}: unusable JSON ({e}); {fix}") from None
    return out, cut
