"""Where checkpoints live and whether their files are intact (no torch needed).

`RUN/checkpoints/stepN/` is committed when it holds COMMITTED.json (written last, with the crc32
and size of every other file). `.stepN.tmp` is a save in progress or one a kill cut short;
`.stepN.corrupt` is a committed checkpoint whose files failed verification, moved aside at resume.
"""

from __future__ import annotations

import json
import os
import re
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from olmo.errors import OlmoError
from olmo.fsutil import atomic_write_json

MARKER = "COMMITTED.json"
CONFIG = "config.yaml"
TRAINER_STATE = "trainer_state.json"
DCP_METADATA = ".metadata"
STEP_RE = re.compile(r"^step(\d+)$")
TMP_RE = re.compile(r"^\.step(\d+)\.tmp$")
CORRUPT_RE = re.compile(r"^\.step(\d+)\.corrupt$")


def read_marker(ckpt_dir: str | os.PathLike) -> dict[str, Any]:
    """The marker, checked against the shape _commit writes (the loaders index into it)."""
    path = Path(ckpt_dir) / MARKER
    if not path.is_file():
        raise OlmoError(
            f"{ckpt_dir}: not a committed checkpoint (no {MARKER}); it was never finished"
        )
    try:
        data = json.loads(path.read_text())
    except (ValueError, RecursionError, UnicodeDecodeError):  # ValueError: JSON, huge ints
        data, problem = None, "not JSON"
    else:
        problem = _marker_problem(data)
    if problem:
        raise OlmoError(f"{path}: corrupt marker file ({problem}); use an older checkpoint")
    return data


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    """isinstance, except that a bool is no number (JSON true is not a step)."""
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def _count(value: Any) -> bool:
    return _is(value, int) and 0 <= value < 2**53


def _number(value: Any) -> bool:
    return _is(value, (int, float)) and 0 <= value < 2**53  # NaN and inf fail the comparison


# Keys the loaders and `info` read, each with the shape _commit writes; other keys are ignored.
_MARKER_CHECKS: dict[str, Callable[[Any], bool]] = {
    "step": _count,
    "world_size": lambda v: _count(v) and v >= 1,
    "time": _number,
    "blocking_s": _number,
    "async": lambda v: isinstance(v, bool),
    "contents": lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v),
    "files": lambda v: isinstance(v, dict),
}


def _marker_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    for key, ok in _MARKER_CHECKS.items():
        if key in data and not ok(data[key]):
            return f"bad '{key}'"
    for name, entry in data.get("files", {}).items():
        if not plain_name(name):
            return f"file {name!r} is not a plain file name"
        if not isinstance(entry, dict) or not all(_count(entry.get(k)) for k in ("crc32", "size")):
            return f"file {name!r} lacks an integer 'crc32' or 'size'"
    return None


def plain_name(name: str) -> bool:
    """A file directly inside the checkpoint dir (no separators, not '.' or '..')."""
    return name not in ("", ".", "..") and not any(c in name for c in "/\\\0")


def marker_info(
    tmp: Path, step: int, world_size: int, contents: list[str], **extra: Any
) -> dict[str, Any]:
    """The one COMMITTED.json builder: step, world size, time, what it holds, and the crc32 and
    size of every file written so far into `tmp` (call it last, just before write_marker)."""
    names = sorted(p.name for p in tmp.iterdir() if p.is_file())
    info = {"step": step, "world_size": world_size, "time": time.time(), "contents": contents}
    return {**info, **extra, "files": file_checksums(tmp, names)}


def step_dir(root: Path, step: int) -> Path:
    """Where the committed checkpoint of `step` lives (the one place the name is spelled)."""
    return root / f"step{step}"


def tmp_step_dir(root: Path, step: int) -> Path:
    """Where the checkpoint of `step` is written before its commit."""
    return root / f".step{step}.tmp"


def corrupt_dir(ckpt: Path) -> Path:
    """Where a checkpoint that failed verification is moved aside (`stepN` → `.stepN.corrupt`)."""
    return ckpt.with_name(f".{ckpt.name}.corrupt")


