"""`olmo cluster up|down|status`: the local SLURM cluster's daemons, idempotence and teardown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from olmo.launch import localcluster

pytestmark = pytest.mark.slow


def pids(root: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in sorted((root / "run").glob("*.pid"))}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


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


def test_cli_up_status_down_stops_every_daemon(slurm_cluster: Path, tmp_path_factory):
    """A second, 1-node cluster on other ports: `up` prints SLURM_CONF, `down` kills every pid."""
    root = tmp_path_factory.mktemp("c2")
    ports = {
        "OLMO_SLURM_CTLD_PORT": "36817",
        "OLMO_SLURM_DBD_PORT": "36819",
        "OLMO_SLURM_DB_PORT": "36306",
        "OLMO_SLURMD_PORT0": "37000",
    }
    env = {**os.environ, **ports}
    env.pop("SLURM_CONF", None)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "olmo", "cluster", *args, "--root", str(root), "--nodes", "1"],
            capture_output=True,
            text=True,
            env=env,
        )

    up = cli("up")
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == str(root / "etc" / "slurm.conf")
    running = pids(root)
    assert len(running) == 5 and all(alive(p) for p in running.values())
    status = cli("status")
    assert status.returncode == 0 and "slurmd n1 running" in status.stdout
    assert "n1 idle" in status.stdout
    down = cli("down")
    assert down.returncode == 0, down.stderr
    assert not any(alive(p) for p in running.values()) and pids(root) == {}
    status = cli("status")
    assert status.returncode == 1 and "slurmctld stopped" in status.stdout
