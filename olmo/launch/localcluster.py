"""`olmo cluster up|down|status`: the local SLURM cluster (scripts in cluster/local/)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from olmo.errors import OlmoError
from olmo.launch.profile import cluster_dir


def default_root() -> Path:
    cache = os.environ.get("OLMO_CACHE", str(Path.home() / ".cache" / "olmo-hpc"))
    return Path(os.environ.get("OLMO_SLURM_ROOT", Path(cache) / "slurm"))


def run_script(action: str, root: Path | None, nodes: int | None, quiet: bool = False) -> str:
    """Run cluster/local/ACTION.sh; returns its stdout (stderr passes through unless quiet)."""
    script = cluster_dir() / "local" / f"{action}.sh"
    if not script.exists():
        raise OlmoError(f"{script} not found; set OLMO_HOME to the olmo-hpc checkout")
    cmd = ["bash", str(script), "--root", str(root or default_root())]
    if nodes is not None:
        cmd += ["--nodes", str(nodes)]
    proc = subprocess.run(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE if quiet else None, text=True
    )
    if proc.returncode not in (0, 1) or (action != "status" and proc.returncode != 0):
        err = (proc.stderr or "").strip().splitlines()[-1:] if quiet else []
        raise OlmoError(f"cluster {action} failed (exit {proc.returncode}) {' '.join(err)}")
    return proc.stdout


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
