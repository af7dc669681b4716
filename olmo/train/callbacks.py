"""Side concerns of the loop as callbacks with named hooks.

Records (one dict per step) are handed to `on_metrics` at each log flush; callbacks may add
fields (energy, eval) before the writers (last in the list) persist them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from olmo.fsutil import atomic_write_text

if TYPE_CHECKING:
    from olmo.train.trainer import Trainer

log = logging.getLogger("olmo.train")


class Callback:
    """Hooks: on_resume (the step training continues from; 0 = from scratch; also mid-run after a
    loss-spike rollback), on_train_start,
    then in the order a step meets them: pre_step → (forward/backward) → pre_optim_step
    (gradients exist, not yet clipped) → post_step → the boundary (flush → on_metrics, eval,
    checkpoint → on_shards_written on every rank before the commit, on_checkpoint) → on_step_end.
    """

    def on_train_start(self, trainer: Trainer) -> None: ...
    def on_resume(self, trainer: Trainer, step: int) -> None: ...
    def pre_step(self, trainer: Trainer, step: int) -> None: ...
    def pre_optim_step(self, trainer: Trainer, step: int) -> None: ...
    def post_step(self, trainer: Trainer, step: int) -> None: ...
    def on_metrics(self, trainer: Trainer, records: list[dict[str, Any]]) -> None: ...
    def on_shards_written(self, trainer: Trainer, step: int) -> None: ...
    def on_checkpoint(self, trainer: Trainer, step: int) -> None: ...
    def on_step_end(self, trainer: Trainer, step: int) -> None: ...
    def on_train_end(self, trainer: Trainer, status: str) -> None: ...


def truncate_metrics(path: Path, keep_through_step: int) -> int:
    """Drop records a killed attempt wrote after the checkpoint we resume from (atomic rewrite).

    Returns how many lines were superseded.
    """
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1  # a line cut short by the kill
            continue
        if rec.get("step", 0) <= keep_through_step:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        atomic_write_text(path, "".join(line + "\n" for line in kept))
    return dropped


class MetricsWriter(Callback):
    """Rank 0 appends one JSON object per step to RUN_DIR/metrics.jsonl; on resume it drops the
    records a killed attempt wrote past the checkpoint, so every step appears once."""

    def __init__(self, path: Path):
        self.path = path

    def on_resume(self, trainer: Trainer, step: int) -> None:
        if not trainer.env.is_main:
            return
        dropped = truncate_metrics(self.path, step)
        if dropped:
            log.info(
                "%s: %d records after step %d superseded by this attempt",
                self.path.name,
                dropped,
                step,
            )

    def on_metrics(self, trainer: Trainer, records: list[dict[str, Any]]) -> None:
        if not trainer.env.is_main:
            return
        with open(self.path, "a") as f:
            f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
            f.flush()
            os.fsync(f.fileno())


class ConsoleProgress(Callback):
    """A progress bar on a TTY; plain log lines otherwise (SLURM logs)."""

    def __init__(self, mode: str, max_steps: int):
        self.bar_mode = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
        self.max_steps = max_steps
        self.bar = None

    def on_train_start(self, trainer: Trainer) -> None:
        if self.bar_mode and trainer.env.is_main:
            from tqdm import tqdm

            self.bar = tqdm(
                total=self.max_steps, initial=trainer.state.step, unit="step", dynamic_ncols=True
            )

    def on_metrics(self, trainer: Trainer, records: list[dict[str, Any]]) -> None:
        if not trainer.env.is_main or not records:
            return
        r = records[-1]
        text = f"loss {r['loss']:.4f} lr {r['lr']:.2e} gnorm {r['grad_norm']:.3f} tok/s {r['tokens_per_s']:.0f}"
        if "eval_loss" in r:
            text += f" eval {r['eval_loss']:.4f}"
        if self.bar is not None:
            self.bar.update(r["step"] - self.bar.n)
            self.bar.set_postfix_str(text)
        else:
            log.info("step %d/%d %s", r["step"], self.max_steps, text)

    def on_train_end(self, trainer: Trainer, status: str) -> None:
        if self.bar is not None:
            self.bar.close()
