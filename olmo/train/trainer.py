"""The training loop: a list of steps; side concerns live in callbacks.

Works the same at any world size (a 1-rank group when launched without torchrun/srun).
Step numbers are 1-based: step s consumes loader batch s-1 and its logged loss is computed
with the weights before step s's update.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from olmo.checkpoint.checkpointer import Checkpointer
from olmo.config.schema import Config
from olmo.data.loader import BatchPlan
from olmo.data.loader import batch_hash as batch_hash_of
from olmo.errors import OlmoError
from olmo.train import resume_check
from olmo.train.callbacks import Callback
from olmo.train.fault import (
    REQUEUE_EXIT_CODE,
    StopFlag,
    Watchdog,
    job_end_time,
)
from olmo.train.optim import learning_rate, set_lr
from olmo.train.setup import Components
from olmo.train.spike import RollbackRequest, roll_back
from olmo.train.step import (
    clip_gradients,
    forward_backward,
    loss_scale,
    optimizer_step,
    tokens_per_step,
)

log = logging.getLogger("olmo.train")


class NonFiniteLossError(OlmoError):
    exit_code = 3


@dataclass
class TrainState:
    step: int = 0
    """Optimizer steps completed."""
    tokens_seen: int = 0
    nonfinite_in_a_row: int = 0
    skipped_steps: list[int] = field(default_factory=list)
    lr_scale: float = 1.0
    """Factor on the scheduled learning rate (train.spike.lr_scale after each rollback)."""
    lr: float | None = None
    """The learning rate of the last step (an anneal from this checkpoint starts there)."""
    anneal_start: list[float] | None = None
    """`[step, lr]` an anneal (scheduler.decay=anneal) started from."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # a deep copy: an async save commits it after later steps


@dataclass
class _Pending:
    """Per-step values still on the device, fetched together at the next log flush."""

    step: int
    loss_sum: torch.Tensor
    grad_norm: torch.Tensor
    lr: float
    batch_hash: str
    time: float
    """Host Unix time at the step's boundary: its work done on CPU, issued on an accelerator."""
    plan: BatchPlan
    """Where the step's global batch lies in the data order (position, size)."""
    tokens_seen: int = 0
    source_counts: dict[str, int] | None = None
    """`{source name: instances}` of the global batch (data.sources mixtures only)."""
    z_sum: torch.Tensor | None = None
    """This rank's summed z-loss (train.z_loss > 0 only)."""


@dataclass
class Boundary:
    """What the ranks agreed on at a step boundary."""

    stop: bool
    """A signal or the walltime: checkpoint now and exit for requeue."""
    checkpoint: bool
    """A checkpoint is due by the schedule."""
    reason: str | None = None
    """Why the run stops (the signal, or the walltime)."""


