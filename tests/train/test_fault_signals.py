"""Fault handling beside the loop, with real processes: walltime exit, hang watchdog, short
collective timeouts, non-finite losses. Faults are injected with OLMO_FAULT_INJECT."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from olmo.logbook import read_events
from tests.distributed.launch import (
    _env,
    digest,
    read_records,
    spawn_ranks,
    train_args,
    wait_all,
)

pytestmark = pytest.mark.slow


def test_walltime_checkpoints_and_exits_before_the_end(tmp_path: Path):
    """OLMO_WALLTIME_END stands in for squeue's end time: the run stops at the first step
    boundary past end - margin, checkpoints there and exits 75."""
    run, margin = tmp_path / "r", 1000.0
    end = time.time() + margin + 15  # training stops ~15 s after launch (start-up ~5 s)
    proc = subprocess.run(
        [sys.executable, *train_args(run, "--train.max_steps=100000")]
        + [f"--train.walltime_margin_s={margin}"],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env({"OLMO_WALLTIME_END": str(end)}),
    )
    assert proc.returncode == 75, proc.stderr[-3000:]
    recs = read_records(run)
    deadline = end - margin
    assert deadline <= recs[-1]["time"] + 2  # not before the deadline ...
    if len(recs) >= 2:  # ... and at the first boundary past it (unless start-up took longer)
        assert recs[-2]["time"] < deadline
    last = recs[-1]["step"]
    assert (run / "checkpoints" / f"step{last}" / "COMMITTED.json").is_file()
    assert f"step {last}: SLURM walltime near → checkpoint and exit for requeue" in proc.stderr
    (end,) = [e for e in read_events(run) if e["event"] == "attempt_end"]  # the logbook (#19)
    assert end["detail"] == {"reason": "walltime", "exit_code": 75, "cause": "SLURM walltime near"}
    assert end["step"] == last


def test_watchdog_dumps_every_rank_and_exits_86(tmp_path: Path):
    """Rank 1 holds the GIL after step 4 (no Python thread of it runs again); rank 0 waits in a
    collective. Both ranks' supervisors fire within the timeout, leave every thread's stack in
    RUN_DIR/stacks/ and a logbook crash event each, and exit 86."""
    run, timeout = tmp_path / "r", 4.0
    args = train_args(run, "--train.max_steps=50", f"--train.watchdog_timeout_s={timeout}")
    faults = {"OLMO_FAULT_INJECT": "hang_gil@step=4,rank=1"}
    procs = spawn_ranks(2, args, tmp_path / "logs", faults)
    assert wait_all(procs, 120) == [86, 86]
    dumps = {r: (run / "stacks" / f"rank{r}.txt").read_text() for r in (0, 1)}
    for text in dumps.values():
        idle = float(re.match(r"watchdog: no step completed in ([\d.]+)s", text).group(1))
        assert timeout <= idle < timeout + 3  # logged with one decimal: 4.02 s reads "4.0"
        assert "(most recent call first)" in text and "olmo/train/trainer.py" in text
    assert "in _hold_gil" in dumps[1]  # the injected hang, seen from inside
    assert "in train_step" in dumps[0]  # waiting for rank 1 in the next step's collectives
    assert [r["step"] for r in read_records(run)] == [1, 2, 3, 4]
    hangs = [e for e in read_events(run) if e["event"] == "crash"]
    assert sorted((e["rank"], e["step"], e["detail"]["type"]) for e in hangs) == [
        (0, 4, "hang"),
        (1, 4, "hang"),
    ]


def test_collective_timeout_is_short_after_the_first_step(tmp_path: Path):
    """Without a watchdog, a dead-silent peer is noticed by the collective timeout (2 s here,
    set after the first step; setup keeps the long init timeout)."""
    run = tmp_path / "r"
    args = train_args(run, "--train.max_steps=50", "--distributed.collective_timeout_s=2")
    procs = spawn_ranks(2, args, tmp_path / "logs", {"OLMO_FAULT_INJECT": "hang@step=3,rank=1"})
    try:
        procs[0].wait(timeout=120)
        t_exit = time.time()
        hung = procs[1].poll() is None  # rank 1 is still "hung"
    finally:
        wait_all(procs, 0)
    assert procs[0].returncode not in (0, 75, 86) and hung
    last = read_records(run)[-1]
    assert last["step"] == 3 and t_exit - last["time"] < 15, t_exit - last["time"]
    log0 = (tmp_path / "logs" / "rank0.log").read_text()
    assert re.search(r"[Tt]imed out|timeout", log0), log0[-3000:]


def test_nonfinite_steps_are_skipped_then_stop_with_exit_3(tmp_path: Path):
    """NaN gradients on rank 1 only: every rank skips the update (the norm is global), counts
    it, and after train.max_nonfinite_steps in a row all stop with a clear error and exit 3."""
    run = tmp_path / "r"
    args = train_args(
        run,
        "--train.max_steps=20",
        "--train.max_nonfinite_steps=3",
        "--checkpoint.interval=1",
        "--checkpoint.keep_last=20",
    )
    faults = {"OLMO_FAULT_INJECT": "nan@step=4-5,rank=1;nan@step=8-12,rank=1"}
    procs = spawn_ranks(2, args, tmp_path / "logs", faults)
    assert wait_all(procs, 120) == [3, 3]
    err = (tmp_path / "logs" / "rank0.log").read_text().strip().splitlines()[-1]
    assert err.startswith("error: stopping at step 10: 3 consecutive steps with non-finite loss")
    recs = read_records(run)
    assert [r["step"] for r in recs] == list(range(1, 11))
    bad = [r["step"] for r in recs if not math.isfinite(r["loss"])]
    assert bad == [4, 5, 8, 9, 10]
    ck = run / "checkpoints"
    assert digest(ck / "step3") == digest(ck / "step5") != digest(ck / "step6")
    assert digest(ck / "step7") == digest(ck / "step9")
    state = json.loads((ck / "step9" / "trainer_state.json").read_text())["train_state"]
    assert state["skipped_steps"] == [4, 5, 8, 9] and state["nonfinite_in_a_row"] == 2
    # the logbook (#19): each skip at the flush that found it, then the streak's end
    events = read_events(run)
    skips = [s for e in events if e["event"] == "nonfinite_skip" for s in e["detail"]["steps"]]
    assert skips == [4, 5, 8, 9, 10]
    (end,) = [e for e in events if e["event"] == "attempt_end"]
    assert end["detail"]["reason"] == "nonfinite" and end["detail"]["exit_code"] == 3


def test_nonfinite_streak_between_log_flushes_stops_at_the_flush(tmp_path: Path):
    """The skip happens on the device (fused AdamW found_inf), the count at the log flush: a
    streak inside a log interval is booked in order and stops the run at that flush."""
    run = tmp_path / "r"
    args = train_args(
        run, "--train.max_steps=20", "--train.max_nonfinite_steps=3", "--train.log_interval=4"
    )
    faults = {"OLMO_FAULT_INJECT": "nan@step=5-7"}  # a checkpoint (a flush) at step 5
    procs = spawn_ranks(1, args, tmp_path / "logs", faults)
    assert wait_all(procs, 120) == [3]
    err = (tmp_path / "logs" / "rank0.log").read_text().strip().splitlines()[-1]
    assert err.startswith("error: stopping at step 8: 3 consecutive steps with non-finite loss")
    assert "up to step 7" in err
    recs = read_records(run)
    assert [r["step"] for r in recs] == list(range(1, 9))
    assert [r["step"] for r in recs if not math.isfinite(r["grad_norm"])] == [5, 6, 7]
