"""Two gloo ranks (FSDP): checkpoint info/consolidate of a 2-rank checkpoint, and a corrupt shard
that only rank 1 checksums still makes both ranks skip that checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from olmo.checkpoint.io import load_model, parameter_digest
from tests.checkpoint.test_corrupt import flip_bytes
from tests.distributed.launch import torchrun, train_args
from tests.helpers import olmo, read_metrics

pytestmark = pytest.mark.slow


def test_two_rank_checkpoints(tmp_path: Path):
    run = tmp_path / "r"
    args = train_args(run, "--train.max_steps=10")
    first = torchrun(2, args)
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt = run / "checkpoints" / "step10"
    info = json.loads(olmo("checkpoint", "info", str(run), "--json").stdout)
    assert info["world_size"] == 2 and info["rng_files"] == 2 and info["step"] == 10
    out = tmp_path / "w.pt"
    olmo("checkpoint", "consolidate", str(ckpt), str(out))
    weights, model = torch.load(out, weights_only=True), load_model(ckpt)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    original = parameter_digest(model)

    # rank r checksums every world_size-th marked file from r: rank 1 owns __0_0.distcp
    names = sorted(json.loads((ckpt / "COMMITTED.json").read_text())["files"])
    assert names[1::2][0] == "__0_0.distcp"
    flip_bytes(ckpt / "__0_0.distcp", 100)
    again = torchrun(2, args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "skipping checkpoint step10: " in again.stderr and "checksum mismatch" in again.stderr
    assert "resumed from " in again.stderr and "step5 at step 5" in again.stderr
    assert sorted(r["step"] for r in read_metrics(run)) == list(range(1, 11))
    assert parameter_digest(load_model(ckpt)) == original  # exact resume on the same 2 ranks
