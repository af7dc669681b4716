"""`olmo cluster up|down|status`: the local SLURM cluster (scripts in cluster/local/)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from olmo.errors import OlmoError
from olmo.launch.profile import cluster_dir


def default_root() -> Path:
    """`$OLMO_SLURM_ROOT`, else `$OLMO_CACHE/slurm`, else /var/lib/olmo-hpc/slurm (as common.sh:
    the daemon users must be able to enter it, which they cannot below root's home)."""
    if os.environ.get("OLMO_SLURM_ROOT"):
        return Path(os.environ["OLMO_SLURM_ROOT"])
    if os.environ.get("OLMO_CACHE"):
        return Path(os.environ["OLMO_CACHE"]) / "slurm"
    return Path("/var/lib/olmo-hpc/slurm")


def run_script(action: str, root: Path | None, nodes: int | None, quiet: bool = False) -> str:
    """Run cluster/local/ACTION.sh; returns its stdout. Its progress notes pass through to stderr
    unless quiet; its `error: ...` line becomes the OlmoError (the CLI prints just that line)."""
    script = cluster_dir() / "local" / f"{action}.sh"
    if not script.exists():
        raise OlmoError(f"{script} not found; set OLMO_HOME to the olmo-hpc checkout")
    cmd = ["bash", str(script), "--root", str(root or default_root())]
    if nodes is not None:
        cmd += ["--nodes", str(nodes)]
    errors = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        for line in proc.stderr:
            if line.startswith("error: "):
                errors.append(line[len("error: ") :].strip())
            elif not quiet:
                print(line, end="", file=sys.stderr, flush=True)
        out = proc.stdout.read()
    if proc.returncode not in (0, 1) or (action != "status" and proc.returncode != 0):
        raise OlmoError(
            errors[-1] if errors else f"cluster {action} failed (exit {proc.returncode})"
        )
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    return out


def up(root: Path | None = None, nodes: int = 3, quiet: bool = False) -> Path:
    """Bring the cluster up (idempotent); returns the SLURM_CONF path."""
    out = run_script("up", root, nodes, quiet)
    return Path(out.strip().splitlines()[-1])


def down(root: Path | None = None, quiet: bool = False) -> None:
    run_script("down", root, None, quiet)


def local_slurm_conf() -> Path | None:
    """SLURM_CONF of the local cluster: the environment's, else the default root's if it exists."""
    if os.environ.get("SLURM_CONF"):
        return Path(os.environ["SLURM_CONF"])
    conf = default_root() / "etc" / "slurm.conf"
    return conf if conf.exists() else None
