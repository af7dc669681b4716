"""In-loop downstream evaluation: per-task accuracy (and the normalization mode) added to the
step's metrics record."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from olmo.eval.config import DownstreamEvalConfig
from olmo.eval.downstream import evaluate_tasks
from olmo.train.callbacks import Callback
from olmo.train.evaluate import add_eval_seconds

if TYPE_CHECKING:
    from olmo.train.trainer import Trainer

log = logging.getLogger("olmo.eval")


class DownstreamEval(Callback):
    def __init__(self, cfg: DownstreamEvalConfig, tokenizer):
        self.cfg, self.tokenizer = cfg, tokenizer
        self.results: dict[int, dict[str, float]] = {}
        self.seconds: dict[int, float] = {}

    def post_step(self, trainer: Trainer, step: int) -> None:
        due = step % self.cfg.interval == 0 or step == trainer.cfg.train.max_steps
        if self.cfg.interval <= 0 or not due:
            return
        model, env = trainer.model, trainer.env
        began = time.perf_counter()
        was_training = model.training
        model.eval()

        def forward(ids):
            with trainer.parts.autocast():
                return model(ids)

        acc = evaluate_tasks(
            forward,
            self.tokenizer,
            self.cfg.tasks,
            limit=self.cfg.limit,
            batch_size=self.cfg.batch_size,
            max_len=trainer.cfg.data.seq_len,
            device=env.device,
            rank=env.rank,
            world_size=env.world_size,
            data_dir=self.cfg.data_dir,
            normalization=self.cfg.normalization,
        )
        model.train(was_training)
        self.results[step] = acc
        self.seconds[step] = time.perf_counter() - began
        scores = " ".join(f"{k} {v:.3f}" for k, v in acc.items())
        log.info("step %d downstream (%s): %s", step, self.cfg.normalization, scores)

    def on_metrics(self, trainer: Trainer, records: list[dict[str, Any]]) -> None:
        for rec in records:
            acc = self.results.pop(rec["step"], None)
            if acc is None:
                continue
            rec.update({f"downstream/{task}": a for task, a in acc.items()})
            # not under downstream/: readers take every downstream/ value for an accuracy
            rec["downstream_normalization"] = self.cfg.normalization
            add_eval_seconds(rec, self.seconds.pop(rec["step"]))
