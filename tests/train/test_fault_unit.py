"""Fault helpers in one process: the injection grammar, end-time sources, signal flags."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from olmo.errors import OlmoError
from olmo.train.fault import (
    Fault,
    FaultInjection,
    StopFlag,
    job_end_time,
    parse_faults,
    parse_squeue_time,
)


def test_parse_fault_specs():
    got = parse_faults("kill@step=7,rank=1; kill@save=10;hang@step=5;nan@step=4-8")
    assert got == [
        Fault("kill", "step", 7, 7, 1, 0),
        Fault("kill", "save", 10, 10, None, 1),
        Fault("hang", "step", 5, 5, None, 2),
        Fault("nan", "step", 4, 8, None, 3),
    ]


def test_parse_checkpoint_points():
    got = parse_faults("kill@shard=6,rank=1;kill@renamed=9;kill@deleting=9")
    assert [(f.where, f.first, f.rank) for f in got] == [
        ("shard", 6, 1),
        ("renamed", 9, None),
        ("deleting", 9, None),
    ]


@pytest.mark.parametrize(
    "bad",
    ["kill@stp=3", "nan@save=3", "boom@step=1", "kill@step=x", "hang@renamed=3", "nan@shard=2"],
)
def test_bad_fault_spec_is_one_line_error(bad: str):
    with pytest.raises(OlmoError, match=f"OLMO_FAULT_INJECT: cannot parse '{bad}'"):
        parse_faults(bad)


def test_injector_ranks_ranges_and_fire_once(tmp_path: Path):
    faults = parse_faults("nan@step=4-6,rank=1;kill@step=3")
    r0, r1 = FaultInjection(faults, 0, tmp_path), FaultInjection(faults, 1, tmp_path)
    assert [s for s in range(1, 9) if r1._due("nan", "step", s)] == [4, 5, 6]
    assert not any(r0._due("nan", "step", s) for s in range(1, 9))
    kill = faults[1]
    assert r0._fire_once(kill) and not r0._fire_once(kill)  # a restarted run gets past it
    assert r1._fire_once(kill)  # each rank remembers its own


def test_squeue_end_time_parsing():
    assert parse_squeue_time("2026-11-23T12:00:00\n") == time.mktime(
        time.strptime("2026-11-23 12:00:00", "%Y-%m-%d %H:%M:%S")
    )
    for text in ("UNLIMITED\n", "N/A", "", "NONE"):
        assert parse_squeue_time(text) is None


def test_walltime_override(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("OLMO_WALLTIME_END", raising=False)
    assert job_end_time() is None
    monkeypatch.setenv("OLMO_WALLTIME_END", "1800000000.5")
    assert job_end_time() == 1800000000.5
    monkeypatch.setenv("OLMO_WALLTIME_END", "tomorrow")
    with pytest.raises(OlmoError, match="OLMO_WALLTIME_END='tomorrow': expected Unix seconds"):
        job_end_time()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2])
def test_stop_signals_only_set_a_flag(sig):
    flag = StopFlag()
    before = signal.getsignal(sig)
    flag.install()
    flag.install()  # idempotent: installed at start-up and again by the loop
    try:
        os.kill(os.getpid(), sig)
        time.sleep(0.01)  # the handler runs between bytecodes of the main thread
        assert flag.is_set and flag.signum == sig
    finally:
        flag.uninstall()
    assert signal.getsignal(sig) == before