def write_marker(ckpt_dir: Path, info: dict[str, Any]) -> None:
    atomic_write_json(Path(ckpt_dir) / MARKER, info)


def file_checksums(root: Path, names: list[str]) -> dict[str, dict[str, int]]:
    """crc32 + size per file: fast enough for multi-GB shards, catches truncation and bit rot."""
    out = {}
    for name in names:
        crc = 0
        with open(root / name, "rb") as f:
            while chunk := f.read(1 << 23):
                crc = zlib.crc32(chunk, crc)
        out[name] = {"crc32": crc, "size": (root / name).stat().st_size}
    return out


def marked_files(ckpt: Path) -> list[str]:
    """Names of the files the marker vouches for (raises OlmoError for a missing/bad marker)."""
    return sorted(read_marker(ckpt).get("files", {}))


def verify_files(ckpt: Path, names: list[str] | None = None) -> list[str]:
    """Every problem with `names` (default: all files in the marker), one line each; [] = intact."""
    try:
        files = read_marker(ckpt).get("files", {})
    except OlmoError as e:
        return [str(e)]
    if not files:
        return [f"{ckpt / MARKER}: lists no files (not written by this version?)"]
    problems = []
    for name in sorted(files) if names is None else names:
        want, p = files[name], ckpt / name
        if not p.is_file():
            problems.append(f"{p}: missing")
        elif p.stat().st_size != want["size"]:
            problems.append(f"{p}: truncated ({p.stat().st_size} of {want['size']} bytes)")
        elif file_checksums(ckpt, [name])[name]["crc32"] != want["crc32"]:
            problems.append(f"{p}: checksum mismatch (corrupt)")
    return problems


def verify(ckpt: Path) -> str | None:
    """None if every file matches its recorded size and checksum, else the first problem."""
    problems = verify_files(Path(ckpt))
    return problems[0] if problems else None


def _scan(root: Path, pattern: re.Pattern) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := pattern.match(p.name))]
    return sorted(((s, p) for s, p in found if p.is_dir()), reverse=True)


def committed_steps(root: Path) -> list[tuple[int, Path]]:
    """Committed checkpoints under `root`, newest first."""
    return [(s, p) for s, p in _scan(Path(root), STEP_RE) if (p / MARKER).is_file()]


def unfinished(root: Path) -> list[tuple[int, Path]]:
    """`stepN` dirs without a marker and `.stepN.tmp` dirs (saves that never committed)."""
    root = Path(root)
    bare = [(s, p) for s, p in _scan(root, STEP_RE) if not (p / MARKER).is_file()]
    return sorted(bare + _scan(root, TMP_RE), reverse=True)


def set_aside(root: Path) -> list[tuple[int, Path]]:
    """Checkpoints moved aside at resume because they failed verification."""
    return _scan(Path(root), CORRUPT_RE)


def checkpoints_root(path: Path) -> Path | None:
    """The directory holding `stepN/` for a run dir or a checkpoints dir; None otherwise."""
    if (path / "checkpoints").is_dir():
        return path / "checkpoints"
    if _scan(path, STEP_RE) or _scan(path, TMP_RE) or _scan(path, CORRUPT_RE):
        return path
    return None


def is_checkpoint_dir(path: Path) -> bool:
    return (
        (path / MARKER).is_file()
        or (path / DCP_METADATA).is_file()
        or bool(STEP_RE.match(path.name) or TMP_RE.match(path.name))
    )


def resolve_checkpoint(path: str | os.PathLike, what: str = "checkpoint") -> Path:
    """A checkpoint dir as given, or the newest committed one of a run/checkpoints dir."""
    p = Path(path)
    if not p.exists():
        raise OlmoError(f"{what} {p}: not found; give a run dir or a checkpoint dir (stepN)")
    if p.is_dir() and is_checkpoint_dir(p):
        return p.resolve() if p.is_symlink() else p
    root = checkpoints_root(p) if p.is_dir() else None
    if root is None:
        raise OlmoError(f"{what} {p}: neither a checkpoint dir nor a run dir with checkpoints/")
    steps = committed_steps(root)
    if not steps:
        raise OlmoError(f"{what} {p}: no committed checkpoint under {root}")
    return steps[0][1]
