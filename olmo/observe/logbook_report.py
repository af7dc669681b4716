"""`olmo logbook RUN_DIR [--json]`: the run's incidents as a timeline, and what they cost.

Reads RUN_DIR/logbook.jsonl (olmo/logbook.py) and the steps that were kept (metrics.jsonl: after
a resume the steps a killed attempt ran past its checkpoint are superseded, so every record there
is a step whose work survived). Each attempt's wall time (attempt_start to attempt_end) splits
into productive time (the kept steps) and time lost by cause; queue time between attempts is
reported beside it and counted nowhere. goodput = productive ÷ wall time of all attempts.
"""

from __future__ import annotations

import datetime
import json
import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from olmo.errors import OlmoError
from olmo.inputs import check_record, read_json_lines
from olmo.logbook import LOGBOOK, LogbookError, read_events

FAILURES = ("crash", "hang", "nonfinite", "killed")
"""attempt_end reasons that count as failures (MTBF); requeue_signal and walltime are planned."""
LOST_CAUSES = ("startup", "redone_steps", "rollback", "checkpoint_blocking", "evaluation", "hangs",
               "other")  # fmt: skip
INCIDENTS = ("start_refused", "node_failure", "excluded_nodes", "doctor_failed", "crash",
             "nonfinite_skip", "loss_spike", "rollback", "straggler", "config_change")  # fmt: skip
"""Events `olmo report` marks on its timeline (besides attempts that did not complete)."""
_POSTMORTEM = ("attempt_end", "crash", "node_failure", "excluded_nodes", "doctor_failed")
FIX = "repair or delete the line (the writer is olmo/logbook.py)"
_NUM, _NUM_OR_NULL, _INT_OR_NULL = (int, float), (int, float, type(None)), (int, type(None))
EVENT_FIELDS = {"time": _NUM, "attempt": _INT_OR_NULL, "step": _INT_OR_NULL, "detail": dict}
DETAIL_NUMBERS = ("seconds", "blocking_s", "seconds_to_first_step", "startup_s", "process_group_s",
                  "checkpoint_load_s", "data_fast_forward_s", "first_step_s", "other_s",
                  "from_step", "redone_steps", "exit_code", "process_start")  # fmt: skip
"""Detail keys the totals add up: numbers when present."""
STEP_FIELDS = {"step": int, "attempt": int, "time": _NUM_OR_NULL, "eval_s": _NUM_OR_NULL}


@dataclass
class Attempt:
    """One start of training on the run dir and how its wall time was spent (seconds)."""

    number: int
    start: float
    """When its process began (a resume's time less its seconds_to_first_step), else
    attempt_start's time, else the attempt's earliest event or step record."""
    end: float
    """attempt_end's time; for a killed or unfinished attempt, its last sign of life."""
    reason: str | None = None
    """attempt_end.detail.reason (None: no attempt_end yet)."""
    end_is_exact: bool = True
    """False for a `killed` end without `detail.inferred` (booked when found, not when it died)."""
    productive_s: float = 0.0
    lost_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(LOST_CAUSES, 0.0))

    @property
    def wall_s(self) -> float:
        return max(0.0, self.end - self.start)


# ---- reading ----------------------------------------------------------------------------------
def load_events(run_dir: Path) -> list[dict[str, Any]]:
    """The logbook's events, checked; one OlmoError line for a missing or damaged logbook."""
    if not run_dir.is_dir():
        raise OlmoError(f"{run_dir}: no such run directory; give the --run-dir of `olmo train`")
    path = run_dir / LOGBOOK
    if not path.is_file():
        raise OlmoError(f"{path}: not found; the run has no logbook (`olmo train` writes one)")
    try:
        events = read_events(run_dir, strict=False)  # a torn last line: a writer killed mid-write
    except LogbookError as e:
        raise OlmoError(f"{e}; {FIX}") from None
    for n, ev in enumerate(events, 1):  # every line before a torn last one is an event
        _check_event(ev, f"{path}:{n}")
    return events


