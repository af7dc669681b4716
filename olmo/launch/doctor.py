"""`olmo doctor`: pre-flight check on every task of an allocation, before training starts.

Each task checks its devices, the driver/runtime versions and /dev/shm, then all tasks run an
all-reduce whose result is known exactly (a checksum), check the transport the collectives use
and time every pair of neighbouring nodes (doctor_net.py). Rank 0 prints one JSON line; a failure
is one line naming the node(s) and the cause, and every task exits 1 so the batch script stops
before training.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time

import torch
import torch.distributed as dist

from olmo.launch.doctor_net import (
    HINTS,
    pair_bandwidth,
    prepare_nccl_log,
    seen_transport,
    slow_links,
)


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
    expect: int | None,
    min_shm_gb: float,
    size_mb: float,
    kind: str | None = None,
    transport: str = "any",
    min_bus_gb_per_s: float = 0.0,
    run_dir: str | None = None,
) -> int:
    """0 when the allocation is fit to train; else 1 after one `doctor: FAILED` line, also
    booked as `doctor_failed` in RUN_DIR/logbook.jsonl when `run_dir` is given."""
    problems, seen = local_checks(expect, kind, min_shm_gb)
    if problems:  # fail fast: no collective with a broken node
        line = f"doctor: FAILED on node {seen['node']}: {'; '.join(problems)}"
        return _failed(line, run_dir, [seen["node"]])
    with tempfile.TemporaryDirectory(prefix="olmo-doctor-") as log_dir:
        log = prepare_nccl_log(transport, log_dir) if kind in ("cuda", "rocm") else None
        try:
            reports, ar, pairs = _collectives(seen, size_mb, log)
        except Exception as e:  # e.g. NCCL_NET names a plugin that did not load
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            net = os.environ.get("NCCL_NET")
            hint = f" (NCCL_NET={net!r}: {HINTS.get(transport, '')})" if net else ""
            why = f"collectives failed: {type(e).__name__}: {first}{hint}"
            return _failed(f"doctor: FAILED on node {seen['node']}: {why}", run_dir, [seen["node"]])
    failure = _verdict(reports, pairs, transport, min_bus_gb_per_s)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(_summary(reports, seen, ar, pairs, failure)))
        if failure:
            return _failed(f"doctor: FAILED: {failure}", run_dir, None)
    return 1 if failure else 0


def _failed(line: str, run_dir: str | None, nodes: list[str] | None) -> int:
    """Say why on stderr (one line) and, given a run dir, in its logbook."""
    print(line, file=sys.stderr)
    if run_dir:
        from olmo.logbook import append_event

        detail = {"message": line} | ({"nodes": nodes} if nodes else {})
        append_event(run_dir, "doctor_failed", attempt=None, detail=detail)
    return 1


def _collectives(seen: dict, size_mb: float, log: str | None) -> tuple[list, dict, list]:
    """The checksum all-reduce, each rank's transport, and the pairwise node bandwidths."""
    from olmo.distributed.env import destroy, init_distributed

    env = init_distributed("auto", timeout_s=120)
    try:
        ar = allreduce_check(size_mb, env.device)
        mine = {**seen, "rank": env.rank, "allreduce_ok": ar["ok"]}
        mine["transport"] = seen_transport(env.backend, log)
        reports: list = [None] * env.world_size
        dist.all_gather_object(reports, mine)
        pairs = pair_bandwidth([r["node"] for r in reports], size_mb, env.device)
    finally:
        destroy()
    return reports, ar, pairs


def _verdict(reports: list, pairs: list, transport: str, floor: float) -> str | None:
    """The first problem, as one line naming the node(s) and the cause; None when all is well."""
    bad = sorted({r["node"] for r in reports if not r["allreduce_ok"]})
    if bad:
        return f"all-reduce result wrong on node(s) {', '.join(bad)}"
    if transport != "any":
        off = [r for r in reports if r["transport"] != transport]
        if off:
            nodes = sorted({r["node"] for r in off})
            saw = sorted({str(r["transport"]) for r in off})
            return (
                f"node(s) {', '.join(nodes)}: collectives use {'/'.join(saw)}, the profile "
                f"expects {transport} (doctor.transport): {HINTS.get(transport, '')}"
            )
    if floor > 0 and pairs:
        slow = slow_links(pairs, floor)
        if slow:
            used = reports[0]["transport"] or "unknown transport"
            return (
                f"{slow} over {used}, below doctor.min_bus_gb_per_s={floor:g} (check the "
                "node's network, or lower the floor for this site)"
            )
    return None


def _summary(reports: list, seen: dict, ar: dict, pairs: list, failure: str | None) -> dict:
    return {
        "doctor": "failed" if failure else "ok",
        "world_size": len(reports),
        "nodes": sorted({r["node"] for r in reports}),
        "devices": [r["devices"] for r in reports],
        "runtime": seen["runtime"],
        "runtime_version": seen["runtime_version"],
        "driver": seen["driver"],
        "torch": seen["torch"],
        "shm_free_gb": min(r["shm_free_gb"] for r in reports),
        "transport": sorted({str(r["transport"]) for r in reports}),
        "allreduce": ar,
        "pairs": [{"nodes": list(p.nodes), "bus_gb_per_s": p.bus_gb_per_s} for p in pairs],
    }
