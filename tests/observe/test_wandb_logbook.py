"""The logbook of the real requeued run (conftest: SIGUSR1, then SIGKILL after step 15, then to
the end): wandb got each attempt's events as they happened, `olmo logbook` accounts for them,
and each eval's time is booked in its step's record (`eval_s`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from olmo.cli import main
from olmo.logbook import read_events
from tests.helpers import read_metrics
from tests.observe.wandb_reader import history_rows, read_records

pytestmark = pytest.mark.slow


def _is_event(row: dict[str, Any]) -> bool:
    return any(k.startswith("logbook/") for k in row)


def _logbook_rows(wandb_file: Path) -> list[dict[str, Any]]:
    """The event rows, after checking each was logged as it happened: between the metrics rows
    of its step and of the next (an event without a step: the step the loop was at)."""
    rows = history_rows(read_records(wandb_file))
    for i, row in enumerate(rows):
        if _is_event(row):
            assert all(r["train/step"] <= row["train/step"] for r in rows[:i] if not _is_event(r))
            assert all(r["train/step"] > row["train/step"] for r in rows[i:] if not _is_event(r))
    return [r for r in rows if _is_event(r)]


def _logged_by(events: list[dict[str, Any]], attempt: int) -> list[dict[str, Any]]:
    """What attempt k's wandb run gets: its events up to its own end (booked after wandb
    finished) and the end of attempt k-1 when k's start had to infer it."""
    return [
        e
        for e in events
        if (e["attempt"] == attempt and e["event"] != "attempt_end")
        or (e["attempt"] == attempt - 1 and e["detail"].get("inferred"))
    ]


def test_wandb_got_each_attempts_events(requeued_run: Path):
    events = read_events(requeued_run)
    dirs = sorted(d for d in (requeued_run / "wandb").glob("offline-run-*") if not d.is_symlink())
    for attempt in (1, 3):  # the SIGKILLed 2nd may lose what wandb had not flushed
        rows = _logbook_rows(next(dirs[attempt - 1].glob("run-*.wandb")))
        want = _logged_by(events, attempt)
        assert [e["event"] for e in want].count("checkpoint") >= 1
        assert [
            next(k for k in r if k.count("/") == 1 and k.startswith("logbook/")) for r in rows
        ] == [f"logbook/{e['event']}" for e in want]
        for row, ev in zip(rows, want, strict=True):
            if ev["step"] is not None:
                assert row["train/step"] == ev["step"]
            if ev["event"] == "checkpoint":
                assert row["logbook/checkpoint/blocking_s"] == ev["detail"]["blocking_s"]
    last = read_records(next(dirs[2].glob("run-*.wandb")))
    assert _logbook_rows(next(dirs[2].glob("run-*.wandb")))[0]["logbook/attempt_end"] == 1
    summary = {}
    for rec in last:
        if rec.WhichOneof("record_type") == "summary":
            summary.update({u.key: json.loads(u.value_json) for u in rec.summary.update})
    assert 0 < summary["goodput"] < 1 and summary["lost_s/redone_steps"] > 0  # so far


def test_logbook_of_the_requeued_run(requeued_run: Path, capsys):
    assert main(["logbook", str(requeued_run), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert 0 < s["goodput"] < 1
    assert s["restarts"] == {"killed": 1, "requeue_signal": 1} and s["failures"] == 1
    (resume,) = [e for e in s["events"] if e["event"] == "resume" and e["attempt"] == 3]
    assert resume["detail"]["from_step"] == 10 and resume["detail"]["redone_steps"] == 5
    assert s["lost_s"]["redone_steps"] > 0 and s["lost_s"]["startup"] > 0
    assert s["productive_s"] + sum(s["lost_s"].values()) == pytest.approx(s["wall_s"])
    evals = [m for m in read_metrics(requeued_run) if "eval_loss" in m]
    assert [m["step"] for m in evals] == [10, 20] and all(m["eval_s"] > 0 for m in evals)
