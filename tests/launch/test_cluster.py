"""`olmo cluster up|down|status`: the local SLURM cluster's daemons, idempotence and teardown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from olmo.launch import localcluster

pytestmark = pytest.mark.slow


def pids(root: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in sorted((root / "run").glob("*.pid"))}


def test_up_is_idempotent_with_accounting(slurm_cluster: Path):
    before = pids(slurm_cluster)
    assert set(before) == {
        "munged",
        "mariadb",
        "slurmdbd",
        "slurmctld",
        "slurmd-n1",
        "slurmd-n2",
        "slurmd-n3",
    }
    conf = localcluster.up(slurm_cluster, 3, quiet=True)
    assert conf == slurm_cluster / "etc" / "slurm.conf" and pids(slurm_cluster) == before
    nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True)
    assert nodes.stdout.split() == ["n1", "idle", "n2", "idle", "n3", "idle"]
    clusters = subprocess.run(
        ["sacctmgr", "-n", "-P", "list", "cluster", "format=cluster"],
        capture_output=True,
        text=True,
    )
    assert "olmolocal" in clusters.stdout.split()


def test_cli_status(slurm_cluster: Path):
    """`olmo cluster status` on the running cluster; `down` is checked by the session fixture's
    teardown (every pid it started must be gone)."""
    proc = subprocess.run(
        [sys.executable, "-m", "olmo", "cluster", "status", "--root", str(slurm_cluster)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for line in ("slurmctld running", "slurmdbd running", "mariadb running", "slurmd n3 running"):
        assert line in proc.stdout
    assert "n2 idle" in proc.stdout and f"SLURM_CONF={slurm_cluster}/etc/slurm.conf" in proc.stdout
