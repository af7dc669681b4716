"""`olmo doctor`'s verdicts: transport from the collective library's log, slow nodes and links."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from olmo.launch.doctor import _verdict
from olmo.launch.doctor_net import PairResult, leaders, slow_links, transport_from_log
from olmo.logbook import read_events

# INFO lines as NCCL/RCCL print them when they pick their network.
OFI_LOG = """nid005123:81:81 [0] NCCL INFO Bootstrap : Using hsn0:10.253.6.1<0>
nid005123:81:81 [0] NCCL INFO NET/OFI Using aws-ofi-rccl 1.4.0
nid005123:81:81 [0] NCCL INFO NET/OFI Selected Provider is cxi (found 4 nics)
nid005123:81:81 [0] NCCL INFO Using network AWS Libfabric
"""
IB_LOG = """gpu07:12:12 [0] NCCL INFO NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_1:1/IB ; OOB ib0:10.1.0.7<0>
gpu07:12:12 [0] NCCL INFO Using network IB
"""
SOCKET_LOG = """nid005123:81:81 [0] NCCL INFO NET/Plugin: Could not find: libnccl-net.so.
nid005123:81:81 [0] NCCL INFO NET/Socket : Using [0]hsn0:10.253.6.1<0>
nid005123:81:81 [0] NCCL INFO Using network Socket
"""


@pytest.mark.parametrize(
    ("log", "seen"), [(OFI_LOG, "ofi"), (IB_LOG, "ib"), (SOCKET_LOG, "sockets"), ("", None)]
)
def test_transport_read_from_the_library_log(log: str, seen: str | None):
    assert transport_from_log(log) == seen


def report(node: str, transport: str = "sockets", ok: bool = True) -> dict:
    return {"node": node, "transport": transport, "allreduce_ok": ok}


def test_verdict_names_the_node_and_the_transport_it_saw():
    reports = [report("n1", "ofi"), report("n1", "ofi"), report("n2", "sockets")]
    line = _verdict(reports, [], "ofi", 0.0)
    assert line.startswith("node(s) n2: collectives use sockets, the profile expects ofi")
    assert "plugin did not load" in line
    assert _verdict(reports, [], "any", 0.0) is None
    assert "result wrong on node(s) n2" in _verdict(
        [report("n1"), report("n2", ok=False)], [], "any", 0
    )


def test_slow_node_or_link_is_named():
    ok, slow = 20.0, 1.0
    two = [PairResult(("n1", "n2"), slow)]
    assert slow_links(two, 5.0) == "slow link between nodes n1 and n2: bus bandwidth 1 GB/s"
    assert slow_links([PairResult(("n1", "n2"), ok)], 5.0) is None
    # A ring of 4: n3 is in both slow pairs → the node is named, not a link.
    ring = [
        PairResult(("n1", "n2"), ok),
        PairResult(("n2", "n3"), slow),
        PairResult(("n3", "n4"), slow),
        PairResult(("n4", "n1"), ok),
    ]
    assert slow_links(ring, 5.0).startswith("slow node(s) n3: bus bandwidth GB/s n2-n3 1")
    one = [
        PairResult(("n1", "n2"), ok),
        PairResult(("n2", "n3"), slow),
        PairResult(("n3", "n1"), ok),
    ]
    assert slow_links(one, 5.0).startswith("slow link between nodes n2 and n3")
    line = _verdict([report("n1"), report("n2")], two, "sockets", 5.0)
    assert "over sockets, below doctor.min_bus_gb_per_s=5" in line
    assert leaders(["n1", "n1", "n2", "n2", "n3"]) == [0, 2, 4]


def test_doctor_cli_one_task_fails_on_the_wrong_transport(tmp_path: Path):
    """One process (gloo, TCP sockets) against a profile that expects InfiniBand; the failure
    is also booked in the run's logbook (`doctor_failed`), a pass is not."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASTER_", "RANK", "WORLD"))}
    cmd = [sys.executable, "-m", "olmo", "doctor", f"--run-dir={tmp_path}", "--size-mb=1"]
    proc = subprocess.run([*cmd, "--transport=ib"], capture_output=True, text=True, env=env)
    assert proc.returncode == 1, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.startswith("doctor:")]
    assert len(lines) == 1 and "collectives use sockets, the profile expects ib" in lines[0]
    ok = subprocess.run([*cmd, "--transport=sockets"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and '"doctor": "ok"' in ok.stdout, ok.stderr
    (event,) = read_events(tmp_path)
    assert event["event"] == "doctor_failed" and event["detail"] == {"message": lines[0]}


def test_one_slurm_task_with_master_addr_and_no_port_initialises():
    """A one-task SLURM job (e.g. --nodes 1 on the local profile, which sets MASTER_ADDR)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASTER_", "RANK", "WORLD"))}
    env.update(SLURM_PROCID="0", SLURM_NTASKS="1", SLURM_JOB_ID="99", MASTER_ADDR="127.0.0.1")
    code = "from olmo.distributed.env import init_distributed as i; print(i().world_size)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "1", proc.stderr[-2000:]
