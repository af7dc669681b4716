"""Async save gives the same checkpoints as a synchronous one; explicit checkpoint.load."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from tests.checkpoint.conftest import train
from tests.helpers import read_metrics

pytestmark = pytest.mark.slow


def _everything(ckpt: Path, tmp: Path) -> dict:
    """Model + optimizer state of a DCP checkpoint via DCP's own single-file conversion."""
    out = tmp / f"{ckpt.parent.parent.name}-{ckpt.name}.pt"
    dcp_to_torch_save(ckpt, out)
    return torch.load(out, weights_only=True)


def _flatten(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def test_async_save_identical_and_blocking_logged(base_run: Path, tmp_path: Path):
    run = tmp_path / "async"
    proc = train(run, "--train.max_steps=20", "--checkpoint.async_save=true")
    blocked = re.findall(r"checkpoint step (\d+): training blocked ([\d.]+) s \(async", proc.stderr)
    assert [int(s) for s, _ in blocked] == [5, 10, 15, 20], proc.stderr[-2000:]
    for step in (10, 15, 20):
        a, b = (r / "checkpoints" / f"step{step}" for r in (run, base_run))
        marker = json.loads((a / "COMMITTED.json").read_text())
        assert marker["async"] is True and marker["blocking_s"] > 0
        for name in ("trainer_state.json", "rng-rank0.pt"):
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
        got, want = (
            dict(_flatten(_everything(a, tmp_path))),
            dict(_flatten(_everything(b, tmp_path))),
        )
        assert got.keys() == want.keys() and len(got) == 37  # 9 weights, 27 optimizer, groups
        for key, value in want.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(got[key], value), (step, key)
            else:
                assert got[key] == value, (step, key)
    assert read_metrics(run) == [
        {**r, "time": m["time"], "tokens_per_s": m["tokens_per_s"]}
        for r, m in zip(read_metrics(base_run), read_metrics(run), strict=True)
    ]


def test_explicit_load_seeds_a_new_run(base_run: Path, tmp_path: Path):
    run = tmp_path / "seeded"
    seed = base_run / "checkpoints" / "step10"
    # interval 0 + a tiny interval_minutes: every step is due by time
    args = [
        f"--checkpoint.load={seed}",
        "--checkpoint.interval=0",
        "--checkpoint.interval_minutes=1e-6",
    ]
    proc = train(run, "--train.max_steps=13", *args)
    assert f"resumed from {seed} at step 10" in proc.stderr
    assert [r["step"] for r in read_metrics(run)] == [11, 12, 13]
    root = run / "checkpoints"
    assert sorted(p.name for p in root.glob("step*")) == ["step11", "step12", "step13"]
    # the same command again (a requeue): the run's own checkpoint wins over checkpoint.load
    proc = train(run, "--train.max_steps=14", *args)
    assert f"resumed from {root / 'step13'} at step 13" in proc.stderr
    assert [r["step"] for r in read_metrics(run)] == [11, 12, 13, 14]
    assert os.readlink(root / "latest") == "step14"


def test_explicit_load_bad_path_is_one_line_error(tmp_path: Path):
    for bad, needle in ((tmp_path / "missing", "not found"), (tmp_path, "neither")):
        proc = train(tmp_path / "run", f"--checkpoint.load={bad}", check=False)
        assert proc.returncode == 2, proc.stderr[-2000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: checkpoint.load {bad}: ") and needle in last, last
        assert "Traceback" not in proc.stderr
