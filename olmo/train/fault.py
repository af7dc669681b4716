"""Fault handling that runs beside the loop: signal flags, SLURM walltime, fault drills.

The hang watchdog is a supervisor process (olmo.train.watchdog); `Watchdog` is its trainer end.

Handlers only set flags; the trainer acts on them at a step boundary after all ranks agree.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from olmo.checkpoint.layout import step_dir, tmp_step_dir
from olmo.errors import OlmoError
from olmo.slurm import (  # noqa: F401  (re-exported: the loop's SLURM facts)
    REQUEUE_EXIT_CODE,
    WATCHDOG_EXIT_CODE,
    job_end_time,
    parse_squeue_time,
)
from olmo.train.callbacks import Callback
from olmo.train.drills import FAULT_ENV as _DRILLS_ENV
from olmo.train.drills import is_drill
from olmo.train.watchdog import Watchdog  # noqa: F401  (re-exported: the trainer's end)

if TYPE_CHECKING:
    from olmo.train.trainer import Trainer

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class StopFlag:
    """Set by SIGTERM/SIGUSR1/SIGUSR2 (preemption, walltime warning, submitit's interrupt)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        self.signum = signum

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    @property
    def is_set(self) -> bool:
        return self.signum is not None


# ---- fault injection (tests) -------------------------------------------------------------
FAULT_ENV = _DRILLS_ENV
"""Test-only: `ACTION@WHEN[,rank=R][;...]`, e.g. `kill@step=7,rank=1;kill@save=10;hang@step=5;
nan@step=4-8;crash@step=6;kill@shard=6,rank=1;kill@renamed=9;kill@deleting=9`.
kill = SIGKILL itself at a point of step N:
  step=N      after step N's boundary (metrics flushed, checkpoint saved or handed to the async
              writer);
  shard=N     while this rank's DCP shard of step N is written (a thread started before the save
              kills the process once `.stepN.tmp/__R_0.distcp` has bytes);
  save=N      after this rank's shards of step N are written, before the commit;
  renamed=N   after `.stepN.tmp` is renamed to `stepN` (committed), before `latest` moves;
  deleting=N  in step N's commit, after `latest` moved, before keep_last removes an old one.
renamed and deleting are points of rank 0's commit (the only rank that commits).
hang = stop making progress after step N (asleep, the GIL released); hang_gil = the same in a C
loop that holds the GIL (no Python thread runs again); crash = raise an exception there;
nan = non-finite gradients and loss at step(s) N[-M]. Without rank= every rank acts. kill,
hang, hang_gil and crash fire once per run dir (a marker file remembers them), so the
restarted run gets past the step."""
_FAULT_RE = re.compile(
    r"^(kill|hang_gil|hang|nan|crash)@(step|save|shard|renamed|deleting)=(\d+)"
    r"(?:-(\d+))?(?:,rank=(\d+))?$"
)
_SHARD_POLL_S = 0.0005
"""How often the shard=N watcher looks at the shard file (a small shard is written in ms)."""


@dataclass(frozen=True)
class Fault:
    action: str
    where: str
    first: int
    last: int
    rank: int | None
    index: int


def parse_faults(text: str) -> list[Fault]:
    faults = []
    for i, part in enumerate(p.strip() for p in text.split(";") if p.strip()):
        if is_drill(part):  # spike@/slow@: acted out by olmo.train.drills
            continue
        m = _FAULT_RE.match(part)
        if not m or (m.group(1) != "kill" and m.group(2) != "step"):
            raise OlmoError(
                f"{FAULT_ENV}: cannot parse '{part}'; expected e.g. kill@step=7,rank=1, "
                "kill@save=10, kill@shard=10, kill@renamed=10, kill@deleting=10, hang@step=5, "
                "crash@step=6 or nan@step=4-8"
            )
        action, where, first, last, rank = m.groups()
        last = last or first
        faults.append(
            Fault(action, where, int(first), int(last), None if rank is None else int(rank), i)
        )
    return faults


class FaultInjection(Callback):
    """Acts out the faults of $OLMO_FAULT_INJECT at deterministic points of the loop (a drill
    for tests and operators: attached by the composition root only when the variable is set)."""

    def __init__(self, faults: list[Fault], rank: int, run_dir: Path):
        self.rank, self.run_dir = rank, run_dir
        self.faults = [f for f in faults if f.rank is None or f.rank == rank]

    @classmethod
    def from_env(cls, rank: int, run_dir: Path) -> FaultInjection | None:
        text = os.environ.get(FAULT_ENV, "")
        return cls(parse_faults(text), rank, run_dir) if text.strip() else None

    def _due(self, action: str, where: str, step: int) -> Fault | None:
        for f in self.faults:
            if f.action == action and f.where == where and f.first <= step <= f.last:
                return f
        return None

    def _marker(self, fault: Fault) -> Path:
        return self.run_dir / f".fault{fault.index}-rank{self.rank}"

    def _fire_once(self, fault: Fault) -> bool:
        """True the first time this fault fires on this rank in this run dir."""
        try:
            fd = os.open(self._marker(fault), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.fsync(fd)
        os.close(fd)
        return True

    def pre_optim_step(self, trainer: Trainer, step: int) -> None:
        """nan@step: what a numerical blow-up looks like to the loop."""
        if self._due("nan", "step", step) is None:
            return
        for p in trainer.model.parameters():
            if p.grad is not None:
                p.grad.fill_(float("nan"))
        trainer.loss_sum = trainer.loss_sum * float("nan")

    def on_step_end(self, trainer: Trainer, step: int) -> None:
        for action in ("kill", "hang", "hang_gil", "crash"):
            fault = self._due(action, "step", step)
            if fault and self._fire_once(fault):
                self._act(action, f"step {step}")

    def on_shards_written(self, trainer: Trainer, step: int) -> None:
        fault = self._due("kill", "save", step)
        if fault and self._fire_once(fault):
            self._act("kill", f"the save of step {step}")

    def on_train_start(self, trainer: Trainer) -> None:
        """kill@renamed / kill@deleting: listen at the named points of the checkpoint commit."""
        if not any(f.where in ("renamed", "deleting") for f in self.faults):
            return
        before = trainer.checkpointer.on_point  # another listener keeps its hook

        def at_point(point: str, step: int) -> None:
            if before is not None:
                before(point, step)
            fault = self._due("kill", point, step)
            if fault and self._fire_once(fault):
                self._act("kill", f"the commit of step {step} ({point})")

        trainer.checkpointer.on_point = at_point

    def post_step(self, trainer: Trainer, step: int) -> None:
        """kill@shard: step N's save starts at this step's boundary; watch for its shard."""
        fault = self._due("kill", "shard", step)
        if fault is None or self._marker(fault).exists():
            return
        root = trainer.checkpointer.root
        shard = tmp_step_dir(root, step) / f"__{self.rank}_0.distcp"  # DCP's name for our shard
        args = (fault, shard, step_dir(root, step), step, trainer)
        threading.Thread(target=self._kill_mid_shard, args=args, daemon=True).start()

    def _kill_mid_shard(
        self, fault: Fault, shard: Path, final: Path, step: int, trainer: Trainer
    ) -> None:
        """Kill once the shard has bytes; give up once the step is committed, or when training
        moved on and no save of the step began (save() makes the temp dir before returning)."""
        while not final.exists():
            if trainer.state.step > step and not shard.parent.exists():
                break
            try:
                size = shard.stat().st_size
            except FileNotFoundError:
                size = 0
            if size > 0 and self._fire_once(fault):
                self._act("kill", f"the write of {shard.name} of step {step} ({size} bytes)")
            time.sleep(_SHARD_POLL_S)
        log.warning("%s: kill@shard=%d missed: no shard of that step was written", FAULT_ENV, step)

    def _act(self, action: str, when: str) -> None:
        log.warning("%s: injected %s at %s on rank %d", FAULT_ENV, action, when, self.rank)
        for handler in logging.getLogger().handlers:
            handler.flush()
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if action == "crash":  # an unexpected exception out of the loop (a bug, a bad file)
            raise RuntimeError(f"{FAULT_ENV}: injected crash at {when} on rank {self.rank}")
        if action == "hang_gil":
            _hold_gil()
        while True:  # hang: the main thread makes no progress; the watchdog must notice
            time.sleep(1)


def _hold_gil() -> None:
    """A hang no Python thread can see: one C call that never returns to the interpreter loop,
    so the GIL is never released (a stuck extension looks the same)."""
    sum(range(10**18))
