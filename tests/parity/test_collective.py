"""The all-reduce checksum on 2 real gloo ranks: passes when healthy, names a corrupting rank."""

import datetime
import json
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from olmo.parity.collective import (
    SLOT,
    allreduce_checksum,
    contribution,
    describe_failure,
    expected_result,
)


def test_closed_form_equals_the_sum_of_contributions():
    cpu = torch.device("cpu")
    for world in (1, 3, 8):
        total = sum(contribution(r, world, 1000, cpu) for r in range(world))
        assert torch.equal(total, expected_result(world, 1000, cpu))
        assert total.numel() == 1000 + world * SLOT


def _worker(rank: int, world: int, init: str, out: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=init,
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        healthy = allreduce_checksum(numel=4096)
        corrupt = allreduce_checksum(numel=4096, corrupt_rank=1)
    finally:
        dist.destroy_process_group()
    with open(f"{out}.{rank}", "w") as f:
        json.dump({"healthy": healthy, "corrupt": corrupt}, f)


@pytest.mark.slow
def test_two_gloo_ranks(tmp_path):
    out = str(tmp_path / "report")
    init = f"file://{tmp_path / 'store'}"
    mp.spawn(_worker, args=(2, init, out), nprocs=2, join=True)
    reports = [json.loads(Path(f"{out}.{r}").read_text()) for r in range(2)]
    host = socket.gethostname()
    for rep in reports:
        ok = rep["healthy"]
        assert ok["ok"] and ok["world_size"] == 2 and ok["bad_ranks"] == []
        assert ok["checksums"] == [ok["expected_checksum"]] * 2
        bad = rep["corrupt"]
        assert not bad["ok"]
        assert bad["suspect_ranks"] == [{"rank": 1, "host": host}]
        assert [b["wrong_parts"] for b in bad["bad_ranks"]] == [[1], [1]]
        assert describe_failure(bad).startswith(f"all-reduce checksum wrong: rank 1 on {host}")
