"""Exact resume under real failures: torchrun --max-restarts, re-launching, resharding.

Real gloo process groups, real DCP checkpoints, real SIGKILLs (OLMO_FAULT_INJECT places them
at deterministic points). The reference is an uninterrupted run of the same command.
"""

from __future__ import annotations

import math
import shutil
import signal
from pathlib import Path

import pytest

from olmo.logbook import read_events
from tests.distributed.launch import (
    digest,
    metric_steps,
    read_records,
    spawn_ranks,
    torchrun,
    train_args,
    wait_all,
    wait_for_step,
)

pytestmark = pytest.mark.slow
STEPS = ["--train.max_steps=20"]


def _ok(proc) -> None:
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.fixture(scope="module")
def ref2(tmp_path_factory) -> Path:
    """Uninterrupted 2-rank run of 20 steps."""
    run = tmp_path_factory.mktemp("ref2") / "r"
    _ok(torchrun(2, train_args(run, *STEPS)))
    return run


@pytest.fixture(scope="module")
def ref1(tmp_path_factory) -> Path:
    """Uninterrupted 1-rank run of the same 20 steps (same global batch)."""
    run = tmp_path_factory.mktemp("ref1") / "r"
    _ok(torchrun(1, train_args(run, *STEPS)))
    return run


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in read_records(run)]


def _close(a: list[float], b: list[float], rel: float = 1e-4) -> bool:
    return len(a) == len(b) and all(
        math.isclose(x, y, rel_tol=rel) for x, y in zip(a, b, strict=True)
    )


def test_two_ranks_match_one_rank(ref1: Path, ref2: Path):
    one, two = _losses(ref1), _losses(ref2)
    assert len(one) == len(two) == 20
    assert _close(one, two), list(zip(one, two, strict=True))
    assert two[-1] < 0.85 * two[0]  # it trained
    # same batches on both world sizes
    assert [r["batch_hash"] for r in read_records(ref1)] == [
        r["batch_hash"] for r in read_records(ref2)
    ]


def test_torchrun_max_restarts_kill_matrix(ref2: Path, tmp_path: Path):
    """Three SIGKILLs of one rank (before the first checkpoint, during a save, late) under one
    torchrun --max-restarts: restarted workers rejoin, the result is bitwise the reference."""
    run = tmp_path / "r"
    faults = "kill@step=3,rank=1;kill@save=10,rank=0;kill@step=17,rank=1"
    proc = torchrun(2, train_args(run, *STEPS), {"OLMO_FAULT_INJECT": faults}, max_restarts=3)
    _ok(proc)
    assert proc.stderr.count("injected kill") == 3, proc.stderr[-4000:]
    assert "injected kill at the save of step 10" in proc.stderr
    assert "resumed from" in proc.stderr and "checkpoints/step5 at step 5" in proc.stderr
    assert "checkpoints/step15 at step 15" in proc.stderr
    assert metric_steps(run) == list(range(1, 21))
    assert sorted({r["attempt"] for r in read_records(run)}) == [2, 3, 4]
    assert len((run / "attempts.jsonl").read_text().splitlines()) == 4
    assert digest(run / "checkpoints" / "step20") == digest(ref2 / "checkpoints" / "step20")
    assert _losses(run) == _losses(ref2)  # bitwise, step by step
    # The logbook (#19): each SIGKILLed attempt is `killed` (not a crash, and not the
    # requeue_signal that torchrun's SIGTERM to the survivor could suggest), its redone steps
    # those logged past the checkpoint the next attempt resumed from.
    events = read_events(run)
    assert _ends(events) == {1: "killed", 2: "killed", 3: "killed", 4: "completed"}
    assert _resumes(events) == {2: (0, 3), 3: (5, 5), 4: (15, 2)}
    crashes = [e for e in events if e["event"] == "crash"]
    assert crashes and all(e["rank"] == 0 and e["detail"]["peer_lost"] for e in crashes)


def _ends(events: list[dict]) -> dict[int, str]:
    return {e["attempt"]: e["detail"]["reason"] for e in events if e["event"] == "attempt_end"}


def _resumes(events: list[dict]) -> dict[int, tuple[int, int]]:
    """(from_step, redone_steps) of each resumed attempt."""
    return {
        e["attempt"]: (e["detail"]["from_step"], e["detail"]["redone_steps"])
        for e in events
        if e["event"] == "resume"
    }