def _check_event(ev: dict[str, Any], where: str) -> None:
    """Types first, then the values arithmetic needs: finite times and detail numbers."""
    check_record(ev, where, EVENT_FIELDS, FIX, required=("time", "event"))
    check_record(
        ev.get("detail", {}),
        f"{where} detail",
        dict.fromkeys(DETAIL_NUMBERS, _NUM_OR_NULL),
        FIX,
    )
    if not math.isfinite(ev["time"]):
        raise OlmoError(f"{where}: 'time' must be a finite number, got {ev['time']!r}; {FIX}")


def load_steps(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's step records that carry a time, one per step (a later line wins)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    lines, _ = read_json_lines(path, "repair or delete the line")
    by_step: dict[int, dict[str, Any]] = {}
    for n, rec in lines:
        check_record(rec, f"{path}:{n}", STEP_FIELDS, "repair or delete the line")
        if isinstance(rec.get("step"), int) and isinstance(rec.get("time"), _NUM):
            by_step[rec["step"]] = {**rec, "attempt": rec.get("attempt", 1)}  # older records
    return [by_step[s] for s in sorted(by_step)]


# ---- accounting ---------------------------------------------------------------------------------
def _num(d: dict[str, Any], key: str) -> float:
    v = d.get(key)
    return float(v) if isinstance(v, _NUM) and not isinstance(v, bool) else 0.0


def _intervals(steps: list[dict[str, Any]]) -> dict[int, list[float]]:
    """attempt → durations of its kept steps that follow a kept step of the same attempt."""
    out: dict[int, list[float]] = {}
    for prev, cur in pairwise(steps):
        if cur["attempt"] == prev["attempt"] and cur["step"] == prev["step"] + 1:
            out.setdefault(cur["attempt"], []).append(cur["time"] - prev["time"])
    return out


def _attempts(events: list[dict[str, Any]], steps: list[dict[str, Any]]) -> dict[int, Attempt]:
    """Every attempt with its start, end and end reason (end refined later for killed ones)."""
    times: dict[int, list[float]] = {}
    for ev in events:
        if isinstance(ev.get("attempt"), int):
            times.setdefault(ev["attempt"], []).append(ev["time"])
    for rec in steps:
        times.setdefault(rec["attempt"], []).append(rec["time"])
    out = {a: Attempt(a, min(ts), max(ts)) for a, ts in sorted(times.items())}
    for ev in events:
        a = out.get(ev.get("attempt"))  # type: ignore[arg-type]
        if a is None:
            continue
        if ev["event"] == "attempt_start":  # from its process start when booked (imports, setup)
            a.start = min(ev["time"], _num(ev["detail"], "process_start") or ev["time"])
        elif ev["event"] == "attempt_end":
            a.reason, a.end = ev["detail"].get("reason"), ev["time"]
            a.end_is_exact = a.reason != "killed" or bool(ev["detail"].get("inferred"))
    for ev in events:  # the process began before it could book attempt_start (imports, setup)
        a = out.get(ev.get("attempt"))  # type: ignore[arg-type]
        if a is not None and ev["event"] == "resume" and "seconds_to_first_step" in ev["detail"]:
            a.start = min(a.start, ev["time"] - _num(ev["detail"], "seconds_to_first_step"))
    return out


def _account(attempts: dict[int, Attempt], events: list[dict], steps: list[dict]) -> float:
    """Fill each attempt's productive and lost seconds; returns the run's median step time."""
    gaps = _intervals(steps)
    run_median = statistics.median([d for ds in gaps.values() for d in ds] or [0.0])
    median = {a: statistics.median(gaps[a]) if gaps.get(a) else run_median for a in attempts}
    kept = {(r["attempt"], r["step"]): r for r in steps}
    for a in attempts.values():
        own = [r for r in steps if r["attempt"] == a.number]
        # the first kept step's own duration is inside the start-up span: credit a typical step
        a.productive_s = sum(gaps.get(a.number, [])) + (median[a.number] if own else 0.0)
        a.lost_s["evaluation"] = sum((_num(r, "eval_s") for r in own), 0.0)
        if own:
            a.lost_s["startup"] = max(0.0, own[0]["time"] - a.start - median[a.number])
    for ev in events:
        a = attempts.get(ev.get("attempt"))  # type: ignore[arg-type]
        if a is None:
            continue
        d = ev["detail"]
        if ev["event"] == "checkpoint":
            a.lost_s["checkpoint_blocking"] += _num(d, "blocking_s")
            if (a.number, (ev["step"] or 0) + 1) in kept:  # it blocked inside a kept interval
                a.productive_s -= _num(d, "blocking_s")
        elif ev["event"] == "resume" and "seconds_to_first_step" in d:
            a.lost_s["startup"] = max(0.0, _num(d, "seconds_to_first_step") - median[a.number])
    for r in steps:  # evaluation after step s runs inside the interval of step s + 1
        if (r["attempt"], r["step"] + 1) in kept:
            attempts[r["attempt"]].productive_s -= _num(r, "eval_s")
    _rollbacks(attempts, events, kept, median)
    _redone(attempts, events, steps, median)
    return run_median


def _rollbacks(
    attempts: dict[int, Attempt], events: list[dict], kept: dict, median: dict[int, float]
) -> None:
    """A loss-spike rollback to step T drops the steps after T within the attempt: the kept
    interval T → T+1 spans them and the rollback itself; all but one typical step is lost."""
    for ev in events:
        a, to = attempts.get(ev.get("attempt")), ev["detail"].get("to_step")  # type: ignore[arg-type]
        if ev["event"] != "rollback" or a is None or not isinstance(to, int):
            continue
        before, after = kept.get((a.number, to)), kept.get((a.number, to + 1))
        if before is None or after is None:
            continue
        inside = _num(before, "eval_s") + sum(  # already booked as their own causes
            _num(e["detail"], "blocking_s")
            for e in events
            if e["event"] == "checkpoint" and e.get("attempt") == a.number and e["step"] == to
        )
        lost = max(0.0, after["time"] - before["time"] - median[a.number] - inside)
        a.lost_s["rollback"] += lost
        a.productive_s -= lost


def _redone(
    attempts: dict[int, Attempt], events: list[dict], steps: list[dict], median: dict[int, float]
) -> None:
    """Book the steps each resume redid on the attempt that first ran them (the one before),
    then settle every attempt's end, hang time and unexplained rest."""
    numbers = sorted(attempts)
    for ev in events:
        if ev["event"] != "resume" or ev.get("attempt") not in attempts:
            continue
        before = [n for n in numbers if n < ev["attempt"]]
        if before:
            prev = attempts[before[-1]]
            prev.lost_s["redone_steps"] += _num(ev["detail"], "redone_steps") * median[prev.number]
    for i, a in enumerate(attempts[n] for n in numbers):
        _settle(a, attempts[numbers[i + 1]].start if i + 1 < len(numbers) else None, events, steps)


def _settle(a: Attempt, nxt: float | None, events: list[dict], steps: list[dict]) -> None:
    """An attempt's end (estimated where it is not known), hang time and unexplained rest."""
    progress = _last_alive(a, events, steps)
    alive = progress + a.lost_s["redone_steps"]  # the redone steps ran after its last kept one
    # No end yet, or one booked when found rather than when it happened: estimate it.
    if a.reason is None or (nxt is not None and a.end > nxt) or not a.end_is_exact:
        a.end = max(a.start, min(alive, nxt) if nxt is not None else alive)
    elif a.reason == "killed":  # inferred at the next start: the end is its last step's time
        a.lost_s["redone_steps"] = max(0.0, a.end - progress) if a.lost_s["redone_steps"] else 0.0
    if a.reason == "hang":
        a.lost_s["hangs"] = max(0.0, a.end - alive)
    a.productive_s = max(0.0, a.productive_s)
    excess = a.productive_s + sum(v for k, v in a.lost_s.items() if k != "other") - a.wall_s
    for cause in ("redone_steps", "startup"):  # estimates: capped by what the wall time leaves
        cut = min(max(excess, 0.0), a.lost_s[cause])
        a.lost_s[cause] -= cut
        excess -= cut
    a.lost_s["other"] = max(0.0, -excess)


def _last_alive(a: Attempt, events: list[dict], steps: list[dict]) -> float:
    """When attempt `a` last showed progress: its latest kept step or event of its own (not
    the records of its death: its end, crash, the nodes found failed)."""
    times = [a.start] + [r["time"] for r in steps if r["attempt"] == a.number]
    for ev in events:
        if ev.get("attempt") == a.number and ev["event"] not in _POSTMORTEM:
            times.append(ev["time"])
    return max(times)


def daly_interval(cost_s: float, mtbf_s: float) -> float:
    """Daly's (2006) first-order optimum checkpoint interval for save cost C and MTBF M;
    Young's sqrt(2CM) with Daly's correction terms, M itself once C ≥ 2M."""
    if cost_s >= 2 * mtbf_s:
        return mtbf_s
    r = cost_s / (2 * mtbf_s)
    return math.sqrt(2 * cost_s * mtbf_s) * (1 + math.sqrt(r) / 3 + r / 9) - cost_s


# ---- the summary --------------------------------------------------------------------------------
def summarize(run_dir: str | Path) -> dict[str, Any]:
    """The logbook's totals (the `--json` object); OlmoError for a missing or damaged logbook."""
    run_dir = Path(run_dir)
    events = load_events(run_dir)
    return summarize_events(events, load_steps(run_dir))


def summarize_events(events: list[dict[str, Any]], steps: list[dict[str, Any]]) -> dict[str, Any]:
    attempts = _attempts(events, steps)
    step_time = _account(attempts, events, steps)
    ordered = [attempts[n] for n in sorted(attempts)]
    wall = sum(a.wall_s for a in ordered)
    productive = sum(a.productive_s for a in ordered)
    restarts = Counter(a.reason or "unknown" for a in ordered[:-1] if a.reason != "completed")
    if ordered and ordered[-1].reason not in (None, "completed"):
        restarts[ordered[-1].reason] += 1  # interrupted last: counted, though not yet restarted
    failures = sum(n for r, n in restarts.items() if r in FAILURES)
    mtbf = wall / failures if failures else None
    costs = [_num(e["detail"], "blocking_s") for e in events if e["event"] == "checkpoint"]
    cost = statistics.fmean(costs) if costs else None
    interval = daly_interval(cost, mtbf) if cost is not None and mtbf else None
    return {
        "goodput": productive / wall if wall > 0 else None,
        "wall_s": wall,
        "productive_s": productive,
        "queue_s": sum(max(0.0, b.start - a.end) for a, b in pairwise(ordered)),
        "lost_s": {c: sum(a.lost_s[c] for a in ordered) for c in LOST_CAUSES},
        "restarts": dict(sorted(restarts.items())),
        "failures": failures,
        "mtbf_s": mtbf,
        "failure_hosts": failure_hosts(events),
        "checkpoints": len(costs),
        "checkpoint_blocking_mean_s": cost,
        "step_time_s": step_time or None,
        "young_interval_s": math.sqrt(2 * cost * mtbf) if interval is not None else None,
        "suggested_checkpoint_interval_s": interval,
        "suggested_checkpoint_interval_steps": (
            max(1, round(interval / step_time)) if interval is not None and step_time else None
        ),
        "attempts": [_attempt_json(a) for a in ordered],
        "events": events,
    }


def failure_hosts(events: list[dict[str, Any]]) -> list[str]:
    """Nodes named by node_failure events and the hosts of crashes (watchdog hangs included),
    not of a rank whose error only says that a peer died (`peer_lost`)."""
    hosts: set[str] = set()
    for ev in events:
        if ev["event"] == "node_failure":
            nodes = ev["detail"].get("nodes") or []
            hosts.update([nodes] if isinstance(nodes, str) else map(str, nodes))
        elif ev["event"] == "crash" and not ev["detail"].get("peer_lost"):  # not a bystander
            hosts.add(str(ev["detail"].get("host") or ev.get("host") or "?"))
    return sorted(hosts)


def _attempt_json(a: Attempt) -> dict[str, Any]:
    return {"attempt": a.number, "start": a.start, "end": a.end, "reason": a.reason,
            "wall_s": a.wall_s, "productive_s": a.productive_s, "lost_s": dict(a.lost_s)}  # fmt: skip


# ---- the text ------------------------------------------------------------------------------------
def utc(t: float, fmt: str = "%H:%M:%S") -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(fmt)


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list):
        return ",".join(_value(x) for x in v[:8]) + (",…" if len(v) > 8 else "")
    text = json.dumps(v) if isinstance(v, dict) else str(v)
    return text if len(text) <= 60 else text[:57] + "…"


