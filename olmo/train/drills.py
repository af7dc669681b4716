"""Test-only drills of $OLMO_FAULT_INJECT for the automatic responses (olmo.train.fault acts out
the kills, hangs and NaNs):

  spike@step=N            a genuine loss spike at step N: every rank scales the output-head weight
                          by SPIKE_FACTOR for that step's forward/backward and restores it exactly
                          before the update (a power of two), so the real loss jumps; fires once
                          per run dir, so a rollback's replay of step N runs clean.
  slow@rank=R,factor=F[,from=N]
                          rank R's steps (from step N on; default 1) take F× as long (it sleeps
                          (F − 1)× its own step time at the end of each step): a straggler for
                          train.straggler.*.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from olmo.train.callbacks import Callback

if TYPE_CHECKING:
    from olmo.train.trainer import Trainer

log = logging.getLogger(__name__)

FAULT_ENV = "OLMO_FAULT_INJECT"
"""The drills' variable (olmo.train.fault documents its grammar; defined here, the module it
imports, so the two never import each other)."""

SPIKE_FACTOR = 16.0
"""Scale of the head weight in a spike drill: logits ×16 turn a trained model's loss into many
times its value."""
_SPIKE_RE = re.compile(r"^spike@step=(\d+)$")
_SLOW_RE = re.compile(r"^slow@rank=(\d+),factor=(\d+(?:\.\d+)?)(?:,from=(\d+))?$")


def is_drill(part: str) -> bool:
    """A part of $OLMO_FAULT_INJECT that this module acts out (fault.py's parser leaves it)."""
    return part.startswith(("spike@", "slow@"))


def parse_drills(text: str) -> tuple[list[int], dict[int, tuple[float, int]]]:
    """(spike steps, {rank: (slow factor, from step)}) from $OLMO_FAULT_INJECT; other parts are
    ignored."""
    from olmo.errors import OlmoError

    spikes, slow = [], {}
    for part in (p.strip() for p in text.split(";")):
        if not is_drill(part):
            continue
        if m := _SPIKE_RE.match(part):
            spikes.append(int(m.group(1)))
        elif (m := _SLOW_RE.match(part)) and float(m.group(2)) >= 1:
            slow[int(m.group(1))] = (float(m.group(2)), int(m.group(3) or 1))
        else:
            raise OlmoError(
                f"{FAULT_ENV}: cannot parse '{part}'; expected e.g. spike@step=12 or "
                "slow@rank=2,factor=3"
            )
    return spikes, slow


class Drills(Callback):
    """Acts out the spike and slow drills on this rank."""

    def __init__(
        self, spikes: list[int], slow: tuple[float, int], rank: int, run_dir: Path
    ) -> None:
        """`slow`: (factor, first step) of this rank's slowdown; factor 1 = none."""
        self.spikes, (self.slow_factor, self.slow_from) = spikes, slow
        self.rank, self.run_dir = rank, run_dir
        self._scaled: torch.Tensor | None = None
        self._t0 = 0.0

    @classmethod
    def from_env(cls, rank: int, run_dir: Path) -> Drills | None:
        spikes, slow = parse_drills(os.environ.get(FAULT_ENV, ""))
        if not spikes and not slow:
            return None
        return cls(spikes, slow.get(rank, (1.0, 1)), rank, run_dir)

    def _fire_once(self, step: int) -> bool:
        marker = self.run_dir / f".drill-spike{step}-rank{self.rank}"
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True

    @torch.no_grad()
    def pre_step(self, trainer: Trainer, step: int) -> None:
        self._t0 = time.perf_counter()
        if step in self.spikes and self._fire_once(step):
            log.warning("injected loss spike at step %d (head weight ×%g)", step, SPIKE_FACTOR)
            self._scaled = trainer.model.output_weight
            self._scaled.mul_(SPIKE_FACTOR)

    @torch.no_grad()
    def pre_optim_step(self, trainer: Trainer, step: int) -> None:
        if self._scaled is not None:  # exact: a power of two
            self._scaled.div_(SPIKE_FACTOR)
            self._scaled = None

    def post_step(self, trainer: Trainer, step: int) -> None:
        if self.slow_factor > 1 and step >= self.slow_from:
            time.sleep((self.slow_factor - 1) * (time.perf_counter() - self._t0))
