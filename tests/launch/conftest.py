"""One real local SLURM cluster (munge, MariaDB + slurmdbd, slurmctld, 3 slurmd) for the session."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from olmo.launch import localcluster

# Ports apart from a user's own `olmo cluster up` (defaults 16817, ...), so both can run.
TEST_PORTS = {
    "OLMO_SLURM_CTLD_PORT": "26817",
    "OLMO_SLURM_DBD_PORT": "26819",
    "OLMO_SLURM_DB_PORT": "26306",
    "OLMO_SLURMD_PORT0": "27000",
}
NODES = 3


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the local SLURM cluster needs root (it starts slurmd as root)"
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        return "SLURM is not installed and apt-get is not available to install it"
    return None


@pytest.fixture(scope="session")
def slurm_cluster():
    """Bring the cluster up once; yields its root; tears every daemon down at the end (and removes
    the root, unless bringing it up failed: its logs tell why)."""
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    # Not under pytest's basetemp: its /tmp/pytest-of-root (0700) keeps the daemon users out.
    root = Path(tempfile.mkdtemp(prefix="olmo-slurm-", dir="/tmp"))
    saved = {k: os.environ.get(k) for k in [*TEST_PORTS, "SLURM_CONF"]}
    os.environ.update(TEST_PORTS)
    started_ok = False
    try:
        conf = localcluster.up(root, NODES, quiet=True)
        os.environ["SLURM_CONF"] = str(conf)
        started_ok = True
        yield root
    finally:
        started = [int(p.read_text()) for p in root.rglob("*.pid")]
        localcluster.down(root, quiet=True)
        left = [p for p in started if _alive(p)]
        assert not left, f"olmo cluster down left daemons running: pids {left}"
        if started_ok:
            shutil.rmtree(root, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def healthy_cluster(slurm_cluster: Path) -> Path:
    """The cluster with every node back up (an earlier test may have crashed one)."""
    localcluster.up(slurm_cluster, NODES, quiet=True)
    return slurm_cluster


def squeue_states(job_id: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    return out.stdout.strip()


def _gone(job_id: str) -> bool:
    """squeue answered and no longer lists the job (an squeue that failed, e.g. slurmctld busy
    under load, prints nothing too: that is not "gone")."""
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    answered = out.returncode == 0 or "Invalid job id" in out.stderr
    return answered and not out.stdout.strip()


def wait_gone(job_id: str, timeout: float) -> None:
    """Wait until the job has left squeue (finished for good, not just between attempts)."""
    end = time.time() + timeout
    while time.time() < end:
        if _gone(job_id):
            return
        time.sleep(1)
    raise AssertionError(
        f"job {job_id} still in squeue after {timeout:.0f}s: {squeue_states(job_id)}"
    )


def sacct_state(job_id: str, settle_s: float = 30.0) -> str:
    """The job's final accounting state; the accounting record may trail squeue by a moment, so
    a state that is not final yet (or none) is asked again for up to `settle_s`."""
    end = time.time() + settle_s
    while True:
        out = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State"],
            capture_output=True,
            text=True,
        )
        state = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
        if state not in ("", "PENDING", "RUNNING", "REQUEUED", "COMPLETING") or time.time() > end:
            return state
        time.sleep(0.5)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(kv.split("=", 1) for kv in raw.decode(errors="replace").split("\0") if "=" in kv)


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def job_processes(job_id: str) -> dict[int, dict[str, str]]:
    """Every process of the job on this machine (all fake nodes), with its environment."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            env = _environ(int(d.name))
            if env.get("SLURM_JOB_ID") == job_id:
                out[int(d.name)] = env
    return out


def rank0_node(job_id: str) -> str | None:
    for env in job_processes(job_id).values():
        if env.get("SLURM_PROCID") == "0" and env.get("SLURM_STEP_ID", "batch") not in (
            "batch",
            "4294967291",
        ):
            return env.get("SLURMD_NODENAME")
    return None


def crash_node(root: Path, node: str, job_id: str) -> list[int]:
    """Simulate a node crash: SIGKILL its slurmd, the job's slurmstepd(s) there and their children."""
    procs = [p for p, env in job_processes(job_id).items() if env.get("SLURMD_NODENAME") == node]
    stepds = {_ppid(p) for p in procs}
    victims = set(procs) | {p for p in stepds if _comm(p) == "slurmstepd"}
    victims.add(int((root / "run" / f"slurmd-{node}.pid").read_text()))
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    return sorted(victims)