def details_text(ev: dict[str, Any]) -> str:
    """An event's details as `key=value ...` (long values cut)."""
    return " ".join(f"{k}={_value(v)}" for k, v in sorted(ev["detail"].items()))


def event_line(ev: dict[str, Any]) -> str:
    """One timeline line: UTC time, step, host/rank, event, its details as key=value."""
    step = "-" if ev.get("step") is None else str(ev["step"])
    where = str(ev.get("host") or "?") + ("" if ev.get("rank") is None else f"/r{ev['rank']}")
    return f"  {utc(ev['time'])}  step {step:>7}  {where:<16} {ev['event']:<15} {details_text(ev)}"


def _dur(s: float | None) -> str:
    if s is None:
        return "n/a"
    return f"{s:.1f} s" if s < 600 else f"{datetime.timedelta(seconds=round(s))} ({s:,.0f} s)"


def render(s: dict[str, Any]) -> str:
    """The timeline, grouped by attempt (events outside attempts last), then the totals."""
    groups: dict[int | None, list[dict[str, Any]]] = {}
    for ev in sorted(s["events"], key=lambda e: e["time"]):
        groups.setdefault(ev.get("attempt"), []).append(ev)
    lines = []
    for number in sorted(groups, key=lambda n: (n is None, n or 0)):
        evs = groups[number]
        head = "not attempts" if number is None else f"attempt {number}"
        lines += [f"{head} ({utc(evs[0]['time'], '%Y-%m-%d')} UTC)"]
        lines += [event_line(ev) for ev in evs]
    good = "n/a" if s["goodput"] is None else f"{100 * s['goodput']:.1f}%"
    lost = ", ".join(f"{k.replace('_', ' ')} {_dur(v)}" for k, v in s["lost_s"].items() if v)
    restarts = ", ".join(f"{r} {n}" for r, n in s["restarts"].items()) or "none"
    lines += [
        "",
        f"wall time     {_dur(s['wall_s'])} over {len(s['attempts'])} attempt(s); "
        f"queue between attempts {_dur(s['queue_s'])} (not counted)",
        f"productive    {_dur(s['productive_s'])} (steps that were kept)",
        f"goodput       {good}",
        f"lost          {lost or 'nothing'}",
        f"restarts      {restarts}",
        f"failures      {s['failures']}; MTBF {_dur(s['mtbf_s'])}; "
        f"hosts involved: {', '.join(s['failure_hosts']) or 'none'}",
    ]
    lines.append(_interval_line(s))
    return "\n".join(lines) + "\n"


