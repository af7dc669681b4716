"""Held-out perplexity: fixed instances (the data's held-out tail), split across ranks."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist

from olmo.data.split import InstanceRange
from olmo.train.callbacks import Callback

if TYPE_CHECKING:
    from olmo.train.trainer import Trainer


@torch.no_grad()
def heldout_loss(trainer: Trainer, data: InstanceRange, batches: int) -> float:
    """Mean token loss over the first `batches` global batches of the held-out data.

    The instances scored do not depend on the world size (so 1 and N ranks report the same
    number); every rank runs the same number of forwards (FSDP's forward is a collective), a
    rank whose share ran out scoring a dummy chunk it does not count. One host sync per call.
    """
    env, mbs = trainer.env, trainer.cfg.train.micro_batch_size
    n = min(len(data), batches * trainer.cfg.train.global_batch_size)
    mine = np.arange(n)[env.rank :: env.world_size]
    forwards = max(1, math.ceil(math.ceil(n / env.world_size) / mbs))
    loss_sum = torch.zeros((), dtype=torch.float64, device=env.device)
    count = 0
    was_training = trainer.model.training
    trainer.model.eval()
    for i in range(forwards):
        chunk = mine[i * mbs : (i + 1) * mbs]
        batch = torch.from_numpy(data.get_batch(chunk if len(chunk) else np.arange(1)))
        batch = batch.to(env.device)
        with trainer.parts.autocast():
            # summed token loss through the fused head, kept on the device until the end
            loss = trainer.model(batch[:, :-1], labels=batch[:, 1:])
        if len(chunk):
            loss_sum += loss.double()
            count += batch[:, 1:].numel()
    trainer.model.train(was_training)
    total = torch.stack([loss_sum.cpu(), torch.tensor(float(count), dtype=torch.float64)])
    if env.world_size > 1:
        dist.all_reduce(total)
    return (total[0] / total[1]).item()


def add_eval_seconds(record: dict[str, Any], seconds: float) -> None:
    """Book evaluation time in the step's record (`eval_s`, summed over the evals of a step):
    time the step boundary spent not training (`olmo logbook` counts it as lost)."""
    record["eval_s"] = round(record.get("eval_s", 0.0) + seconds, 4)


class HeldOutEval(Callback):
    def __init__(self, data: InstanceRange, interval: int, batches: int):
        self.data, self.interval, self.batches = data, interval, batches
        self.results: dict[int, float] = {}
        self.seconds: dict[int, float] = {}

    def post_step(self, trainer: Trainer, step: int) -> None:
        due = self.interval > 0 and step % self.interval == 0
        if due or step == trainer.cfg.train.max_steps:
            began = time.perf_counter()
            self.results[step] = heldout_loss(trainer, self.data, self.batches)  # syncs the host
            self.seconds[step] = time.perf_counter() - began

    def on_metrics(self, trainer: Trainer, records: list[dict[str, Any]]) -> None:
        for rec in records:
            if rec["step"] in self.results:
                loss = self.results.pop(rec["step"])
                rec["eval_loss"] = loss
                rec["eval_ppl"] = math.exp(min(loss, 50.0))
                add_eval_seconds(rec, self.seconds.pop(rec["step"]))
