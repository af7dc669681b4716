"""The composition root: builds a training run and chooses its callbacks.

`olmo/train/` is the loop and knows nothing of its plugins; this module is where held-out and
downstream eval, energy, wandb, progress and the metrics file are attached, and where the SLURM
restart limit is enforced. `olmo train` and `olmo launch`'s tasks start here.
"""

from __future__ import annotations

from pathlib import Path

from olmo.config.schema import Config, config_to_dict
from olmo.errors import OlmoError
from olmo.observe import logbook_cb
from olmo.slurm import check_restart_limit
from olmo.train.callbacks import Callback, ConsoleProgress, MetricsWriter
from olmo.train.drills import Drills
from olmo.train.fault import FaultInjection, StopFlag
from olmo.train.setup import Components, build_components
from olmo.train.spike import SpikeGuard
from olmo.train.straggler import StragglerMonitor
from olmo.train.trainer import Trainer


def default_callbacks(cfg: Config, parts: Components) -> list[Callback]:
    """Held-out eval, downstream eval, energy, progress, wandb, then the metrics file (last: it
    writes what the others added to each record)."""
    from olmo.observe.wandb_logger import WandbLogger
    from olmo.train.evaluate import HeldOutEval

    cbs: list[Callback] = []
    # First: they add record fields (loss_spike, stragglers) that the writers below persist.
    if cfg.train.spike.action != "off":
        cbs.append(SpikeGuard(cfg.train.spike, parts.env.device))
    if cfg.train.straggler.factor > 0:
        cbs.append(StragglerMonitor(cfg.train.straggler))
    if parts.eval_data is not None:
        cbs.append(HeldOutEval(parts.eval_data, cfg.train.eval_interval, cfg.train.eval_batches))
    if cfg.eval.interval > 0:
        from olmo.eval.callback import DownstreamEval

        tokenizer = parts.tokenizer or cfg.data.build_tokenizer()
        cbs.append(DownstreamEval(cfg.eval, tokenizer))
    if cfg.energy.enabled:  # before the writers: adds energy_j/power_w, writes energy.json
        from olmo.energy.callback import EnergyMonitor

        cbs.append(EnergyMonitor(cfg.energy, parts.run_dir, parts.env, parts.attempt))
    cbs.append(ConsoleProgress(cfg.train.progress, cfg.train.max_steps))
    cbs.append(WandbLogger(cfg.wandb, parts.run_dir, config_to_dict(cfg), parts.attempt))
    # Before the metrics file: its on_resume drops the superseded records (the redone steps).
    lb = logbook_cb.LogbookWriter(parts.run_dir, parts.attempt, parts.env.is_main, parts.timings)
    cbs.append(lb)
    cbs.append(MetricsWriter(parts.run_dir / "metrics.jsonl"))
    faults = FaultInjection.from_env(parts.env.rank, parts.run_dir)  # $OLMO_FAULT_INJECT drills
    drills = Drills.from_env(parts.env.rank, parts.run_dir)  # its spike@ and slow@ parts
    return [d for d in (faults, drills) if d is not None] + cbs


def run_training(cfg: Config, run_dir: Path) -> int:
    """Train (or continue) the run in `run_dir`; returns the process exit code. The logbook
    gets how the attempt ended (or why the start was refused)."""
    try:
        check_restart_limit()  # a job SLURM requeued past the profile's restart limit stops here
    except OlmoError as e:
        logbook_cb.refused(run_dir, e)
        raise
    stop = StopFlag()
    stop.install()  # already during start-up: a preemption signal then still ends in a checkpoint
    try:
        try:
            parts = build_components(cfg, run_dir)
        except OlmoError as e:
            logbook_cb.refused(run_dir, e)
            raise
        try:
            return _fit(cfg, parts, stop)
        finally:
            parts.close()
    finally:
        stop.uninstall()


def _fit(cfg: Config, parts: Components, stop: StopFlag) -> int:
    trainer = None
    try:
        trainer = Trainer(cfg, parts, default_callbacks(cfg, parts), stop)
        code = trainer.fit()
    except BaseException as e:
        if not parts.recorded:  # refused before it became an attempt
            if isinstance(e, OlmoError):
                logbook_cb.refused(parts.run_dir, e)
        elif not isinstance(e, KeyboardInterrupt):
            step = trainer.state.step if trainer else None
            logbook_cb.attempt_failed(parts.run_dir, parts.attempt, parts.env.rank, step, e)
        raise
    logbook_cb.attempt_outcome(
        parts.run_dir, parts.attempt, parts.env.rank, trainer.state.step, code, trainer.stop_reason
    )
    return code