class Trainer:
    def __init__(
        self,
        cfg: Config,
        parts: Components,
        callbacks: list[Callback],
        stop: StopFlag | None = None,
    ):
        """`stop`: the caller's flag when it installed one before start-up (run_training does,
        so a preemption signal during start-up still ends in a checkpoint); else the trainer's
        own, installed by fit()."""
        self.cfg, self.parts, self.callbacks = cfg, parts, callbacks
        self.env, self.model, self.optim, self.loader = (
            parts.env,
            parts.model,
            parts.optim,
            parts.loader,
        )
        self.state = TrainState()
        self._own_stop = stop is None
        self.stop = StopFlag() if stop is None else stop
        self.checkpointer: Checkpointer = parts.checkpointer
        self.deadline = None
        self.stop_reason: str | None = None
        """Why the run stopped early for requeue (Boundary.reason), else None."""
        self._pending: list[_Pending] = []
        self._interval_start = time.perf_counter()
        self.seq_len = cfg.data.seq_len
        self.gbs = cfg.train.global_batch_size
        """The configured (final) global batch; a step's own is its BatchPlan.size."""
        self.tokens_per_step = tokens_per_step(self.gbs, self.seq_len)
        self.loss_scale = loss_scale(self.env.world_size, self.gbs, self.seq_len)
        self.loss_sum: torch.Tensor | None = None
        """The current step's summed loss (device tensor) between backward and the update."""
        self.batch_plan: BatchPlan | None = None
        """The current step's batch plan (from before forward to the next step)."""
        self.skip_update: torch.Tensor | None = None
        """Set by a pre_optim_step hook: a device bool that drops this step's update if true."""
        self.rollback_request: RollbackRequest | None = None
        """A loss spike's rollback, done at this step's boundary (olmo.train.spike)."""
        self.checkpointer.on_written = lambda step: self._emit("on_shards_written", step)

    # ---- lifecycle ----------------------------------------------------------------------
    def fit(self) -> int:
        """Train to max_steps; returns the process exit code (0, or REQUEUE_EXIT_CODE)."""
        self.start = resume_check.plan_start(self.cfg, self.checkpointer)  # may refuse
        self.parts.record_attempt(self.start.parent_record())
        if self._own_stop:
            self.stop.install()
        self._resume()
        self._batches = iter(self.loader)
        end = job_end_time()
        self.deadline = end - self.cfg.train.walltime_margin_s if end else None
        if self.deadline is not None:
            log.info(
                "job ends at %s: checkpoint and exit by %s", _clock(end), _clock(self.deadline)
            )
        watchdog = Watchdog(
            self.cfg.train.watchdog_timeout_s,
            self.parts.run_dir,
            self.env.rank,
            self.parts.attempt,
            grace_s=min(10.0, self.cfg.train.watchdog_timeout_s) if self.env.world_size > 1 else 0,
        ).start()
        self._emit("on_train_start")
        status = "completed"
        try:
            while self.state.step < self.cfg.train.max_steps:
                self.train_step()
                watchdog.beat(self.state.step)
                if self.state.step == 1:
                    self.parts.after_first_step()
                boundary = self._at_boundary()
                if self.rollback_request is not None:
                    roll_back(self, self.rollback_request)
                    self.rollback_request = None
                    continue
                if boundary.stop and self.state.step < self.cfg.train.max_steps:
                    status, self.stop_reason = "requeue", boundary.reason
                    break
                self._emit("on_step_end", self.state.step)
            self._flush()
            if (
                status == "completed"
                and self.cfg.checkpoint.save_final
                and not self.checkpointer.has_step(self.state.step)
            ):
                self.save()
            self.checkpointer.wait()
        finally:
            watchdog.stop()
            if self._own_stop:
                self.stop.uninstall()
        self._emit("on_train_end", status)
        if status == "requeue":
            log.warning(
                "stopping at step %d for requeue (exit code %d)", self.state.step, REQUEUE_EXIT_CODE
            )
            return REQUEUE_EXIT_CODE
        return 0

    def _resume(self) -> None:
        # start-up marks for the logbook's resume breakdown (finding was plan_start's)
        begin = time.perf_counter() - self.start.find_s
        path = self.start.path
        if path is None:
            self._emit("on_resume", 0)  # a killed attempt before the first checkpoint logged steps
            return
        saved = self.checkpointer.load(path, self.model, self.optim, self.start.optimizer_state)
        loaded = time.perf_counter()
        if saved is not None:
            self.state = TrainState(**saved["train_state"])
            loader = self.loader
            loader.load_state_dict(
                self.start.loader_state(saved["loader"], loader.seed, len(loader.dataset))
            )
        resume_check.after_load(self.start, self.optim, self.model, self.cfg, self.state)
        resume_check.record(self.parts.run_dir, self.parts.attempt, self.start, self.env.is_main)
        self.parts.timings["checkpoint_load_s"] = loaded - begin
        self.parts.timings["data_fast_forward_s"] = time.perf_counter() - loaded
        self._emit("on_resume", self.state.step)
        log.info("resumed from %s at step %d", path, self.state.step)

    # ---- one step -----------------------------------------------------------------------
    def train_step(self) -> None:
        step = self.state.step + 1
        self._emit("pre_step", step)
        sched, max_steps = self.cfg.scheduler, self.cfg.train.max_steps
        lr = learning_rate(step, self.cfg.optim.lr, sched, max_steps, self.state.anneal_start)
        lr *= self.state.lr_scale  # lowered by loss-spike rollbacks (train.spike.lr_scale)
        self.state.lr = lr
        set_lr(self.optim, lr)
        plan, batch = next(self._batches)
        if plan.step != step - 1:
            raise RuntimeError(f"data loader out of sync: batch {plan.step} for step {step}")
        batch_hash = batch_hash_of(self.loader.indices(plan))
        self.batch_plan = plan
        batch = batch.to(self.env.device, non_blocking=True)
        micro = self.cfg.train.micro_batch_size
        # The batch size may change (train.batch_size_schedule): the loss is the mean over
        # this step's own predicted tokens.
        scale = loss_scale(self.env.world_size, plan.size, self.seq_len)
        z_coef = self.cfg.train.z_loss
        z_sum = torch.zeros((), device=self.env.device) if z_coef else None
        self.loss_sum = forward_backward(
            self.model, batch, micro, scale, self.parts.autocast, z_coef, z_sum
        )
        self._emit("pre_optim_step", step)
        loss_sum, self.loss_sum = self.loss_sum, None
        grad_norm = clip_gradients(self.model, self.cfg.optim.grad_clip)
        fused = bool(self.optim.defaults.get("fused"))  # SGD is never fused (see optim.py)
        optimizer_step(self.optim, grad_norm, fused, self.skip_update)
        self.skip_update = None
        self.state.step = step
        self.state.tokens_seen += plan.size * self.seq_len
        pending = _Pending(step, loss_sum, grad_norm, lr, batch_hash, time.time(), plan)
        pending.tokens_seen = self.state.tokens_seen
        pending.source_counts = self.loader.source_counts(plan)
        pending.z_sum = z_sum
        self._pending.append(pending)
        self._emit("post_step", step)

    def _count_nonfinite(self, steps: list[int], norms: list[float]) -> None:
        """Book the steps whose update was skipped; stop after max_nonfinite_steps in a row.

        Runs at flush time (the norms are on the host then): every rank sees the same global
        norms, so all ranks stop at the same step.
        """
        limit, streak_end = self.cfg.train.max_nonfinite_steps, None
        for step, norm in zip(steps, norms, strict=True):
            if math.isfinite(norm):
                self.state.nonfinite_in_a_row = 0
                continue
            self.state.nonfinite_in_a_row += 1
            self.state.skipped_steps.append(step)
            log.warning(
                "step %d: non-finite loss/gradients, update skipped (%d in a row)",
                step,
                self.state.nonfinite_in_a_row,
            )
            if self.state.nonfinite_in_a_row >= limit and streak_end is None:
                streak_end = step
        if streak_end is not None:
            raise NonFiniteLossError(
                f"stopping at step {self.state.step}: {limit} consecutive steps with non-finite "
                f"loss up to step {streak_end} (train.max_nonfinite_steps), each skipped; lower "
                "optim.lr or resume from an earlier checkpoint"
            )

    # ---- step boundary ------------------------------------------------------------------
    def _at_boundary(self) -> Boundary:
        """Log, evaluate, checkpoint; all ranks agree (one collective) on stopping early."""
        step = self.state.step
        if step % self.cfg.train.log_interval == 0:
            self._flush()
        flags = torch.tensor(
            [
                float(self.stop.signum or 0),  # the max over ranks names a signal
                float(self.deadline is not None and time.time() >= self.deadline),
                float(self.checkpointer.due(step)),
            ]
        )
        if self.env.world_size > 1:
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        boundary = Boundary(stop=bool(flags[0] or flags[1]), checkpoint=bool(flags[2]))
        if boundary.stop:
            boundary.reason = _signal_name(int(flags[0])) if flags[0] else "SLURM walltime near"
            self._flush()
            log.warning("step %d: %s → checkpoint and exit for requeue", step, boundary.reason)
        if boundary.stop or boundary.checkpoint:
            self.save()
        return boundary

    def save(self) -> None:
        self._flush()
        trainer_state = {"train_state": self.state.to_dict(), "loader": self.loader.state_dict()}
        self.checkpointer.save(self.state.step, self.model, self.optim, trainer_state)
        self._emit("on_checkpoint", self.state.step)

    def _flush(self) -> None:
        """Fetch pending device values once (one all-reduce, one host sync) and emit records."""
        if not self._pending:
            return
        now = time.perf_counter()
        elapsed = now - self._interval_start
        self._interval_start = now
        losses = torch.stack([p.loss_sum for p in self._pending]).float()
        if self.env.world_size > 1:
            dist.all_reduce(losses)
        per_step = [tokens_per_step(p.plan.size, self.seq_len) for p in self._pending]
        losses = (losses / torch.tensor(per_step, dtype=losses.dtype)).tolist()
        norms = torch.stack([p.grad_norm.float() for p in self._pending]).tolist()
        tokens = sum(p.plan.size for p in self._pending) * self.seq_len
        tok_s = tokens / max(elapsed, 1e-9)
        records = [
            {
                "step": p.step,
                "loss": loss,
                "lr": p.lr,
                "grad_norm": gn,
                "tokens_seen": p.tokens_seen,
                "tokens_per_s": tok_s,
                "batch_hash": p.batch_hash,
                "data_position": p.plan.position,
                "global_batch_size": p.plan.size,
                **({"source_counts": p.source_counts} if p.source_counts else {}),
                "time": p.time,
                "attempt": self.parts.attempt,
            }
            for p, loss, gn in zip(self._pending, losses, norms, strict=True)
        ]
        if self._pending[0].z_sum is not None:
            z = torch.stack([p.z_sum for p in self._pending]).float()
            if self.env.world_size > 1:
                dist.all_reduce(z)
            for rec, z_loss in zip(records, (z / torch.tensor(per_step)).tolist(), strict=True):
                rec["z_loss"] = z_loss
        steps = [p.step for p in self._pending]
        self._pending.clear()
        self._emit("on_metrics", records)
        self._count_nonfinite(steps, norms)

    def request_rollback(self, request: RollbackRequest) -> None:
        """Roll back at this step's boundary; the first request of a boundary wins (every rank
        asks alike: spikes are detected in all-reduced losses)."""
        if self.rollback_request is None:
            self.rollback_request = request

    def _emit(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)


def _signal_name(signum: int) -> str:
    try:
        return f"{signal.Signals(signum).name} received"
    except ValueError:
        return f"signal {signum} received"


def _clock(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
