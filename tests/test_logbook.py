"""The logbook writer's inference of how a silent attempt ended, and its command-line entry
(what the batch script and launchers call), on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from olmo.cli import main
from olmo.launch.profile import repo_root
from olmo.logbook import (
    _cli,
    append_event,
    close_open_attempts,
    open_attempts,
    read_events,
)


def _metrics(run: Path, *recs: tuple[int, int, float]) -> None:
    lines = [json.dumps({"step": s, "attempt": a, "time": t}) for s, a, t in recs]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_a_silent_attempt_is_killed_at_its_last_sign_of_life(tmp_path: Path):
    append_event(tmp_path, "attempt_start", attempt=1, rank=0, when=100.0)
    append_event(tmp_path, "checkpoint", attempt=1, step=5, rank=0, when=110.0)
    # its peer saw it vanish: that says nothing of the cause
    append_event(tmp_path, "crash", attempt=1, rank=0, detail={"peer_lost": True}, when=125.0)
    _metrics(tmp_path, (6, 1, 120.0), (7, 1, 130.0), (3, 0, 999.0))
    # the batch script of the next job books the dead node to this attempt, later
    append_event(tmp_path, "node_failure", attempt=1, detail={"nodes": ["n1"]}, when=160.0)
    # the survivor's watchdog fired while it waited for the dead node
    append_event(tmp_path, "crash", attempt=1, rank=1, detail={"type": "hang"}, when=128.0)
    (written,) = close_open_attempts(tmp_path)
    assert written["detail"] == {"reason": "killed", "inferred": True}
    assert written["time"] == 130.0 and written["attempt"] == 1
    assert open_attempts(read_events(tmp_path)) == []
    assert close_open_attempts(tmp_path) == []  # closed once


def test_a_peer_crash_or_a_watchdog_dump_names_the_cause(tmp_path: Path):
    crashed, hung, dumped = (tmp_path / n for n in ("crashed", "hung", "dumped"))
    for run in (crashed, hung, dumped):
        append_event(run, "attempt_start", attempt=1, when=100.0)
    append_event(crashed, "crash", attempt=1, rank=1, detail={"type": "ValueError"}, when=101.0)
    # rank 0 then waits for rank 1 in a collective until its watchdog calls it a hang
    append_event(crashed, "crash", attempt=1, rank=0, detail={"type": "hang"}, when=104.0)
    append_event(hung, "crash", attempt=1, rank=0, detail={"type": "hang"}, when=102.0)
    (dumped / "stacks").mkdir()
    old = dumped / "stacks" / "rank1.txt"
    old.write_text("an earlier attempt's dump")
    os.utime(old, (50.0, 50.0))
    assert close_open_attempts(dumped)[0]["detail"]["reason"] == "killed"  # only an old dump
    append_event(dumped, "attempt_start", attempt=2, when=200.0)
    (dumped / "stacks" / "rank0.txt").write_text("watchdog: no step completed")
    (end,) = close_open_attempts(dumped)
    assert end["detail"] == {"reason": "hang", "inferred": True, "stacks": ["stacks/rank0.txt"]}
    assert close_open_attempts(crashed)[0]["detail"]["reason"] == "crash"
    assert close_open_attempts(hung)[0]["detail"]["reason"] == "hang"


def test_command_line_append_and_close(tmp_path: Path):
    assert _cli(["append", str(tmp_path), "node_failure", "--detail", '{"nodes": ["n1"]}']) == 0
    append_event(tmp_path, "attempt_start", attempt=1)
    append_event(tmp_path, "attempt_start", attempt=2)
    assert _cli(["close", str(tmp_path), "--reason", "hang", "--exit-code", "86"]) == 0
    events = read_events(tmp_path)
    assert events[0]["event"] == "node_failure" and events[0]["attempt"] is None
    assert events[0]["detail"] == {"nodes": ["n1"]}
    ends = [(e["attempt"], e["detail"]) for e in events if e["event"] == "attempt_end"]
    assert ends == [
        (1, {"reason": "killed", "inferred": True}),  # the older open one: inferred
        (2, {"reason": "hang", "exit_code": 86}),
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["append", "RUN", "node_failure", "--detail", "[1]"], "--detail '[1]' is not a JSON"),
        (["append", "RUN", "node_down"], "invalid choice: 'node_down'"),
        (["close", "RUN", "--reason", "oops"], "invalid choice: 'oops'"),
    ],
)
def test_command_line_bad_input_is_one_error_line(tmp_path: Path, argv: list[str], message: str):
    argv = [str(tmp_path) if a == "RUN" else a for a in argv]
    proc = subprocess.run(
        [sys.executable, "-m", "olmo.logbook", *argv], capture_output=True, text=True
    )
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: ")
    assert not (tmp_path / "logbook.jsonl").exists()


def test_a_refused_start_is_booked_in_an_existing_run_dir_only(tmp_path: Path, monkeypatch):
    """Bad input and the restart limit (`olmo train` in this process): `start_refused`, attempt
    null, in a run dir that holds a run; a refusal never creates one nor writes into an empty
    dir."""
    run, absent, empty = tmp_path / "run", tmp_path / "absent", tmp_path / "empty"
    run.mkdir()
    empty.mkdir()
    (run / "attempts.jsonl").write_text('{"attempt": 1}\n')  # an earlier start
    base = ["train", str(repo_root() / "configs" / "tiny.yaml"), "--run-dir"]
    assert main([*base, str(run), "--train.max_stepz=3"]) == 2
    assert main([*base, str(absent), "--train.max_stepz=3"]) == 2
    assert main([*base, str(empty), "--train.max_stepz=3"]) == 2
    monkeypatch.setenv("SLURM_RESTART_COUNT", "3")
    monkeypatch.setenv("OLMO_MAX_RESTARTS", "2")
    assert main([*base, str(run)]) == 2
    events = read_events(run)
    assert [(e["event"], e["attempt"]) for e in events] == [("start_refused", None)] * 2
    assert "max_stepz" in events[0]["detail"]["message"]
    assert "restart limit reached" in events[1]["detail"]["message"]
    assert not absent.exists() and list(empty.iterdir()) == []
