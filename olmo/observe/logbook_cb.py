"""The training run's own entries in RUN_DIR/logbook.jsonl (the writer is olmo/logbook.py).

`LogbookWriter` (a loop callback, rank 0) books checkpoints, the resume of a restarted attempt
with where its start-up time went, and skipped non-finite steps. `attempt_outcome` and
`refused` (used by olmo/run.py) book how an attempt ended and a start that never became one.
An attempt that could not say how it ended (a rank SIGKILLed, a node lost, a hang) is closed
at the next start from what it left (`olmo.logbook.close_open_attempts`).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from olmo.checkpoint.layout import MARKER, step_dir
from olmo.logbook import LOGBOOK, append_event, node_name, process_start_time, read_events
from olmo.slurm import REQUEUE_EXIT_CODE
from olmo.train.callbacks import Callback

if TYPE_CHECKING:
    from olmo.train.trainer import Trainer

# How a surviving rank sees a peer that died or hung (gloo, NCCL, the c10d store): it did not
# fail by itself, so its error does not say how the attempt ended.
_PEER_LOST = re.compile(
    r"Connection (closed|reset) by peer|Broken pipe|[Tt]imed out|remote worker|"
    r"NCCL communicator was aborted|ProcessGroupNCCL.*(timeout|abort)"
)


def peer_lost(exc: BaseException) -> bool:
    """True for the error a rank gets when another rank died or hung under it."""
    import torch.distributed as dist

    return isinstance(exc, dist.DistError) or bool(_PEER_LOST.search(str(exc)))


def _rank() -> int:
    """This process's global rank before or after the process group exists."""
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")) or 0)


def refused(run_dir: Path, error: BaseException) -> None:
    """A start refused (bad input, restart limit) before it counted as an attempt: booked only
    in a run dir that holds a run already (a refusal never creates one, nor writes into a fresh
    or empty dir), by rank 0."""
    run_dir = Path(run_dir)
    started = (run_dir / "attempts.jsonl").is_file() or (run_dir / LOGBOOK).is_file()
    if _rank() == 0 and started:
        append_event(run_dir, "start_refused", attempt=None, detail={"message": str(error)})


def attempt_outcome(
    run_dir: Path, attempt: int, rank: int, step: int | None, exit_code: int, reason: str | None
) -> None:
    """Rank 0 ends its attempt normally: `completed` (0) or, for exit 75, `walltime` when the
    stop was the SLURM end time and `requeue_signal` for a signal (`reason` from the boundary)."""
    if rank != 0:
        return
    if exit_code == 0:
        why = "completed"
    elif exit_code == REQUEUE_EXIT_CODE:
        why = "walltime" if reason and "walltime" in reason else "requeue_signal"
    else:
        why = "crash"
    detail: dict[str, Any] = {"reason": why, "exit_code": exit_code}
    if reason:
        detail["cause"] = reason
    append_event(run_dir, "attempt_end", attempt=attempt, step=step, rank=rank, detail=detail)


def attempt_failed(
    run_dir: Path, attempt: int, rank: int, step: int | None, exc: BaseException
) -> None:
    """An exception ends the attempt on this rank: `crash` {type, message, rank, host} (rank 0
    always; another rank only when it failed by itself), then rank 0's `attempt_end` —
    `nonfinite` for a non-finite streak, `crash` otherwise. A rank 0 that only lost a peer ends
    the attempt as `crash` if the peer booked a crash, else leaves it to the next start (a peer
    killed without a word is `killed`; torchrun's SIGTERM to the survivors changes nothing)."""
    from olmo.train.trainer import NonFiniteLossError

    exit_code = getattr(exc, "exit_code", 1)
    if isinstance(exc, NonFiniteLossError):
        if rank == 0:
            detail = {"reason": "nonfinite", "exit_code": exit_code, "message": str(exc)}
            append_event(run_dir, "attempt_end", attempt=attempt, step=step, rank=0, detail=detail)
        return
    lost = peer_lost(exc)
    if rank == 0 or not lost:
        detail = {
            "type": type(exc).__name__,
            "message": str(exc)[:2000],
            "rank": rank,
            "host": node_name(),  # as node lists and node_failure name it
            "peer_lost": lost,
        }
        append_event(run_dir, "crash", attempt=attempt, step=step, rank=rank, detail=detail)
    if rank != 0:
        return
    if lost and not _peer_crashed(run_dir, attempt):
        return  # killed or hung: decided at the next start
    detail = {"reason": "crash", "exit_code": exit_code}
    append_event(run_dir, "attempt_end", attempt=attempt, step=step, rank=0, detail=detail)


