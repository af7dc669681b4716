"""A checkpoint whose files fail their checksums or are truncated: named, skipped, previous used."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from olmo.checkpoint.io import load_model, parameter_digest
from olmo.checkpoint.layout import verify_files
from tests.checkpoint.conftest import copy_run, train
from tests.helpers import olmo, read_metrics

pytestmark = pytest.mark.slow
SHARD = "__0_0.distcp"


def flip_bytes(path: Path, at: int, n: int = 4) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        data = f.read(n)
        f.seek(at)
        f.write(bytes(b ^ 0xFF for b in data))


@pytest.fixture(scope="module")
def damaged(base_run: Path, tmp_path_factory) -> Path:
    """base_run with step20's shard bit-flipped (same size) and step15's shard truncated."""
    run = copy_run(base_run, tmp_path_factory.mktemp("corrupt") / "run")
    root = run / "checkpoints"
    shard20 = root / "step20" / SHARD
    flip_bytes(shard20, shard20.stat().st_size // 2)
    shard15 = root / "step15" / SHARD
    os.truncate(shard15, shard15.stat().st_size - 1000)
    return run


def test_verify_names_each_bad_file(damaged: Path):
    root = damaged / "checkpoints"
    assert verify_files(root / "step10") == []
    assert verify_files(root / "step20") == [
        f"{root / 'step20' / SHARD}: checksum mismatch (corrupt)"
    ]
    assert verify_files(root / "step15")[0].startswith(f"{root / 'step15' / SHARD}: truncated")
    proc = olmo("checkpoint", "verify", str(damaged), check=False)
    assert proc.returncode == 1
    assert f"BAD {root / 'step20'}\n    {root / 'step20' / SHARD}: checksum mismatch" in proc.stdout
    assert f"{root / 'step15' / SHARD}: truncated" in proc.stdout
    assert f"ok  {root / 'step10'}" in proc.stdout
    one = olmo("checkpoint", "verify", str(root / "step10"))
    assert one.stdout.startswith("ok ")


def test_consolidate_refuses_a_corrupt_checkpoint(damaged: Path, tmp_path: Path):
    out = tmp_path / "w.pt"
    proc = olmo(
        "checkpoint", "consolidate", str(damaged / "checkpoints" / "step20"), str(out), check=False
    )
    assert proc.returncode == 2 and not out.exists()
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert f"step20/{SHARD}: checksum mismatch" in proc.stderr


def test_resume_skips_corrupt_and_uses_previous(damaged: Path, base_run: Path):
    original20 = parameter_digest(load_model(base_run / "checkpoints" / "step20"))
    root = damaged / "checkpoints"
    proc = train(damaged, "--train.max_steps=20")  # same schedule as the original run
    err = proc.stderr
    assert f"skipping checkpoint step20: {root / 'step20' / SHARD}: checksum mismatch" in err
    assert f"skipping checkpoint step15: {root / 'step15' / SHARD}: truncated" in err
    assert f"resumed from {root / 'step10'} at step 10" in err
    assert [r["step"] for r in read_metrics(damaged)] == list(range(1, 21))
    # the bad ones were moved aside for inspection; steps 15 and 20 were trained and saved again
    assert (root / ".step20.corrupt" / SHARD).is_file() and (root / ".step15.corrupt").is_dir()
    assert sorted(p.name for p in root.glob("step*")) == ["step10", "step15", "step20"]
    assert os.readlink(root / "latest") == "step20"
    assert all(verify_files(root / s) == [] for s in ("step10", "step15", "step20"))
    # exact resume from step 10: the re-trained step 20 is bitwise the uncorrupted original
    assert parameter_digest(load_model(root / "step20")) == original20
