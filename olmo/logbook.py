"""The run logbook: RUN_DIR/logbook.jsonl, one JSON object per incident, appended by the kit.

A leaf module (standard library only): the trainer, the launchers and the batch script (through
`python -m olmo.logbook`) all write here without importing each other. Each event is one line
written with a single O_APPEND write, so writers on several processes or nodes never interleave
a line; a reader skips nothing silently (`read_events` names a torn line's file and number).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

LOGBOOK = "logbook.jsonl"

EVENTS = (
    "attempt_start",
    "attempt_end",
    "start_refused",
    "node_failure",
    "excluded_nodes",
    "doctor_failed",
    "checkpoint",
    "resume",
    "nonfinite_skip",
    "crash",
    "loss_spike",
    "rollback",
    "straggler",
    "config_change",
)
"""The fixed event names (the interface contract lists each one's `detail`)."""

END_REASONS = (
    "completed",
    "requeue_signal",
    "walltime",
    "crash",
    "hang",
    "nonfinite",
    "killed",
)
"""`attempt_end.detail.reason` values."""


class LogbookError(ValueError):
    """A malformed logbook line or event (names the file and line)."""


def make_event(
    event: str,
    *,
    attempt: int | None,
    step: int | None = None,
    rank: int | None = None,
    detail: dict[str, Any] | None = None,
    host: str | None = None,
    when: float | None = None,
) -> dict[str, Any]:
    """One logbook record with every field of the contract present."""
    if event not in EVENTS:
        raise LogbookError(f"unknown logbook event '{event}' (one of {', '.join(EVENTS)})")
    return {
        "time": time.time() if when is None else when,
        "attempt": attempt,
        "event": event,
        "step": step,
        "host": host or socket.gethostname(),
        "rank": rank,
        "detail": dict(detail or {}),
    }


def append_event(run_dir: str | os.PathLike, event: str, **fields: Any) -> dict[str, Any]:
    """Append one event (fields as `make_event`) to RUN_DIR/logbook.jsonl; returns the record.

    One write of one line on an O_APPEND descriptor: atomic against other appenders."""
    rec = make_event(event, **fields)
    line = (json.dumps(rec, sort_keys=True, default=str) + "\n").encode()
    path = Path(run_dir) / LOGBOOK
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return rec


def read_events(run_dir: str | os.PathLike, strict: bool = True) -> list[dict[str, Any]]:
    """Every event of RUN_DIR/logbook.jsonl in file order ([] when there is none).

    A line that is not a JSON object raises LogbookError naming file and line, except a torn
    last line (a writer killed mid-write) when `strict` is False."""
    path = Path(run_dir) / LOGBOOK
    if not path.is_file():
        return []
    lines = path.read_bytes().splitlines()
    events = []
    for n, raw in enumerate(lines, 1):
        try:
            rec = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if not strict and n == len(lines):
                break
            raise LogbookError(f"{path}:{n}: not a JSON line; the logbook is damaged") from None
        if not isinstance(rec, dict) or rec.get("event") not in EVENTS:
            raise LogbookError(f"{path}:{n}: not a logbook event")
        events.append(rec)
    return events
