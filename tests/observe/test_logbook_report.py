"""`olmo logbook`: goodput and lost time on logbooks whose answer is worked out by hand below,
the --json keys, and one-line errors for a missing run dir, no logbook or a damaged line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from olmo.cli import main
from olmo.logbook import append_event
from olmo.observe.logbook_report import daly_interval, render, summarize
from olmo.observe.plots import incident_marks
from olmo.observe.report import write_report
from olmo.observe.rundata import load_run


def _steps(run: Path, attempt: int | None, times: dict[int, float], extra: dict | None = None):
    """metrics.jsonl records (attempt None: an older record without the field, attempt 1)."""
    with open(run / "metrics.jsonl", "a") as f:
        for step, t in times.items():
            rec = {
                "step": step,
                "attempt": attempt,
                "time": t,
                "loss": 5.0,
                **(extra or {}).get(step, {}),
            }
            f.write(json.dumps({k: v for k, v in rec.items() if v is not None}) + "\n")


def _ev(run: Path, event: str, when: float, attempt: int | None, step=None, **detail) -> None:
    append_event(run, event, attempt=attempt, step=step, detail=detail, when=when, host="n1")


@pytest.fixture
def killed_run(tmp_path: Path) -> Path:
    """Attempt 1 starts at 1000, steps 1-8 each 1 s from 1010, a checkpoint after step 5 blocks
    0.5 s, a node dies after step 8 (steps 6-8 superseded in metrics.jsonl). 12 s in the
    queue; attempt 2 starts at 1030, resumes from step 5 (3 steps redone), first step 6 s after
    its start, an eval after step 8 (0.5 s), a final checkpoint (0.5 s), ends at 1042."""
    run = tmp_path / "run"
    run.mkdir()
    _ev(run, "start_refused", 990.0, None, message="max_restarts reached")  # not an attempt
    _ev(run, "attempt_start", 1000.0, 1, job_id="11", nodes=["n1", "n2"], restart_count=0)
    _steps(run, 1, {s: 1009.0 + s for s in range(1, 6)})  # kept: 1-5 (6-8 superseded)
    _ev(run, "checkpoint", 1014.5, 1, step=5, seconds=2.0, blocking_s=0.5)
    _ev(run, "node_failure", 1029.0, 1, nodes=["n2"])
    # closed at the next start, timed at its last sign of life (step 8's record, superseded)
    _ev(run, "attempt_end", 1017.5, 1, reason="killed", inferred=True)
    _ev(run, "attempt_start", 1030.0, 2, job_id="11", nodes=["n1", "n3"], restart_count=1)
    _ev(run, "resume", 1036.0, 2, step=5, from_step=5, redone_steps=3, seconds_to_first_step=6.0)
    times = {6: 1036.0, 7: 1037.0, 8: 1038.0, 9: 1039.5, 10: 1040.5}
    _steps(run, 2, times, {8: {"eval_loss": 5.1, "eval_s": 0.5}})
    _ev(run, "checkpoint", 1041.0, 2, step=10, seconds=1.0, blocking_s=0.5)
    _ev(run, "attempt_end", 1042.0, 2, reason="completed", exit_code=0)
    return run


@pytest.mark.parametrize("exact_end", [True, False])
def test_goodput_and_lost_time_of_a_killed_attempt(killed_run: Path, exact_end: bool):
    if not exact_end:  # a writer that books the kill when it finds it, not when it happened
        events = [json.loads(x) for x in (killed_run / "logbook.jsonl").read_text().splitlines()]
        (killed,) = [e for e in events if e["detail"].get("reason") == "killed"]
        killed.update(time=1029.9, detail={"reason": "killed"})
        (killed_run / "logbook.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    s = summarize(killed_run)
    # Attempt 1: 5 kept steps of 1 s (the first credited the median step); start-up
    # 1010 - 1000 - 1 = 9; 3 redone steps x 1 s; blocking 0.5; it ends at its last sign of
    # life, 1017.5: booked so (exact), else estimated as its last event (the checkpoint done at
    # 1014.5) + 3 redone steps. Wall 17.5 = 5 + 9 + 3 + 0.5.
    # Attempt 2: steps 6-10 took 4.5 s + 1 s credited - 0.5 s eval inside them = 5; start-up
    # 6 - 1 = 5; eval 0.5; blocking 0.5; wall 12, 1 s unexplained (after its last step).
    assert s["wall_s"] == pytest.approx(17.5 + 12)
    assert s["productive_s"] == pytest.approx(5 + 5)
    assert s["goodput"] == pytest.approx(10 / 29.5)
    assert s["queue_s"] == pytest.approx(1030 - 1017.5)
    assert s["lost_s"] == pytest.approx(
        {
            "startup": 9 + 5,
            "redone_steps": 3,
            "rollback": 0.0,
            "checkpoint_blocking": 1.0,
            "evaluation": 0.5,
            "hangs": 0.0,
            "other": 1.0,
        }
    )
    assert s["productive_s"] + sum(s["lost_s"].values()) == pytest.approx(s["wall_s"])
    assert s["restarts"] == {"killed": 1} and s["failures"] == 1
    assert s["mtbf_s"] == pytest.approx(29.5) and s["failure_hosts"] == ["n2"]
    assert s["checkpoint_blocking_mean_s"] == pytest.approx(0.5) and s["step_time_s"] == 1.0
    r = 0.5 / (2 * 29.5)  # Daly with C = 0.5 s, M = 29.5 s
    daly = math.sqrt(29.5) * (1 + math.sqrt(r) / 3 + r / 9) - 0.5
    assert s["suggested_checkpoint_interval_s"] == pytest.approx(daly)
    assert s["young_interval_s"] == pytest.approx(math.sqrt(29.5))
    assert s["suggested_checkpoint_interval_steps"] == round(daly)
    assert [a["wall_s"] for a in s["attempts"]] == pytest.approx([17.5, 12])


def test_a_hang_costs_the_time_after_the_last_step(tmp_path: Path):
    run = tmp_path / "run"
    _ev(run, "attempt_start", 2000.0, 1)
    _steps(run, None, {s: 2000.0 + s for s in range(1, 5)})
    _ev(run, "crash", 2034.0, 1, step=4, type="hang", message="no step for 30 s", rank=0,
        host="n3", stacks="stacks/rank0.txt")  # fmt: skip
    _ev(run, "crash", 2034.5, 1, type="RuntimeError", message="Connection closed by peer",
        rank=1, host="n4", peer_lost=True)  # fmt: skip
    _ev(run, "attempt_end", 2034.0, 1, reason="hang", exit_code=86)
    s = summarize(run)
    assert s["wall_s"] == pytest.approx(34) and s["productive_s"] == pytest.approx(4)
    assert s["lost_s"]["hangs"] == pytest.approx(34 - 4) and s["lost_s"]["other"] == 0
    assert s["restarts"] == {"hang": 1} and s["failure_hosts"] == ["n3"]
    assert s["suggested_checkpoint_interval_s"] is None  # no checkpoint cost measured
    assert "no interval to suggest" in render(s)


def test_the_first_attempts_start_up_counts_from_its_process_start(tmp_path: Path):
    """attempt_start is booked after imports and set-up: its `process_start` (8 s earlier) begins
    the attempt, and those 8 s are start-up lost, not missing from the wall time."""
    run = tmp_path / "run"
    _ev(run, "attempt_start", 3010.0, 1, process_start=3002.0)
    _steps(run, 1, {s: 3012.0 + s for s in range(1, 5)})  # steps 1-4 at 3013..3016
    _ev(run, "attempt_end", 3016.0, 1, reason="completed", exit_code=0)
    s = summarize(run)
    assert s["wall_s"] == pytest.approx(14) and s["productive_s"] == pytest.approx(4)
    assert s["lost_s"]["startup"] == pytest.approx(10) and s["goodput"] == pytest.approx(4 / 14)


def test_a_rollback_loses_the_steps_it_drops(tmp_path: Path):
    run = tmp_path / "run"
    _ev(run, "attempt_start", 3000.0, 1)
    # steps 1-6 at 3001-3006; 6 spiked: back to the step-4 checkpoint, 5 and 6 trained again
    _steps(run, 1, {1: 3001.0, 2: 3002.0, 3: 3003.0, 4: 3004.0, 5: 3007.5, 6: 3008.5, 7: 3009.5})
    _ev(run, "checkpoint", 3004.0, 1, step=4, seconds=0.0, blocking_s=0.0)
    _ev(run, "loss_spike", 3006.0, 1, step=6, loss=9.0, threshold=6.0, action="rollback")
    _ev(run, "rollback", 3006.5, 1, step=4, from_step=6, to_step=4, checkpoint="step4")
    _ev(run, "attempt_end", 3010.0, 1, reason="completed", exit_code=0)
    s = summarize(run)
    # kept: 6 intervals of 1 s + step 1's credited 1 s; the 4 -> 5 interval (3.5 s) kept 1 s
    assert s["productive_s"] == pytest.approx(7) and s["lost_s"]["rollback"] == pytest.approx(2.5)
    assert s["lost_s"]["other"] == pytest.approx(0.5) and s["goodput"] == pytest.approx(0.7)


def test_daly_interval_limits():
    assert daly_interval(1.0, 1e6) == pytest.approx(math.sqrt(2e6), rel=2e-3)  # ≈ Young
    assert daly_interval(10.0, 4.0) == 4.0  # saving costs more than 2 MTBF: M itself


def test_json_and_text(killed_run: Path, capsys):
    assert main(["logbook", str(killed_run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("goodput", "wall_s", "productive_s", "lost_s", "restarts", "events", "queue_s",
                "mtbf_s", "suggested_checkpoint_interval_s"):  # fmt: skip
        assert key in out, key
    assert [e["event"] for e in out["events"]][:2] == ["start_refused", "attempt_start"]
    assert main(["logbook", str(killed_run)]) == 0
    text = capsys.readouterr().out
    heads = [line.split(" (")[0] for line in text.splitlines() if not line.startswith(" ")]
    assert heads[:3] == ["attempt 1", "attempt 2", "not attempts"]
    assert "killed" in text and "nodes=n2" in text and "goodput       33.9%" in text


def _error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def test_errors_are_one_line(killed_run: Path, tmp_path: Path, capsys):
    assert "no such run directory" in _error(["logbook", str(tmp_path / "nope")], capsys)
    assert "logbook.jsonl: not found" in _error(["logbook", str(tmp_path)], capsys)
    book = killed_run / "logbook.jsonl"
    lines = book.read_text().splitlines()
    book.write_text("\n".join(lines) + '\n{"time": 1043, "ev')  # torn last line: a kill
    assert main(["logbook", str(killed_run), "--json"]) == 0
    capsys.readouterr()
    book.write_text("\n".join([lines[0], '{"time": 1', *lines[1:]]) + "\n")
    assert "logbook.jsonl:2: not a JSON line" in _error(["logbook", str(killed_run)], capsys)
    bad = json.loads(lines[1]) | {"time": "noon"}
    book.write_text("\n".join([lines[0], json.dumps(bad), *lines[2:]]) + "\n")
    assert "logbook.jsonl:2: 'time' must be" in _error(["logbook", str(killed_run)], capsys)


def test_report_marks_incidents_and_shows_goodput(killed_run: Path, tmp_path: Path):
    s = write_report(killed_run, tmp_path / "report")
    assert s["goodput"] == pytest.approx(10 / 29.5)
    assert [(e["event"], e["attempt"]) for e in s["incidents"]] == [
        ("start_refused", None), ("attempt_end", 1), ("node_failure", 1)]  # fmt: skip
    t0 = load_run(killed_run).first_time()
    marks = incident_marks(t0, s["incidents"])
    assert marks[1:] == [(1017.5 - t0, "attempt_end: killed"), (1029.0 - t0, "node_failure")]
    md = (tmp_path / "report" / "summary.md").read_text()
    assert "| goodput | 33.9% " in md and "## Incidents" in md and "nodes=n2" in md
    assert "timeline.png" in s["plots"]
    saved = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert saved["logbook"]["lost_s"]["redone_steps"] == pytest.approx(3)