def test_relaunch_kill_matrix(ref2: Path, tmp_path: Path):
    """The same three kinds of kill, each followed by re-running the same command."""
    run = tmp_path / "r"
    faults = {"OLMO_FAULT_INJECT": "kill@step=8,rank=0;kill@step=12;kill@save=15,rank=1"}
    codes = []
    for _ in range(5):
        proc = torchrun(2, train_args(run, *STEPS), faults)
        codes.append(proc.returncode)
        if proc.returncode == 0:
            break
    assert codes[:3] != [0, 0, 0] and codes[-1] == 0 and len(codes) == 4, codes
    assert metric_steps(run) == list(range(1, 21))
    assert digest(run / "checkpoints" / "step20") == digest(ref2 / "checkpoints" / "step20")
    assert _losses(run) == _losses(ref2)


@pytest.mark.parametrize(("src", "nproc"), [("ref2", 1), ("ref1", 2)])
def test_resharded_resume_continues(src: str, nproc: int, request, tmp_path: Path):
    """A checkpoint written by N ranks continues on M ranks: same data, losses continue."""
    ref = request.getfixturevalue(src)
    run = tmp_path / "r"
    ckpt = tmp_path / "step10"
    shutil.copytree(ref / "checkpoints" / "step10", ckpt)
    proc = torchrun(nproc, train_args(run, *STEPS, f"--checkpoint.load={ckpt}"))
    _ok(proc)
    assert "resharding: checkpoint written by" in proc.stderr
    assert "per-rank RNG states do not" in proc.stderr
    recs = read_records(run)
    assert [r["step"] for r in recs] == list(range(11, 21))
    assert [r["batch_hash"] for r in recs] == [r["batch_hash"] for r in read_records(ref)[10:]]
    assert _close([r["loss"] for r in recs], _losses(ref)[10:])


def test_signals_checkpoint_requeue_and_resume_exactly(ref2: Path, tmp_path: Path):
    """SIGUSR1 to one rank, SIGTERM to the other, SIGUSR2 to both (srun-style launch): every time
    all ranks stop at the same step boundary, checkpoint there and exit 75; re-running the same
    command continues, and the end result is bitwise the uninterrupted run."""
    run = tmp_path / "r"
    args = train_args(run, *STEPS)
    for sig, targets in [(signal.SIGUSR1, [1]), (signal.SIGTERM, [0]), (signal.SIGUSR2, [0, 1])]:
        start = metric_steps(run)[-1] if (run / "metrics.jsonl").exists() else 0
        logs = tmp_path / sig.name
        procs = spawn_ranks(2, args, logs)
        wait_for_step(run, start + 1, procs)
        for r in targets:
            procs[r].send_signal(sig)
        assert wait_all(procs, 120) == [75, 75], (logs / "rank0.log").read_text()[-3000:]
        last = metric_steps(run)[-1]
        assert start < last < 20
        assert (run / "checkpoints" / f"step{last}" / "COMMITTED.json").is_file()
        for r in (0, 1):
            text = (logs / f"rank{r}.log").read_text()
            assert f"step {last}: {sig.name} received → checkpoint and exit for requeue" in text
    procs = spawn_ranks(2, args, tmp_path / "final")
    assert wait_all(procs, 120) == [0, 0]
    assert metric_steps(run) == list(range(1, 21))
    # The logbook (#19): three requeues by signal, each resumed where it stopped, nothing redone.
    events = read_events(run)
    ends = {e["attempt"]: e for e in events if e["event"] == "attempt_end"}
    assert _ends(events) == {
        1: "requeue_signal",
        2: "requeue_signal",
        3: "requeue_signal",
        4: "completed",
    }
    causes = [ends[a]["detail"]["cause"] for a in (1, 2, 3)]
    assert causes == ["SIGUSR1 received", "SIGTERM received", "SIGUSR2 received"]
    assert _resumes(events) == {a + 1: (ends[a]["step"], 0) for a in (1, 2, 3)}
    assert digest(run / "checkpoints" / "step20") == digest(ref2 / "checkpoints" / "step20")
    assert _losses(run) == _losses(ref2)
