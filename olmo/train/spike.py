"""Loss-spike handling (`train.spike.*`): detect a spike in the logged loss and log it, drop the
step's update, or roll every rank back to the newest checkpoint before it.

Detection is a robust z-score over a trailing window of logged (global, all-reduced) losses: a
step's loss spikes when it exceeds median + max(z · 1.4826 · MAD, min_increase). The threshold is
computed on the host at each log flush and copied into a device tensor, so `skip` decides on the
device (the step's global loss against that tensor) and no step waits for the host. Every rank
sees the same losses, so every rank flags the same steps without another collective.
"""

from __future__ import annotations

import logging
import math
import shutil
import statistics
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.distributed as dist

from olmo.checkpoint.layout import committed_steps, step_dir
from olmo.errors import OlmoError
from olmo.logbook import append_event
from olmo.train.callbacks import Callback
from olmo.train.step import tokens_per_step

if TYPE_CHECKING:
    from olmo.train.trainer import Trainer

log = logging.getLogger("olmo.train")

MAD_TO_SIGMA = 1.4826
"""MAD × this estimates the standard deviation of normally distributed values."""


@dataclass
class SpikeConfig:
    action: Literal["off", "log", "skip", "rollback"] = "off"
    """What a loss spike does: off; log (a `loss_spike` event, `loss_spike: true` on the record);
    skip (also drop that step's update, decided on the device); rollback (return every rank to the
    newest checkpoint before the spike, skip the data since, optionally scale the LR)."""
    window: int = 50
    """Trailing logged losses the median and MAD are taken over (spikes are left out of it)."""
    warmup: int = 20
    """Logged losses needed before detection starts (the early loss falls fast: no spikes)."""
    z_threshold: float = 6.0
    """Robust z-score above the window's median that counts as a spike."""
    min_increase: float = 0.1
    """A spike is at least this much loss above the median (a flat window has a tiny MAD)."""
    lr_scale: float = 1.0
    """rollback: multiply the learning rate by this at each rollback, for the rest of the run."""
    max_rollbacks: int = 3
    """rollback: after this many in one attempt, further spikes are only logged."""

    def validate(self) -> None:
        if self.window < 2 or self.warmup < 2:
            raise OlmoError(
                f"train.spike.window ({self.window}) and train.spike.warmup ({self.warmup}) must "
                "be at least 2"
            )
        if self.z_threshold <= 0 or self.min_increase < 0 or self.lr_scale <= 0:
            raise OlmoError(
                "train.spike.z_threshold and train.spike.lr_scale must be > 0 and "
                "train.spike.min_increase >= 0"
            )


class SpikeDetector:
    """The trailing window and the threshold in effect (host float and device tensor)."""

    def __init__(self, cfg: SpikeConfig, device: torch.device):
        self.cfg = cfg
        self.window: deque[float] = deque(maxlen=cfg.window)
        self.seen = 0
        self.threshold = self.last_threshold = math.inf
        self.threshold_t = torch.full((), math.inf, device=device)

    def refresh(self) -> None:
        """Recompute the threshold from the window; fill_ is queued on the device stream."""
        if self.seen < self.cfg.warmup or len(self.window) < 2:
            self.threshold = math.inf
        else:
            med = statistics.median(self.window)
            mad = statistics.median(abs(x - med) for x in self.window)
            excess = max(self.cfg.z_threshold * MAD_TO_SIGMA * mad, self.cfg.min_increase)
            self.threshold = med + excess
        self.threshold_t.fill_(self.threshold)

    def check(self, losses: list[float]) -> list[bool]:
        """Flag each flushed loss against the threshold it ran under; then grow the window."""
        self.last_threshold = self.threshold
        flags = [math.isfinite(x) and x > self.threshold for x in losses]
        for loss, spike in zip(losses, flags, strict=True):
            if math.isfinite(loss) and not spike:
                self.window.append(loss)
                self.seen += 1
        self.refresh()
        return flags

    def device_flag(self, loss_sum: torch.Tensor, n_tokens: int, world_size: int) -> torch.Tensor:
        """On the device: this step's global mean loss exceeds the threshold (bool scalar)."""
        total = loss_sum.detach().float().clone()
        if world_size > 1:  # an all-reduce on the device stream, no host sync
            dist.all_reduce(total)
        return (total / n_tokens) > self.threshold_t


