"""The network half of `olmo doctor`: which transport the collectives use, and how fast each link is.

One collective across the allocation cannot say which node is slow, so bandwidth is measured
pairwise between neighbouring nodes (their first ranks, node i with node i+1, one pair at a time):
a node whose every pair is below the floor is named; with two nodes, the link between them is.

The transport is read from what the collective library itself logs: NCCL/RCCL print
`NET/OFI` (the aws-ofi plugin), `NET/IB` or `NET/Socket` at INFO level when they pick their
network; gloo, the CPU backend, always uses TCP sockets.
"""

from __future__ import annotations

import glob
import os
import re
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

# Patterns in NCCL/RCCL INFO logs, in the order they are tried (the plugin line first: with
# the aws-ofi plugin the log also mentions sockets for bootstrap).
_TRANSPORT_LOG = (
    ("ofi", re.compile(r"NET/OFI|Using network AWS Libfabric|Using network Libfabric")),
    ("ib", re.compile(r"NET/IB\b|Using network IB")),
    ("sockets", re.compile(r"NET/Socket|Using network Socket")),
)

HINTS = {
    "ofi": "the aws-ofi plugin did not load: the image's plugin dir must be on LD_LIBRARY_PATH "
    "and the host's libfabric bound in (container.host_libs, container.binds)",
    "ib": "NCCL is not using InfiniBand: the image needs rdma-core/libibverbs, the node its "
    "HCAs (NCCL_IB_HCA)",
    "sockets": "collectives are not on TCP sockets",
}


def transport_from_log(text: str) -> str | None:
    """The network an NCCL/RCCL INFO log says it uses (None when it does not say)."""
    for name, pattern in _TRANSPORT_LOG:
        if pattern.search(text):
            return name
    return None


def prepare_nccl_log(transport: str, log_dir: str) -> str | None:
    """Before the process group exists: make NCCL/RCCL log its network choice to a private file
    (and fail instead of falling back, via NCCL_NET). Returns the file glob, None if unset."""
    from olmo.launch.command import NCCL_NET

    if transport in NCCL_NET:
        os.environ.setdefault("NCCL_NET", NCCL_NET[transport])
    if "NCCL_DEBUG_FILE" in os.environ:  # the user's own log: leave it alone, check nothing
        return None
    os.environ.setdefault("NCCL_DEBUG", "INFO")
    os.environ.setdefault("NCCL_DEBUG_SUBSYS", "INIT,NET")
    os.environ["NCCL_DEBUG_FILE"] = os.path.join(log_dir, "nccl.%h.%p.log")
    return os.path.join(log_dir, "nccl.*.log")


def seen_transport(backend: str, log_glob: str | None) -> str | None:
    """The transport this rank's collectives used (after at least one collective ran)."""
    if backend == "gloo":
        return "sockets"
    if not log_glob:
        return None
    text = ""
    for path in glob.glob(log_glob):
        with open(path, errors="replace") as f:
            text += f.read()
    return transport_from_log(text)


@dataclass
class PairResult:
    nodes: tuple[str, str]
    bus_gb_per_s: float


def leaders(nodes_by_rank: list[str]) -> list[int]:
    """First rank of every node, in node order of first appearance."""
    first: dict[str, int] = {}
    for rank, node in enumerate(nodes_by_rank):
        first.setdefault(node, rank)
    return list(first.values())


def pair_bandwidth(
    nodes_by_rank: list[str], size_mb: float, device: torch.device, iters: int = 3
) -> list[PairResult]:
    """Bus bandwidth of each neighbouring pair of nodes, measured one pair at a time (every rank
    calls this: group creation and the barriers between pairs are collective)."""
    heads = leaders(nodes_by_rank)
    if len(heads) < 2:
        return []
    pairs = [(heads[i], heads[(i + 1) % len(heads)]) for i in range(len(heads))]
    pairs = pairs[:1] if len(heads) == 2 else pairs
    groups = [dist.new_group(list(p)) for p in pairs]
    rank = dist.get_rank()
    out: list[PairResult] = []
    n = max(1, int(size_mb * 2**20 / 4))
    for (a, b), group in zip(pairs, groups, strict=True):
        took = torch.zeros(1, dtype=torch.float64)
        if rank in (a, b):
            took[0] = _time_allreduce(n, device, group, iters)
        dist.all_reduce(took, op=dist.ReduceOp.MAX)  # everyone learns the pair's time
        bus = n * 4 / float(took[0]) / 1e9  # 2 ranks: bus bandwidth = bytes / time
        out.append(PairResult((nodes_by_rank[a], nodes_by_rank[b]), round(bus, 3)))
    return out


def _time_allreduce(n: int, device: torch.device, group, iters: int) -> float:
    x = torch.ones(n, dtype=torch.float32, device=device)
    dist.all_reduce(x, group=group)  # connection set-up, not timed
    best = float("inf")
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        dist.all_reduce(x, group=group)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def slow_links(pairs: list[PairResult], floor: float) -> str | None:
    """One line naming the slow node(s) or link, None when every pair meets the floor."""
    slow = [p for p in pairs if p.bus_gb_per_s < floor]
    if not slow:
        return None
    worst = min(slow, key=lambda p: p.bus_gb_per_s)
    if len(pairs) > 1:
        # A node is to blame when both of its pairs are slow; else name the link.
        count: dict[str, int] = {}
        for p in slow:
            for node in p.nodes:
                count[node] = count.get(node, 0) + 1
        bad = sorted(n for n, c in count.items() if c >= 2)
        if bad:
            rates = ", ".join(f"{'-'.join(p.nodes)} {p.bus_gb_per_s:g}" for p in slow)
            return f"slow node(s) {', '.join(bad)}: bus bandwidth GB/s {rates}"
    a, b = worst.nodes
    return f"slow link between nodes {a} and {b}: bus bandwidth {worst.bus_gb_per_s:g} GB/s"
