"""Kill matrix on 2 gloo ranks with the shipped configs' fault path (async saves, 2 loader
workers): SIGKILLs at the injector's checkpoint points (mid-shard, after the rename before
`latest`, during keep_last deletion) and at seeded-random moments from outside the processes.

Every kill is followed by a relaunch of the same command in the same run dir (a requeue). The
resumed attempt must start right after the newest committed checkpoint, every step must be logged
once, the final weights must equal an uninterrupted run's bit for bit, and no save in progress
may be left behind.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from olmo.checkpoint.layout import committed_steps, unfinished
from olmo.logbook import read_events
from tests.distributed.launch import (
    digest,
    read_records,
    spawn_ranks,
    train_args,
    wait_all,
    wait_for_step,
)

pytestmark = pytest.mark.slow

STEPS = 12
# configs/olmo-1b.yaml's fault path (async_save, 2 loader workers) on the tiny model; a save
# every 3 steps, the last 2 kept (so step 9's commit deletes step 3).
SHIPPED = [
    f"--train.max_steps={STEPS}",
    "--checkpoint.interval=3",
    "--checkpoint.keep_last=2",
    "--checkpoint.async_save=true",
    "--data.num_workers=2",
    "--train.eval_holdout_instances=0",
]
SRUN_WAIT_S = 30
"""Like `srun --wait`: once one task ended, the others get this long, then SIGKILL."""


def _attempt(run: Path, logs: Path, faults: str = "", kill=None) -> list[int]:
    """One launch of both ranks (srun's task environment); `kill(procs)` acts while they run.
    Returns the exit codes once all ended."""
    env = {"OLMO_FAULT_INJECT": faults} if faults else {}
    procs = spawn_ranks(2, train_args(run, *SHIPPED), logs, env)
    if kill is not None:
        kill(procs)
    end = time.monotonic() + 240
    while all(p.poll() is None for p in procs) and time.monotonic() < end:
        time.sleep(0.05)
    return wait_all(procs, SRUN_WAIT_S)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The same command, uninterrupted."""
    run = tmp_path_factory.mktemp("ref") / "r"
    assert _attempt(run, run.parent / "logs") == [0, 0], (run.parent / "logs/rank0.log").read_text()
    return run


def _newest_committed(run: Path) -> int:
    steps = committed_steps(run / "checkpoints")
    return steps[0][0] if steps else 0


def _latest(run: Path) -> int:
    return int((run / "checkpoints" / "latest").readlink().name.removeprefix("step"))


def _relaunch_and_check(run: Path, reference: Path, logs: Path, faults: str = "") -> None:
    """Relaunch after a kill; the resumed run must continue from the newest committed
    checkpoint and end as the reference did."""
    committed = _newest_committed(run)
    attempts_before = {r["attempt"] for r in read_records(run, torn_tail=True)}
    assert _attempt(run, logs, faults) == [0, 0], (logs / "rank0.log").read_text()[-4000:]
    text = (logs / "rank0.log").read_text()
    if committed:
        ckpt = run / "checkpoints" / f"step{committed}"
        assert f"resumed from {ckpt} at step {committed}" in text, text[-4000:]
    records = read_records(run)  # strict: no torn line survives the resume
    final_attempt = max(r["attempt"] for r in records)
    assert final_attempt not in attempts_before
    resumed = [r["step"] for r in records if r["attempt"] == final_attempt]
    assert resumed[0] == committed + 1, (committed, resumed)
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    ref = read_records(reference)
    assert [r["batch_hash"] for r in records] == [r["batch_hash"] for r in ref]
    assert [r["loss"] for r in records] == [r["loss"] for r in ref]
    ckpts = run / "checkpoints"
    assert digest(ckpts / f"step{STEPS}") == digest(reference / "checkpoints" / f"step{STEPS}")
    assert unfinished(ckpts) == [], unfinished(ckpts)
    assert _latest(run) == STEPS == _newest_committed(run)
    assert [s for s, _ in committed_steps(ckpts)] == [STEPS, STEPS - 3]  # keep_last caught up
    read_events(run, strict=True)  # the logbook too has no torn line


def _shard_size(run: Path, step: int, rank: int) -> int:
    return (run / "checkpoints" / f".step{step}.tmp" / f"__{rank}_0.distcp").stat().st_size


# point → (fault, newest committed step once it fired, where `latest` points then)
POINTS = {
    "shard": ("kill@shard=6,rank=1", 3, 3),
    "renamed": ("kill@renamed=9", 9, 6),
    "deleting": ("kill@deleting=9", 9, 9),
}


@pytest.mark.parametrize("point", list(POINTS))
def test_kill_at_checkpoint_point(point: str, reference: Path, tmp_path: Path):
    fault, committed, latest = POINTS[point]
    run = tmp_path / "r"
    codes = _attempt(run, tmp_path / "killed", fault)
    killed = 1 if point == "shard" else 0
    assert codes[killed] == -signal.SIGKILL, codes
    log = (tmp_path / "killed" / f"rank{killed}.log").read_text()
    assert "injected kill at " in log, log[-3000:]
    assert _newest_committed(run) == committed and _latest(run) == latest
    if point == "shard":  # torn: shorter than the shard of any save (same tensors, same size)
        full = (reference / "checkpoints" / f"step{STEPS}" / "__1_0.distcp").stat().st_size
        assert 0 < _shard_size(run, 6, 1) < full, (_shard_size(run, 6, 1), full)
    if point == "deleting":  # step 9 was committed and latest moved; step 3 not yet removed
        assert [s for s, _ in committed_steps(run / "checkpoints")] == [9, 6, 3]
    _relaunch_and_check(run, reference, tmp_path / "resumed", fault)


# seed → which ranks die: one (chosen by the seed) or all at once
EXTERNAL = {14: "one", 12: "all"}  # rank 0 during step 6; all in step 9's async write


@pytest.mark.parametrize("seed", list(EXTERNAL))
def test_kill_from_outside_at_random_moment(seed: int, reference: Path, tmp_path: Path):
    """SIGKILL of one rank (or all) at a seeded-random moment: a fraction of a step after a
    random step was logged (so the moment follows the run's pace on a busy machine)."""
    rng = random.Random(seed)
    run = tmp_path / "r"
    victims = [rng.randrange(2)] if EXTERNAL[seed] == "one" else [0, 1]
    after_step, fraction = rng.randint(2, STEPS - 3), rng.random()
    alive = []

    def kill(procs):
        wait_for_step(run, after_step - 1, procs)
        t0 = time.monotonic()
        wait_for_step(run, after_step, procs)
        time.sleep(fraction * (time.monotonic() - t0))  # into the next step (or save)
        alive.extend(procs[r].poll() is None for r in victims)
        for r in victims:
            procs[r].send_signal(signal.SIGKILL)

    codes = _attempt(run, tmp_path / "killed", kill=kill)
    assert all(alive) and all(codes[r] == -signal.SIGKILL for r in victims), (alive, codes)
    steps = [r["step"] for r in read_records(run, torn_tail=True)]
    assert after_step <= steps[-1] < STEPS, (after_step, steps)
    _relaunch_and_check(run, reference, tmp_path / "resumed")


def test_metrics_reader_is_strict(tmp_path: Path):
    """Only the last line may be torn (a writer killed mid-line), and only when the caller says
    a writer may have been killed; a torn line anywhere else fails the reader."""
    good = '{"step": 1}\n{"step": 2}\n'
    (tmp_path / "metrics.jsonl").write_text(good + '{"step": 3, "lo')
    assert [r["step"] for r in read_records(tmp_path, torn_tail=True)] == [1, 2]
    with pytest.raises(AssertionError, match="last record cut short"):
        read_records(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')
    with pytest.raises(AssertionError, match=r"metrics.jsonl:2: torn or invalid record"):
        read_records(tmp_path, torn_tail=True)