class SpikeGuard(Callback):
    """Runs detection at each flush (on every rank) and acts by `train.spike.action`."""

    def __init__(self, cfg: SpikeConfig, device: torch.device):
        self.cfg = cfg
        self.detector = SpikeDetector(cfg, device)
        self._skips: dict[int, torch.Tensor] = {}
        self.rollbacks = 0

    def on_resume(self, trainer: Trainer, step: int) -> None:
        self._skips.clear()  # steps past `step` are trained again (warm-up continues)

    def pre_optim_step(self, trainer: Trainer, step: int) -> None:
        if self.cfg.action != "skip" or trainer.loss_sum is None:
            return
        n_tokens = tokens_per_step(trainer.batch_plan.size, trainer.seq_len)
        flag = self.detector.device_flag(trainer.loss_sum, n_tokens, trainer.env.world_size)
        trainer.skip_update = flag
        self._skips[step] = flag

    def on_metrics(self, trainer: Trainer, records: list[dict[str, Any]]) -> None:
        spikes = self.detector.check([r["loss"] for r in records])
        skipped = self._fetch_skips([r["step"] for r in records])
        for rec, spike in zip(records, spikes, strict=True):
            if skipped.get(rec["step"], spike):  # skip: the device's decision is the record
                self._record(trainer, rec, skipped.get(rec["step"], False))
        first = next((r["step"] for r, s in zip(records, spikes, strict=True) if s), None)
        if first is not None and self.cfg.action == "rollback":
            if self.rollbacks < self.cfg.max_rollbacks:
                self.rollbacks += 1
                rec = next(r for r in records if r["step"] == first)
                end = rec["data_position"] + rec["global_batch_size"]
                trainer.request_rollback(RollbackRequest(first, end, self.cfg.lr_scale))
            else:
                log.warning("train.spike.max_rollbacks (%d) reached", self.cfg.max_rollbacks)

    def _fetch_skips(self, steps: list[int]) -> dict[int, bool]:
        """The device's skip decisions of these steps (one host transfer)."""
        have = [s for s in steps if s in self._skips]
        if not have:
            return {}
        values = torch.stack([self._skips.pop(s) for s in have]).tolist()
        return dict(zip(have, values, strict=True))

    def _record(self, trainer: Trainer, rec: dict[str, Any], skipped: bool) -> None:
        rec["loss_spike"] = True
        if skipped:
            rec["spike_skipped"] = True
        detail = {
            "loss": rec["loss"],
            "threshold": self.detector.last_threshold,
            "action": self.cfg.action,
        }
        log.warning(
            "step %d: loss spike %.4f (threshold %.4f): %s",
            rec["step"],
            rec["loss"],
            detail["threshold"],
            self.cfg.action,
        )
        if trainer.env.is_main:
            append_event(
                trainer.parts.run_dir,
                "loss_spike",
                attempt=trainer.parts.attempt,
                step=rec["step"],
                rank=trainer.env.rank,
                detail=detail,
            )


@dataclass(frozen=True)
class RollbackRequest:
    spike_step: int
    """The first step whose loss spiked."""
    data_end: int
    """Data position just past the spike step's batch: training resumes there."""
    lr_scale: float
    """Factor on the learning rate from here on (on top of earlier rollbacks')."""


def roll_back(trainer: Trainer, req: RollbackRequest) -> bool:
    """Every rank: restore the newest checkpoint before the spike, pass over the data from its
    position through the spike's batch, scale the LR, supersede the rolled-back records and
    checkpoints. False (a warning) when no checkpoint before the spike exists."""
    ckpt = trainer.checkpointer
    ckpt.wait()  # an async save in flight may be the one to return to
    before = [(s, p) for s, p in committed_steps(ckpt.root) if s < req.spike_step]
    if not before:
        log.warning(
            "step %d: loss spike but no checkpoint before it to roll back to (lower "
            "checkpoint.interval, raise checkpoint.keep_last); training on",
            req.spike_step,
        )
        return False
    to_step, path = max(before)
    old_state = trainer.state
    saved = ckpt.load(path, trainer.model, trainer.optim)
    if saved is None:
        raise OlmoError(f"{path}: holds weights only; a rollback needs the optimizer state")
    trainer.state = type(old_state)(**saved["train_state"])
    trainer.state.lr_scale = old_state.lr_scale * req.lr_scale
    trainer.loader.load_state_dict(saved["loader"])
    start = trainer.loader.position
    trainer.loader.skip_to(max(req.data_end, start))
    if trainer.env.is_main:
        _drop_newer(ckpt, to_step)
    if trainer.env.world_size > 1:
        dist.barrier()
    trainer._emit("on_resume", to_step)  # the metrics writer supersedes the rolled-back records
    detail = {
        "from_step": old_state.step,
        "to_step": to_step,
        "checkpoint": path.name,
        "skipped_data": [start, trainer.loader.position],
        "lr_scale": trainer.state.lr_scale,
    }
    log.warning("loss spike at step %d: rolled back: %s", req.spike_step, detail)
    if trainer.env.is_main:
        append_event(
            trainer.parts.run_dir,
            "rollback",
            attempt=trainer.parts.attempt,
            step=req.spike_step,
            rank=trainer.env.rank,
            detail=detail,
        )
    return True


def _drop_newer(ckpt: Any, step: int) -> None:
    """Remove the checkpoints after `step` (they hold the spike) and point `latest` back, so a
    requeue resumes from where the rollback went."""
    for s, p in committed_steps(ckpt.root):
        if s > step:
            shutil.rmtree(p, ignore_errors=True)
    ckpt._point_latest(step_dir(ckpt.root, step))
