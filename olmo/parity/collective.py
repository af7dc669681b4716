"""A deterministic all-reduce checksum: catches a rank that sends, sums or receives wrong data.

Every rank contributes known integers (exact in fp32 below 2**24, so any summation order gives
the same bits) in two parts of one tensor:

- a shared part that all ranks add into: base·world + world(world−1)/2, known in closed form, so
  a node whose reduction arithmetic is wrong shows up as a wrong sum;
- a small part per rank that only that rank fills: after the SUM, part r must equal rank r's
  pattern, so a wrong part names the rank whose contribution was corrupted.

Each rank checks the result it received; the verdicts (with host names) are gathered so every
rank, and whoever prints the report, can name the bad rank and host.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import torch
import torch.distributed as dist

MODULUS = 251  # base values 0..250: sums stay exact in fp32 for worlds far beyond any cluster


SLOT = 64  # elements of each rank's own part: small, so the tensor stays small at any world size


def _pattern(rank: int, n: int, device: torch.device) -> torch.Tensor:
    """Rank r's known own part: (arange(n)·(r+1) + r) mod 251, as fp32."""
    i = torch.arange(n, dtype=torch.int64, device=device)
    return ((i * (rank + 1) + rank) % MODULUS).to(torch.float32)


def _base(n: int, device: torch.device) -> torch.Tensor:
    return (torch.arange(n, device=device) % MODULUS).to(torch.float32)


def expected_result(world: int, n: int, device: torch.device) -> torch.Tensor:
    """The exact SUM of every rank's contribution, in closed form (no collective involved)."""
    shared = _base(n, device) * world + world * (world - 1) / 2
    return torch.cat([shared] + [_pattern(r, SLOT, device) for r in range(world)])


def contribution(rank: int, world: int, n: int, device: torch.device) -> torch.Tensor:
    """[n shared elements | SLOT elements per rank], zeros in the other ranks' parts."""
    x = torch.zeros(n + world * SLOT, dtype=torch.float32, device=device)
    x[:n] = _base(n, device) + rank
    x[n + rank * SLOT : n + (rank + 1) * SLOT] = _pattern(rank, SLOT, device)
    return x


def _wrong_parts(x: torch.Tensor, expected: torch.Tensor, n: int) -> list[str | int]:
    """ "shared" if the common sum is wrong, and every rank whose own part arrived wrong."""
    diff = x != expected
    parts: list[str | int] = ["shared"] if bool(diff[:n].any()) else []
    return parts + diff[n:].view(-1, SLOT).any(dim=1).nonzero().flatten().tolist()


def host_name() -> str:
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def allreduce_checksum(
    numel: int = 1 << 16,
    device: torch.device | str | None = None,
    group: dist.ProcessGroup | None = None,
    corrupt_rank: int | None = None,
) -> dict[str, Any]:
    """Run on every rank of `group`. Returns (on every rank) a JSON-ready report.

    `ok` is true iff every rank received exactly the closed-form result. `bad_ranks` lists
    `{rank, host, wrong_parts}` for every rank that saw a wrong result; `suspect_ranks` lists
    `{rank, host}` whose own part arrived wrong everywhere (its contribution was corrupted).
    `corrupt_rank` is a drill: that rank adds 1 to one element of its contribution.
    """
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    if device is None:
        device = (
            torch.device("cuda", torch.cuda.current_device())
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
    device = torch.device(device)
    x = contribution(rank, world, numel, device)
    if corrupt_rank == rank:
        x[numel + rank * SLOT + SLOT // 2] += 1.0
    dist.all_reduce(x, op=dist.ReduceOp.SUM, group=group)
    expected = expected_result(world, numel, device)
    mine = {"rank": rank, "host": host_name(), "wrong_parts": _wrong_parts(x, expected, numel)}
    mine["checksum"] = float(x.double().sum())
    reports: list[Any] = [None] * world
    dist.all_gather_object(reports, mine, group=group)
    bad = [r for r in reports if r["wrong_parts"]]
    # Rank r's own part wrong on every rank → its contribution was corrupted before the reduction.
    suspects = [
        {"rank": r["rank"], "host": r["host"]}
        for r in reports
        if len(bad) == world and all(r["rank"] in b["wrong_parts"] for b in bad)
    ]
    return {
        "ok": not bad,
        "world_size": world,
        "numel": numel,
        "expected_checksum": float(expected.double().sum()),
        "checksums": [r["checksum"] for r in reports],
        "bad_ranks": [{k: r[k] for k in ("rank", "host", "wrong_parts")} for r in bad],
        "suspect_ranks": suspects,
    }


def describe_failure(report: dict[str, Any]) -> str:
    """One line naming the bad rank(s) and host(s), for doctor's stderr."""
    if report["ok"]:
        return "all-reduce checksum ok"
    names = report["suspect_ranks"] or report["bad_ranks"]
    who = ", ".join(f"rank {r['rank']} on {r['host']}" for r in names)
    kind = "sent a corrupted contribution" if report["suspect_ranks"] else "received a wrong sum"
    return f"all-reduce checksum wrong: {who} {kind} (expected {report['expected_checksum']:.0f})"
