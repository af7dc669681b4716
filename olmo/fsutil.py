"""Atomic writes: a crash or kill never leaves half a file or directory behind (written under a
temp name beside the target, then renamed: one rename on one file system is atomic)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())  # durable before it becomes visible (markers commit checkpoints)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def atomic_write_json(path: str | os.PathLike, data: Any, indent: int | None = 1) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=indent, sort_keys=True) + "\n")


def _tag() -> str:
    """Host and pid: temp names of concurrent writers (also on other nodes) never collide."""
    return f"{socket.gethostname()}-{os.getpid()}"


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temp dir beside `out`; on success it becomes `out`, on any error it is
    removed. An existing empty `out` is replaced; a non-empty one only with `overwrite` (moved
    aside first, deleted after the rename), else FileExistsError."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp-{_tag()}")
    shutil.rmtree(tmp, ignore_errors=True)  # a crashed earlier run of this pid
    tmp.mkdir(parents=True)
    try:
        yield tmp
        old = out.with_name(f".{out.name}.old-{_tag()}")
        if overwrite and out.is_dir() and any(out.iterdir()):
            os.replace(out, old)
        try:
            os.replace(tmp, out)  # onto a missing or empty dir only
        except OSError:
            raise FileExistsError(f"{out}: exists and is not empty") from None
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `out`; what the block wrote there becomes `out` on success."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp-{_tag()}")
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
