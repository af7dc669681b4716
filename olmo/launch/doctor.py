"""`olmo doctor`: pre-flight check on every task of an allocation, before training starts.

Each task checks its devices, the driver/runtime versions and /dev/shm, then all tasks run an
all-reduce whose result is known exactly (a checksum) and timed (bus bandwidth). Rank 0 prints one
JSON line; any failure names the node and exits 1 so the batch script stops before training.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time

import torch
import torch.distributed as dist


def node_name() -> str:
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def local_checks(expect: int | None, kind: str | None, min_shm_gb: float) -> tuple[list[str], dict]:
    """Problems found on this task (empty = fine) and what was seen."""
    problems: list[str] = []
    accel = torch.cuda.is_available()
    runtime = torch.version.hip and "rocm" or torch.version.cuda and "cuda" or "cpu"
    count = torch.cuda.device_count() if accel else 0
    seen = {"node": node_name(), "runtime": runtime, "devices": count}
    seen["torch"] = torch.__version__
    seen["runtime_version"] = torch.version.hip or torch.version.cuda
    from olmo.envinfo import _driver_version, _nccl_version

    seen["driver"] = _driver_version() if accel else None
    seen["nccl"] = _nccl_version() if accel else None
    if kind in ("cuda", "rocm"):
        if runtime != kind:
            problems.append(f"torch is built for {runtime}, the profile expects {kind}")
        elif count == 0:
            problems.append("no device visible (check --gpus-per-node and *_VISIBLE_DEVICES)")
        elif expect and count not in (expect, 1):
            problems.append(f"{count} devices visible, expected {expect} (or 1 per task)")
    elif expect:
        per_node = int(
            os.environ.get(
                "LOCAL_WORLD_SIZE", os.environ.get("SLURM_NTASKS_PER_NODE", "1").split("(")[0]
            )
        )
        if per_node != expect:
            problems.append(f"{per_node} tasks on this node, expected {expect} (one per device)")
    shm = shutil.disk_usage("/dev/shm").free / 2**30 if os.path.isdir("/dev/shm") else 0.0
    seen["shm_free_gb"] = round(shm, 2)
    if shm < min_shm_gb:
        problems.append(f"/dev/shm has {shm:.2f} GiB free, need {min_shm_gb} (clear stale files)")
    return problems, seen


def allreduce_check(size_mb: float, device: torch.device, iters: int = 3) -> dict:
    """SUM-all-reduce of rank-dependent integers; the exact result is known, so verify it."""
    world, rank = dist.get_world_size(), dist.get_rank()
    n = max(1, int(size_mb * 2**20 / 4))
    base = torch.arange(n, dtype=torch.float32, device=device) % 251
    expected = base * world + world * (world - 1) / 2
    x = base + rank
    dist.all_reduce(x)  # warm-up (connection setup) and correctness
    ok = bool(torch.equal(x, expected))
    times = []
    for _ in range(iters):
        y = base + rank
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        dist.all_reduce(y)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    best = min(times)
    bus_gbps = 2 * (world - 1) / world * n * 4 / best / 1e9 if world > 1 else 0.0
    checksum = float(x.double().sum().item())
    return {
        "ok": ok,
        "bytes": n * 4,
        "seconds": best,
        "bus_gb_per_s": round(bus_gbps, 3),
        "checksum": checksum,
    }


def run_doctor(
    expect: int | None, min_shm_gb: float, size_mb: float, kind: str | None = None
) -> int:
    problems, seen = local_checks(expect, kind, min_shm_gb)
    if problems:  # fail fast: no collective with a broken node
        print(f"doctor: FAILED on node {seen['node']}: {'; '.join(problems)}", file=sys.stderr)
        return 1
    from olmo.distributed.env import destroy, init_distributed

    env = init_distributed("auto", timeout_s=120)
    try:
        ar = allreduce_check(size_mb, env.device)
        reports: list = [None] * env.world_size
        dist.all_gather_object(reports, {**seen, "rank": env.rank, "allreduce_ok": ar["ok"]})
    finally:
        destroy()
    bad = [r for r in reports if not r["allreduce_ok"]]
    if env.is_main:
        nodes = sorted({r["node"] for r in reports})
        print(
            json.dumps(
                {
                    "doctor": "ok" if not bad else "failed",
                    "world_size": env.world_size,
                    "nodes": nodes,
                    "devices": [r["devices"] for r in reports],
                    "runtime": seen["runtime"],
                    "runtime_version": seen["runtime_version"],
                    "driver": seen["driver"],
                    "torch": seen["torch"],
                    "shm_free_gb": min(r["shm_free_gb"] for r in reports),
                    "allreduce": ar,
                }
            )
        )
    if bad:
        names = sorted({r["node"] for r in bad})
        print(
            f"doctor: FAILED: all-reduce result wrong on node(s) {', '.join(names)}",
            file=sys.stderr,
        )
        return 1
    return 0
