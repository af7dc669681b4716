"""Commit protocol on real runs: markers, `latest`, keep_last, a save cut short by SIGKILL."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from olmo.checkpoint.checkpointer import CONTENTS, Checkpointer
from olmo.checkpoint.config import CheckpointConfig
from olmo.checkpoint.layout import MARKER, committed_steps, verify_files
from tests.checkpoint.conftest import train
from tests.helpers import olmo, read_metrics

pytestmark = pytest.mark.slow


def test_committed_latest_and_keep_last(base_run: Path):
    root = base_run / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step10", "step15", "step20"]
    assert os.readlink(root / "latest") == "step20"
    for step, ckpt in committed_steps(root):
        marker = json.loads((ckpt / MARKER).read_text())
        assert marker["step"] == step and marker["world_size"] == 1
        assert marker["contents"] == CONTENTS and marker["async"] is False
        assert {".metadata", "rng-rank0.pt", "trainer_state.json", "config.yaml"} <= set(
            marker["files"]
        )
        assert verify_files(ckpt) == []
        state = json.loads((ckpt / "trainer_state.json").read_text())
        assert state["train_state"]["step"] == step and state["loader"]["steps_consumed"] == step


def test_interval_minutes_and_steps(tmp_path: Path):
    cfg = CheckpointConfig(interval=7, interval_minutes=0.5)
    ckpt = Checkpointer(tmp_path, cfg, rank=0, world_size=1, config={})
    assert ckpt.due(14) and not ckpt.due(15)
    ckpt.last_save_time -= 29
    assert not ckpt.due(15)
    ckpt.last_save_time -= 2  # 31 s since the last save ≥ 0.5 min
    assert ckpt.due(15)
    off = Checkpointer(tmp_path, CheckpointConfig(interval=0), rank=0, world_size=1, config={})
    off.last_save_time -= 1e6
    assert not off.due(1000)


def test_kill_during_save_leaves_previous_in_use(tmp_path: Path, monkeypatch):
    run = tmp_path / "killed"
    monkeypatch.setenv("OLMO_FAULT_INJECT", "kill@save=10")
    proc = train(run, "--train.max_steps=12", check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    root = run / "checkpoints"
    assert (root / ".step10.tmp" / ".metadata").is_file()  # shards written, never committed
    assert not (root / ".step10.tmp" / MARKER).exists() and not (root / "step10").exists()
    assert os.readlink(root / "latest") == "step5"

    info = json.loads(olmo("checkpoint", "info", str(run), "--json").stdout)
    assert info["step"] == 5
    rows = {r["name"]: r["status"] for r in info["run"]}
    assert rows["step5"] == "committed" and rows[".step10.tmp"].startswith("not committed")
    ver = olmo("checkpoint", "verify", str(run))
    assert "note .step10.tmp: not committed" in ver.stdout and "ok " in ver.stdout
    bad = olmo("checkpoint", "verify", str(root / ".step10.tmp"), check=False)
    assert bad.returncode == 1 and "no COMMITTED.json" in bad.stdout

    # the same command again (the fault fires once per run dir): resumes at step 5, finishes
    proc = train(run, "--train.max_steps=12")
    assert f"removing {root / '.step10.tmp'}: a save that never committed" in proc.stderr
    assert f"resumed from {root / 'step5'} at step 5" in proc.stderr
    assert [r["step"] for r in read_metrics(run)] == list(range(1, 13))
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step10", "step12", "step5"]
    assert os.readlink(root / "latest") == "step12"
