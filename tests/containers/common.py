"""Paths and helpers shared by the container tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS = ROOT / "containers"


def versions() -> dict[str, str]:
    """containers/versions.env as a dict (the same KEY=VALUE lines build.sh reads)."""
    out = {}
    for line in (CONTAINERS / "versions.env").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isupper() and not key.startswith("#"):
            out[key] = value
    return out


def sh(*cmd: str | Path, env: dict | None = None, check: bool = True, **kw):
    """Run a command, capture text output; on failure (when check) raise with its output."""
    proc = subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        **kw,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def head_commit() -> str:
    return sh("git", "-C", ROOT, "rev-parse", "HEAD").stdout.strip()
