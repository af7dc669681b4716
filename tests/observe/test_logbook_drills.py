"""The logbook under real failures (#19): torchrun, real gloo groups, real signals.

One torchrun with restarts lives through three attempts: a rank raises (crash), a rank hangs
(watchdog, exit 86; closed as `hang` at the next start), and torchrun itself gets SIGTERM (the
workers checkpoint and exit 75: `requeue_signal`). SIGKILLed ranks (`killed`), preemption signals,
the walltime and non-finite streaks are checked on the runs of tests/train/test_fault_*.py.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from olmo.cli import main
from olmo.logbook import read_events
from tests.distributed.launch import _env, train_args

pytestmark = pytest.mark.slow
ARGS = ["--train.max_steps=40", "--train.watchdog_timeout_s=5"]
FAULTS = {"OLMO_FAULT_INJECT": "crash@step=3,rank=1;hang@step=6,rank=1"}
BREAKDOWN = {
    "startup_s",
    "process_group_s",
    "checkpoint_load_s",
    "data_fast_forward_s",
    "first_step_s",
    "other_s",
}


def _torchrun(args: list[str], max_restarts: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [f"--max-restarts={max_restarts}", *args]
    env = _env(FAULTS)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def _wait_for(run: Path, attempt: int, step: int, proc: subprocess.Popen) -> None:
    end = time.monotonic() + 180
    while time.monotonic() < end:
        if any(r["attempt"] == attempt and r["step"] >= step for r in _records(run)):
            return
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        time.sleep(0.05)
    raise AssertionError(f"attempt {attempt} did not reach step {step}")


def _records(run: Path) -> list[dict]:
    """metrics.jsonl while rank 0 may be writing its last line."""
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [json.loads(line) for line in lines if line.endswith("}")]


def test_crash_hang_and_sigterm_under_torchrun_are_booked_with_their_cause(tmp_path: Path, capsys):
    run = tmp_path / "r"
    proc = _torchrun(train_args(run, *ARGS), max_restarts=2)
    _wait_for(run, 3, 7, proc)  # attempt 3 resumed from step 5 and trains on
    proc.send_signal(signal.SIGTERM)  # torchrun passes it to its workers
    assert proc.wait(timeout=120) != 0

    events = read_events(run)
    ends = {e["attempt"]: e for e in events if e["event"] == "attempt_end"}
    assert {a: e["detail"]["reason"] for a, e in ends.items()} == {
        1: "crash",
        2: "hang",
        3: "requeue_signal",
    }
    # 1: rank 1's own exception; rank 0 then loses its peer (and ends the attempt as a crash)
    # or, under load, hangs waiting for it until its watchdog fires (the next start decides)
    crashes = [e for e in events if e["event"] == "crash" and e["attempt"] == 1]
    crashes = [(e["rank"], e["detail"]["type"], e["detail"].get("peer_lost")) for e in crashes]
    assert (1, "RuntimeError", False) in crashes
    assert ends[1]["detail"].get("exit_code", 1) == 1
    # 2: the hang, closed when attempt 3 started, at the attempt's last sign of life
    starts = {e["attempt"]: e for e in events if e["event"] == "attempt_start"}
    assert ends[2]["detail"]["inferred"] and starts[2]["time"] < ends[2]["time"]
    assert ends[2]["time"] < starts[3]["time"]
    # 3: the signal, the step it stopped at checkpointed
    stop = ends[3]["step"]
    assert ends[3]["detail"]["exit_code"] == 75 and ends[3]["detail"]["cause"] == "SIGTERM received"
    assert stop >= 7 and (run / "checkpoints" / f"step{stop}" / "COMMITTED.json").is_file()
    assert [s["detail"]["restart_count"] for s in starts.values()] == [0, 1, 2]
    for s in starts.values():
        assert s["detail"]["world_size"] == 2 and s["detail"]["nodes"] == [s["host"]]
    _check_resumes(events)
    saves = [e for e in events if e["event"] == "checkpoint"]
    assert [e["step"] for e in saves] == [5, *range(10, stop, 5), stop]  # none in attempt 1
    assert all(e["detail"]["seconds"] >= e["detail"]["blocking_s"] > 0 for e in saves)
    _check_goodput(run, capsys)


def _check_goodput(run: Path, capsys) -> None:
    """`olmo logbook --json` on the drill: goodput strictly in (0, 1), every second of the
    attempts accounted for, the hang's wait for the watchdog among the causes."""
    assert main(["logbook", str(run), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert 0 < s["goodput"] < 1, s
    assert s["restarts"] == {"crash": 1, "hang": 1, "requeue_signal": 1} and s["failures"] == 2
    assert s["productive_s"] + sum(s["lost_s"].values()) == pytest.approx(s["wall_s"])
    assert s["lost_s"]["hangs"] > 0 and s["lost_s"]["redone_steps"] > 0


def _check_resumes(events: list[dict]) -> None:
    resumes = {e["attempt"]: e for e in events if e["event"] == "resume"}
    got = {a: (e["detail"]["from_step"], e["detail"]["redone_steps"]) for a, e in resumes.items()}
    # 2: nothing committed before the crash at step 3; 3: from step 5, step 6 redone
    assert got == {2: (0, 3), 3: (5, 1)}
    for e in resumes.values():
        d = e["detail"]
        assert set(d["breakdown"]) == BREAKDOWN and e["step"] == d["from_step"] + 1
        assert all(v >= 0 for v in d["breakdown"].values()) and d["breakdown"]["startup_s"] > 0
        assert math.isclose(sum(d["breakdown"].values()), d["seconds_to_first_step"], abs_tol=0.02)
    assert resumes[3]["detail"]["breakdown"]["checkpoint_load_s"] > 0
