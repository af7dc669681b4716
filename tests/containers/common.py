"""Paths and helpers shared by the container tests."""

from __future__ import annotations

import os
import re
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


def final_stage(vendor: str) -> str:
    """The last build stage of containers/Dockerfile.VENDOR (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", (CONTAINERS / f"Dockerfile.{vendor}").read_text())
    return re.split(r"(?m)^FROM\s", text)[-1]


def image_env(vendor: str, base: dict[str, str]) -> dict[str, str]:
    """The final stage's ENV lines over the base image's environment, expanded by bash as Docker
    does (`${VAR:+...}` forms; build ARGs are empty here)."""
    exports = [f"export {m}" for m in re.findall(r"(?m)^ENV\s+(.+)$", final_stage(vendor))]
    script = "\n".join([*exports, "env -0"])
    out = subprocess.run(
        ["env", "-i", *(f"{k}={v}" for k, v in base.items()), "bash", "-c", script],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    env = dict(kv.split("=", 1) for kv in out.split("\0") if "=" in kv)
    for k in ("PWD", "SHLVL", "_"):
        env.pop(k, None)
    return env
