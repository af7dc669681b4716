"""`olmo cluster up|down|status`: the local SLURM cluster's daemons, their users, idempotence,
teardown, and the refusals of a --root that others could change."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from olmo.cli import main
from olmo.launch import localcluster

DAEMON_USERS = {
    "munged": "munge",
    "mariadb": "mysql",
    "slurmdbd": "slurm",
    "slurmctld": "slurm",
    "slurmd-n1": "root",
    "slurmd-n2": "root",
    "slurmd-n3": "root",
}


def pids(root: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in sorted(root.rglob("*.pid"))}


def owner_mode(path: Path) -> tuple[str, int]:
    st = path.stat()
    return pwd.getpwuid(st.st_uid).pw_name, st.st_mode & 0o7777


@pytest.mark.slow
def test_up_is_idempotent_with_accounting(slurm_cluster: Path):
    before = pids(slurm_cluster)
    assert set(before) == set(DAEMON_USERS)
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


@pytest.mark.slow
def test_daemon_users_and_secret_modes(slurm_cluster: Path):
    """Only slurmd runs as root; every secret is private to the daemon that reads it."""
    for name, pid in pids(slurm_cluster).items():
        status = Path(f"/proc/{pid}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        want = pwd.getpwnam(DAEMON_USERS[name]).pw_uid
        assert set(map(int, uids)) == {want}, f"{name} (pid {pid}) runs as uids {uids}"
    assert owner_mode(slurm_cluster) == ("root", 0o711)
    assert owner_mode(slurm_cluster / "etc" / "slurmdbd.conf") == ("slurm", 0o600)
    assert owner_mode(slurm_cluster / "munge" / "munge.key") == ("munge", 0o600)
    assert owner_mode(slurm_cluster / "slurm" / "state") == ("slurm", 0o700)
    assert owner_mode(slurm_cluster / "db") == ("mysql", 0o700)
    # The database password is made per start, not a fixed word.
    dbd = (slurm_cluster / "etc" / "slurmdbd.conf").read_text()
    password = next(line for line in dbd.splitlines() if line.startswith("StoragePass="))
    assert len(password.split("=", 1)[1]) == 32


@pytest.mark.slow
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


def _user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pytest.skip(f"no user {name} on this machine")


def _world_writable(root: Path) -> str:
    root.chmod(0o777)
    return f"{root} is group/world-writable (mode 777)"


def _foreign_owner(root: Path) -> str:
    os.chown(root, _user("nobody").pw_uid, -1)
    return f"{root} is owned by nobody, not root"


def _readable_munge_key(root: Path) -> str:
    munge = _user("munge")
    key = root / "munge" / "munge.key"
    key.parent.mkdir(mode=0o755)
    key.write_bytes(os.urandom(128))
    key.chmod(0o644)
    for path in (key.parent, key):
        os.chown(path, munge.pw_uid, munge.pw_gid)
    return f"munge key {key} is owned by munge with mode 644; it must be munge's with mode 600"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (to give files to other users)")
@pytest.mark.parametrize("make_bad", [_world_writable, _foreign_owner, _readable_munge_key])
def test_up_refuses_a_root_others_could_change(make_bad, capsys):
    """One line, exit 2, nothing created or started (the checks run before anything else)."""
    root = Path(tempfile.mkdtemp(prefix="olmo-refuse-", dir="/tmp"))
    try:
        message = make_bad(root)
        before = sorted(root.rglob("*"))
        code = main(["cluster", "up", "--root", str(root)])
        out, err = capsys.readouterr()
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert err.startswith(f"error: {message}"), err
        assert sorted(root.rglob("*")) == before
    finally:
        shutil.rmtree(root)
