"""Slow-node detection (`train.straggler.*`): each rank's busy time per step, gathered once per
log interval (one all_gather of one number at the flush), compared with the median over ranks.

A rank's busy time is the host time from the start of its step (after the previous boundary's
agreement) to the end of its step's work, so the time it waits at the boundary for a slower peer
is not counted: the slow rank shows, its peers do not. A rank slower than factor × median for
`intervals` log intervals in a row is named once per streak: a `straggler` logbook event with its
host (wandb shows logbook events too), `stragglers` on the metrics records while it stays slow
(each record also has `straggler_ratio`, the slowest rank's time over the median), and with
`restart.exclude_stragglers` in the cluster profile its host goes into RUN_DIR/failed_nodes.txt,
which the batch script excludes on the next requeue.
"""

from __future__ import annotations

import logging
import os
import socket
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from olmo.errors import OlmoError
from olmo.logbook import append_event
from olmo.slurm import EXCLUDE_STRAGGLERS_ENV
from olmo.train.callbacks import Callback

if TYPE_CHECKING:
    from olmo.train.trainer import Trainer

log = logging.getLogger("olmo.train")


@dataclass
class StragglerConfig:
    factor: float = 1.5
    """A rank whose busy time per step exceeds factor × the median over ranks is slow in that
    interval; 0 = off (no collective)."""
    intervals: int = 3
    """Log intervals in a row a rank must be slow to be named a straggler."""

    def validate(self) -> None:
        if self.factor < 0 or (0 < self.factor <= 1) or self.intervals < 1:
            raise OlmoError(
                f"train.straggler.factor ({self.factor}) must be 0 (off) or > 1 and "
                f"train.straggler.intervals ({self.intervals}) at least 1"
            )


def node_name() -> str:
    """This node's name as SLURM knows it (node lists, ExcNodeList), else the hostname."""
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def slow_ranks(times: list[float], factor: float) -> list[int]:
    """Ranks whose time exceeds factor × the median of all ranks' times."""
    med = statistics.median(times)
    return [r for r, t in enumerate(times) if med > 0 and t > factor * med]


def exclude_node(run_dir: Path, host: str) -> bool:
    """Add `host` to RUN_DIR/failed_nodes.txt (once); True if it was added."""
    path = run_dir / "failed_nodes.txt"
    if path.is_file() and host in path.read_text().split():
        return False
    with open(path, "a") as f:
        f.write(host + "\n")
    return True


class StragglerMonitor(Callback):
    """Measures this rank's busy time and names stragglers at each flush (on every rank)."""

    def __init__(self, cfg: StragglerConfig, exclude: bool | None = None):
        self.cfg = cfg
        self.exclude = os.environ.get(EXCLUDE_STRAGGLERS_ENV) == "1" if exclude is None else exclude
        self.hosts: list[str] = []
        self.streak: list[int] = []
        self._mark: float | None = None
        self._busy, self._steps = 0.0, 0

    def on_train_start(self, trainer: Trainer) -> None:
        world = trainer.env.world_size
        self.hosts = [node_name()] * world
        if world > 1:  # once per attempt: which host each rank runs on
            dist.all_gather_object(self.hosts, node_name())
        self.streak = [0] * world

    def on_resume(self, trainer: Trainer, step: int) -> None:
        self._mark, self._busy, self._steps = None, 0.0, 0

    def pre_step(self, trainer: Trainer, step: int) -> None:
        if self._mark is None:
            self._mark = time.perf_counter()

    def post_step(self, trainer: Trainer, step: int) -> None:
        if self._mark is not None:
            self._busy += time.perf_counter() - self._mark
            self._steps += 1

    def on_step_end(self, trainer: Trainer, step: int) -> None:
        self._mark = time.perf_counter()  # after the boundary: waiting for peers is not busy

    def on_metrics(self, trainer: Trainer, records: list[dict[str, Any]]) -> None:
        per_step = torch.tensor([self._busy / max(self._steps, 1)], dtype=torch.float64)
        self._busy, self._steps = 0.0, 0
        times = [per_step.clone() for _ in range(trainer.env.world_size)]
        if len(times) > 1:
            dist.all_gather(times, per_step)
        times_s = [float(t) for t in times]
        slow = set(slow_ranks(times_s, self.cfg.factor))
        med = statistics.median(times_s)
        named = []
        for rank in range(len(times_s)):
            self.streak[rank] = self.streak[rank] + 1 if rank in slow else 0
            if self.streak[rank] < self.cfg.intervals:
                continue
            entry = {"rank": rank, "host": self.hosts[rank], "slowdown": times_s[rank] / med}
            named.append(entry)
            if self.streak[rank] == self.cfg.intervals:
                self._name(trainer, records[-1]["step"], entry, times_s[rank], med)
        for rec in records:
            if len(times_s) > 1 and med > 0:  # numeric: wandb plots it as train/straggler_ratio
                rec["straggler_ratio"] = max(times_s) / med
            if named:
                rec["stragglers"] = named

    def _name(
        self, trainer: Trainer, step: int, entry: dict[str, Any], time_s: float, med: float
    ) -> None:
        log.warning(
            "straggler: rank %d on %s took %.3fs per step, %.1f× the median %.3fs (%d intervals)",
            entry["rank"],
            entry["host"],
            time_s,
            entry["slowdown"],
            med,
            self.cfg.intervals,
        )
        if not trainer.env.is_main:
            return
        if self.exclude:
            exclude_node(trainer.parts.run_dir, entry["host"])
        detail = {
            **entry,
            "step_time_s": time_s,
            "median_s": med,
            "intervals": self.cfg.intervals,
            "excluded": self.exclude,
        }
        append_event(
            trainer.parts.run_dir,
            "straggler",
            attempt=trainer.parts.attempt,
            step=step,
            rank=trainer.env.rank,
            detail=detail,
        )
