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


def node_name() -> str:
    """This node's name as SLURM knows it (what node lists and `sinfo` show), else the hostname."""
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def process_start_time() -> float:
    """Unix time this process started (the kernel's record, to 10 ms; now if unknown)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime in ticks
        return time.time() - (uptime - started)
    except (OSError, ValueError, IndexError):
        return time.time()


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
        "host": host or node_name(),
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


# ---- attempts that ended without saying so ---------------------------------------------------
def open_attempts(events: list[dict[str, Any]]) -> list[int]:
    """Attempts with an `attempt_start` and no `attempt_end`, oldest first."""
    started = [e["attempt"] for e in events if e["event"] == "attempt_start"]
    ended = {e["attempt"] for e in events if e["event"] == "attempt_end"}
    return [a for a in dict.fromkeys(started) if a not in ended]


def _metrics_times(run_dir: Path, attempt: int) -> list[float]:
    """`time` of every metrics.jsonl record of `attempt` (a torn last line is skipped)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    times = []
    for raw in path.read_bytes().splitlines():
        try:
            rec = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(rec, dict) and rec.get("attempt") == attempt and "time" in rec:
            times.append(float(rec["time"]))
    return times


def _stack_dumps_since(run_dir: Path, since: float) -> list[Path]:
    """Watchdog stack files (RUN_DIR/stacks/) written at or after `since`."""
    stacks = run_dir / "stacks"
    if not stacks.is_dir():
        return []
    return sorted(p for p in stacks.glob("*.txt") if p.stat().st_mtime >= since)


def inferred_end(run_dir: str | os.PathLike, events: list[dict[str, Any]], attempt: int) -> dict:
    """How an attempt that wrote no `attempt_end` ended, decided from what it left behind:
    `crash` (a rank raised an exception other than losing a peer), else `killed` when the batch
    script booked a node of it as failed, else `hang` (a watchdog `crash` event, or stack dumps
    written during the attempt), else `killed` (a rank died without a word: SIGKILL, OOM killer,
    node loss; its peers only saw it vanish, or got torchrun's SIGTERM).

    Returns the attempt_end fields: `detail` and `when` (the attempt's last sign of life)."""
    run_dir = Path(run_dir)
    mine = [e for e in events if e["attempt"] == attempt]
    start = min((e["time"] for e in mine if e["event"] == "attempt_start"), default=0.0)
    crashes = [e for e in mine if e["event"] == "crash"]
    dumps = _stack_dumps_since(run_dir, start)
    # its ranks' own events: the launchers' (rank null, e.g. node_failure) come after its end
    times = [e["time"] for e in mine if e["rank"] is not None] + _metrics_times(run_dir, attempt)
    detail: dict[str, Any] = {"inferred": True}
    own = [c for c in crashes if not c["detail"].get("peer_lost")]
    if any(c["detail"].get("type") != "hang" for c in own):
        detail["reason"] = "crash"  # first: its peers may then hang (or die) waiting for it
    elif any(e["event"] == "node_failure" for e in mine):
        detail["reason"] = "killed"  # a node died: the survivors' watchdogs may fire after
    elif own or dumps:
        detail["reason"] = "hang"
        times += [p.stat().st_mtime for p in dumps]
        if dumps:
            detail["stacks"] = [str(p.relative_to(run_dir)) for p in dumps]
    else:
        detail["reason"] = "killed"
    return {"detail": detail, "when": max(times, default=start)}


def close_open_attempts(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """At a new attempt's start (before its `attempt_start`): close every earlier attempt that
    wrote no `attempt_end` with a synthetic one (`inferred_end`). Returns the records written."""
    events = read_events(run_dir, strict=False)
    return [
        append_event(run_dir, "attempt_end", attempt=a, **inferred_end(run_dir, events, a))
        for a in open_attempts(events)
    ]


# ---- `python -m olmo.logbook`: the batch script's and launchers' writer -----------------------
def _cli(argv: list[str] | None = None) -> int:
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str):  # one `error:` line, exit 2, like the `olmo` command
            self.exit(2, f"error: {self.prog}: {message}\n")

    p = Parser(prog="python -m olmo.logbook", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    ap = sub.add_parser("append", help="append one event to RUN_DIR/logbook.jsonl")
    ap.add_argument("run_dir")
    ap.add_argument("event", choices=EVENTS)
    ap.add_argument("--attempt", type=int, help="the attempt (omit for none: null)")
    ap.add_argument("--step", type=int)
    ap.add_argument("--detail", default="{}", help="a JSON object")
    cp = sub.add_parser(
        "close", help="end the newest open attempt (if any) with this reason, older ones inferred"
    )
    cp.add_argument("run_dir")
    cp.add_argument("--reason", required=True, choices=END_REASONS)
    cp.add_argument("--exit-code", type=int)
    args = p.parse_args(argv)
    if args.cmd == "close":
        detail = {"reason": args.reason}
        if args.exit_code is not None:
            detail["exit_code"] = args.exit_code
        events = read_events(args.run_dir, strict=False)
        opened = open_attempts(events)
        for a in opened[:-1]:
            append_event(
                args.run_dir, "attempt_end", attempt=a, **inferred_end(args.run_dir, events, a)
            )
        if opened:
            append_event(args.run_dir, "attempt_end", attempt=opened[-1], detail=detail)
        return 0
    try:
        detail = json.loads(args.detail)
    except json.JSONDecodeError:
        detail = None
    if not isinstance(detail, dict):
        p.error(f"--detail '{args.detail}' is not a JSON object, e.g. '{{\"nodes\": [\"n1\"]}}'")
    append_event(args.run_dir, args.event, attempt=args.attempt, step=args.step, detail=detail)
    return 0


if __name__ == "__main__":
    raise SystemExit(_cli())