def _peer_crashed(run_dir: Path, attempt: int, wait_s: float = 2.0) -> bool:
    """Whether another rank booked a crash of its own in this attempt (it writes that before
    its process exits, i.e. before its peers notice; `wait_s` covers a slow shared file system)."""
    end = time.monotonic() + wait_s
    while True:
        crashes = [
            e["detail"]
            for e in read_events(run_dir, strict=False)
            if e["event"] == "crash" and e["attempt"] == attempt and e["rank"] != 0
        ]
        if any(not d.get("peer_lost") and d.get("type") != "hang" for d in crashes):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.2)


@dataclass
class _PendingCheckpoint:
    step: int
    started: float
    """Unix time the save began."""
    blocking_s: float


class LogbookWriter(Callback):
    """Rank 0 books `checkpoint`, `resume` and `nonfinite_skip` events of the loop.

    `timings` holds the start-up marks setup and the trainer took (olmo/train/setup.py
    Components.timings): `setup_begin` (Unix time), `process_group_s`, `checkpoint_load_s`,
    `data_fast_forward_s`."""

    def __init__(self, run_dir: Path, attempt: int, is_main: bool, timings: dict[str, float]):
        self.run_dir, self.attempt, self.is_main, self.timings = run_dir, attempt, is_main, timings
        self.process_start = process_start_time()
        self._resume: dict[str, Any] | None = None
        self._train_start = 0.0
        self._first_step: int | None = None
        self._pending: list[_PendingCheckpoint] = []

    def _append(self, event: str, step: int | None, detail: dict[str, Any], **kw: Any) -> None:
        append_event(
            self.run_dir, event, attempt=self.attempt, step=step, rank=0, detail=detail, **kw
        )

    def on_resume(self, trainer: Trainer, step: int) -> None:
        if not self.is_main:
            return
        # Before MetricsWriter drops the superseded records: they are the redone steps.
        redone = _steps_logged_past(self.run_dir / "metrics.jsonl", step)
        if step > 0 or redone > 0 or self.attempt > 1:
            self._resume = {"from_step": step, "redone_steps": redone}

    def on_train_start(self, trainer: Trainer) -> None:
        self._train_start = time.time()

    def post_step(self, trainer: Trainer, step: int) -> None:
        if self._first_step is not None:
            return
        self._first_step = step
        if self._resume is not None:
            self._append("resume", step, {**self._resume, **self._breakdown(time.time())})

    def _breakdown(self, now: float) -> dict[str, Any]:
        t = self.timings
        parts = {
            "startup_s": t.get("setup_begin", self.process_start) - self.process_start,
            "process_group_s": t.get("process_group_s", 0.0),
            "checkpoint_load_s": t.get("checkpoint_load_s", 0.0),
            "data_fast_forward_s": t.get("data_fast_forward_s", 0.0),
            "first_step_s": now - self._train_start,
        }
        total = now - self.process_start
        parts["other_s"] = total - sum(parts.values())  # model/data build, callbacks, record
        return {
            "seconds_to_first_step": round(total, 3),
            "breakdown": {k: round(max(v, 0.0), 3) for k, v in parts.items()},
        }

    def on_metrics(self, trainer: Trainer, records: list[dict[str, Any]]) -> None:
        bad = [r["step"] for r in records if not math.isfinite(r["grad_norm"])]
        if self.is_main and bad:
            self._append("nonfinite_skip", bad[-1], {"steps": bad})

    def on_checkpoint(self, trainer: Trainer, step: int) -> None:
        if not self.is_main:
            return
        ckpt = trainer.checkpointer
        blocking = float(ckpt.last_blocking_s)
        self._pending.append(_PendingCheckpoint(step, time.time() - blocking, blocking))
        self._book_committed(trainer)

    def on_step_end(self, trainer: Trainer, step: int) -> None:
        if self._pending:
            self._book_committed(trainer)

    def on_train_end(self, trainer: Trainer, status: str) -> None:
        if self._pending:  # the trainer waited for the last async write before this hook
            self._book_committed(trainer)

    def _book_committed(self, trainer: Trainer) -> None:
        """Book saves whose commit marker exists (at once when synchronous, when the writer
        thread committed when async): `seconds` from the save's start to the commit."""
        root = trainer.checkpointer.root
        while self._pending:
            p = self._pending[0]
            marker = step_dir(root, p.step) / MARKER
            try:
                committed_at = marker.stat().st_mtime
            except FileNotFoundError:
                return
            self._pending.pop(0)
            detail = {
                "seconds": round(max(committed_at - p.started, p.blocking_s), 4),
                "blocking_s": round(p.blocking_s, 4),
            }
            self._append("checkpoint", p.step, detail, when=committed_at)


def _steps_logged_past(path: Path, step: int) -> int:
    """Records of metrics.jsonl past `step`: what a killed attempt trained and must redo."""
    if not path.is_file():
        return 0
    n = 0
    for raw in path.read_bytes().splitlines():
        try:
            n += json.loads(raw).get("step", 0) > step
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            continue
    return n