def _interval_line(s: dict[str, Any]) -> str:
    cost = s["checkpoint_blocking_mean_s"]
    if cost is None:
        return "checkpoints   none recorded: no interval to suggest"
    head = f"checkpoints   {s['checkpoints']}, mean blocking {_dur(cost)}; "
    if s["suggested_checkpoint_interval_s"] is None:
        return head + "no failures yet: no interval to suggest"
    steps = s["suggested_checkpoint_interval_steps"]
    at = f" ≈ {steps} steps at {_dur(s['step_time_s'])}/step" if steps else ""
    return head + (
        f"suggested interval {_dur(s['suggested_checkpoint_interval_s'])}{at} "
        f"(Young/Daly from C = {cost:.3g} s and MTBF)"
    )


def _main(args) -> int:
    s = summarize(args.run_dir)
    print(json.dumps(s, default=str) if args.json else render(s), end="\n" if args.json else "")
    return 0


def add_cli(subparsers) -> None:
    """Register `olmo logbook`."""
    p = subparsers.add_parser(
        "logbook",
        help="the run's incidents (restarts, failures, checkpoints) as a timeline, and its goodput",
        description="Reads RUN_DIR/logbook.jsonl and metrics.jsonl: a timeline grouped by attempt, "
        "then wall time, productive time, goodput, time lost by cause, restarts by cause, MTBF, "
        "hosts involved in failures and a Young/Daly checkpoint interval.",
    )
    p.add_argument("run_dir", help="run directory written by `olmo train`")
    p.add_argument("--json", action="store_true", help="print the totals and events as one object")
    p.set_defaults(func=_main)
