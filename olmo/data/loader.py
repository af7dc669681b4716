"""Deterministic, resumable data loading: which instances every step uses is pure arithmetic.

The loader walks the global order (`olmo.data.order`) by data position: the count of instances
passed over, its own checkpointed counter, separate from the step. Each step takes the next
global batch at the current position (its size from `train.batch_size_schedule`, else the fixed
`train.global_batch_size`); `skip(n)` passes over data without training on it. Each rank takes
its contiguous slice of the global batch, so the union over ranks is the global batch in order and
the data seen does not depend on the number of ranks. With a fixed batch and no skips, step s
(0-based) starts at position s·B within its epoch, as before the position existed.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from olmo.data.order import SingleOrder, global_order
from olmo.errors import OlmoError

__all__ = ["BatchPlan", "DataLoader", "batch_hash", "global_order"]


class Instances(Protocol):
    paths: list
    seq_len: int

    def __len__(self) -> int: ...
    def get_batch(self, indices: np.ndarray) -> np.ndarray: ...


def batch_hash(indices: np.ndarray) -> str:
    """Fingerprint of a global batch: sha256 of its int64 little-endian indices, 16 hex chars."""
    raw = np.ascontiguousarray(indices, dtype="<i8").tobytes()
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class BatchPlan:
    """Where one step's global batch lies in the global order."""

    step: int
    """Loader batch index, 0-based (trainer step `step + 1`)."""
    position: int
    """Data position of the batch's first instance (logged as `data_position`)."""
    size: int
    """Instances in the global batch (logged as `global_batch_size`)."""


@dataclass(frozen=True)
class _Cursor:
    step: int
    position: int
    instances: int
    """Instances trained on so far (skipped data excluded): tokens_seen / seq_len."""


class DataLoader:
    """Batches of one rank by data position, plus an iterator that resumes from `state_dict()`."""

    def __init__(
        self,
        dataset: Instances,
        global_batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        prefetch: int = 2,
        schedule: Sequence[Sequence[int]] | None = None,
        order: Any = None,
        micro_batch_size: int = 1,
    ):
        """`schedule`: train.batch_size_schedule, `[[TOKENS, GLOBAL_BATCH], ...]` (each batch a
        multiple of `micro_batch_size` × ranks); `order`: the global order (default: one
        source's `SingleOrder`)."""
        if world_size < 1 or not 0 <= rank < world_size:
            raise OlmoError(f"rank {rank} / world size {world_size}: need 0 <= rank < world_size")
        self.dataset = dataset
        self.global_batch_size = global_batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.order = order if order is not None else SingleOrder(len(dataset), seed)
        self._check_size(global_batch_size, f"train.global_batch_size={global_batch_size}")
        self.schedule = [(0, global_batch_size)]
        if schedule is not None:
            self.schedule = check_schedule(schedule, global_batch_size)
            for i, (_, size) in enumerate(self.schedule):
                self._check_size(size, f"{SCHEDULE_KEY}[{i}] batch {size}", micro_batch_size)
        self.num_workers = num_workers
        self.prefetch = max(1, prefetch)
        self.steps_consumed = 0
        """Batches handed out by the iterator so far (= the next step it yields)."""
        self.position = 0
        """Data position the next batch is taken from (instances passed over, skips included)."""
        self.instances_consumed = 0
        """Instances handed out for training (skipped data excluded)."""
        self.skips: list[list[int]] = []
        """`[step, position, instances]` of every skip: before loader batch `step`, `instances`
        were passed over from `position`."""
        self.pin_memory = False
        """Page-lock batches (in the prefetch threads) so the copy to a GPU is asynchronous."""
        self._generation = 0  # bumped when the position moves outside the iterator

    def _check_size(self, size: int, what: str, micro: int = 1) -> None:
        if size < 1:
            raise OlmoError(f"{what}: must be >= 1")
        if size % self.world_size:
            raise OlmoError(
                f"{what} is not divisible by the {self.world_size} ranks; use a multiple of "
                f"{self.world_size}"
            )
        if size % (micro * self.world_size):
            raise OlmoError(
                f"{what} is not a multiple of train.micro_batch_size × ranks = {micro} × "
                f"{self.world_size}; use a multiple of {micro * self.world_size}"
            )
        if isinstance(self.order, SingleOrder) and size > len(self.dataset):
            raise OlmoError(
                f"{self.dataset.paths[0]}: {len(self.dataset)} instances of data.seq_len="
                f"{self.dataset.seq_len} tokens, fewer than {what}; add data or lower the batch "
                "size"
            )

    # ---- the plan: which positions each step reads --------------------------------------
    def batch_size_for(self, instances: int) -> int:
        """Global batch size of the step after `instances` trained instances."""
        tokens = instances * self.dataset.seq_len
        return next(b for t, b in reversed(self.schedule) if tokens >= t)

    def _plan(self, cur: _Cursor) -> BatchPlan:
        size = self.batch_size_for(cur.instances)
        return BatchPlan(cur.step, self.order.align(cur.position, size), size)

    @staticmethod
    def _after(plan: BatchPlan, cur: _Cursor) -> _Cursor:
        return _Cursor(plan.step + 1, plan.position + plan.size, cur.instances + plan.size)

    def _cursor(self) -> _Cursor:
        return _Cursor(self.steps_consumed, self.position, self.instances_consumed)

    def plan(self, step: int) -> BatchPlan:
        """Where loader batch `step` lies when no data was skipped (replayed from position 0)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        cur = _Cursor(0, 0, 0)
        if len(self.schedule) == 1 and isinstance(self.order, SingleOrder):
            size = self.schedule[0][1]  # fixed batch: closed form, whole epochs at once
            epoch, k = divmod(step, len(self.dataset) // size)
            return BatchPlan(step, epoch * len(self.dataset) + k * size, size)
        while True:
            plan = self._plan(cur)
            if plan.step == step:
                return plan
            cur = self._after(plan, cur)

    def indices(self, plan: BatchPlan) -> np.ndarray:
        """Instance indices of the global batch `plan`, in order."""
        return self.order.indices(plan.position, plan.size)

    def local_slice(self, plan: BatchPlan, indices: np.ndarray) -> np.ndarray:
        """This rank's contiguous part of the global batch's `indices`."""
        local = plan.size // self.world_size
        return indices[self.rank * local : (self.rank + 1) * local]

    def source_counts(self, plan: BatchPlan) -> dict[str, int] | None:
        """`{source name: instances}` of a mixture's global batch; None for one source."""
        labels = self.order.labels(plan.position, plan.size)
        if labels is None:
            return None
        counts = np.bincount(labels, minlength=len(self.order.names)).tolist()
        return dict(zip(self.order.names, counts, strict=True))

    # ---- by step, for tools and tests (no skips) ------------------------------------------
    @property
    def steps_per_epoch(self) -> int:
        return len(self.dataset) // self.global_batch_size

    def epoch_of(self, step: int) -> int | None:
        return self.order.epoch(self.plan(step).position)

    def global_indices(self, step: int) -> np.ndarray:
        """Instance indices of the whole global batch of `step` (no skips), in order."""
        return self.indices(self.plan(step))

    def local_indices(self, step: int) -> np.ndarray:
        """This rank's contiguous slice of `global_indices(step)`."""
        plan = self.plan(step)
        return self.local_slice(plan, self.indices(plan))

    def batch(self, step: int) -> torch.Tensor:
        """This rank's tokens of `step` as int64 `[local batch size, seq_len]`."""
        return self._tensor(self.local_indices(step))

    def _tensor(self, indices: np.ndarray) -> torch.Tensor:
        batch = torch.from_numpy(self.dataset.get_batch(indices))
        return batch.pin_memory() if self.pin_memory else batch

    # ---- moving the position -------------------------------------------------------------
    def skip(self, instances: int) -> None:
        """Pass over the next `instances` of the global order without training on them (a
        loss-spike rollback skips the window before the spike). Recorded in `skips` and the
        checkpoint; the following steps' logged `data_position` shows it."""
        if instances < 0:
            raise ValueError(f"skip: instances must be >= 0, got {instances}")
        self.skips.append([self.steps_consumed, self.position, int(instances)])
        self.position += int(instances)
        self._generation += 1

    def skip_to(self, position: int) -> None:
        """Skip forward to data position `position` (e.g. the logged `data_position` + batch of
        a step, to leave out that step's batch and all before it)."""
        if position < self.position:
            raise ValueError(f"skip_to({position}): behind the current position {self.position}")
        self.skip(position - self.position)

    # ---- iteration -----------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[BatchPlan, torch.Tensor]]:
        """Yield `(plan, this rank's batch)` forever from the current position; the caller
        decides when to stop. A skip or state load between yields restarts the prefetch there."""
        # numpy's copies release the GIL, so threads overlap batch assembly with the train step.
        # Plans and indices are computed here (in order) so the threads never touch the order.
        pool = None
        if self.num_workers > 0:
            pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="olmo-data")
        depth = self.prefetch + self.num_workers - 1 if pool else 1
        pending: deque[tuple[BatchPlan, Future | np.ndarray]] = deque()
        generation, cur = -1, self._cursor()
        try:
            while True:
                if generation != self._generation:  # moved from outside: plan afresh
                    _cancel(pending)
                    generation, cur = self._generation, self._cursor()
                while len(pending) < depth:
                    plan = self._plan(cur)
                    cur = self._after(plan, cur)
                    idx = self.local_slice(plan, self.indices(plan))
                    pending.append((plan, pool.submit(self._tensor, idx) if pool else idx))
                plan, job = pending.popleft()
                batch = job.result() if isinstance(job, Future) else self._tensor(job)
                self.steps_consumed = plan.step + 1
                self.position = plan.position + plan.size
                self.instances_consumed += plan.size
                yield plan, batch
        finally:
            _cancel(pending)
            if pool is not None:
                pool.shutdown(wait=False)

    # ---- checkpoint ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Position to resume from; identical on every rank."""
        return {
            "seed": self.seed,
            "epoch": self.order.epoch(self.position),
            "position": self.position,
            "instances_consumed": self.instances_consumed,
            "steps_consumed": self.steps_consumed,
            "global_batch_size": self.batch_size_for(self.instances_consumed),
            "num_instances": len(self.dataset),
            "skips": [list(s) for s in self.skips],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at the saved position; refuses a different seed or data. A checkpoint from
        before the position existed resumes at its fixed-batch position (step × batch)."""
        for key, ours in (("seed", self.seed), ("num_instances", len(self.dataset))):
            theirs = state.get(key, ours)
            if theirs != ours:
                raise OlmoError(
                    f"data loader checkpoint has {key}={theirs} but this run has {ours}; the "
                    f"batch order would change: resume with the original {key} (train.seed, "
                    "data.paths/sources/seq_len) or start a fresh run"
                )
        steps = int(state["steps_consumed"])
        if "position" in state:
            self.position = int(state["position"])
            self.instances_consumed = int(state["instances_consumed"])
        else:  # old checkpoint: a fixed batch, whole batches per epoch, no skips
            size = int(state.get("global_batch_size", self.global_batch_size))
            epoch, k = divmod(steps, len(self.dataset) // size)
            self.position = epoch * len(self.dataset) + k * size
            self.instances_consumed = steps * size
        self.steps_consumed = steps
        self.skips = [list(s) for s in state.get("skips", [])]
        self._generation += 1


SCHEDULE_KEY = "train.batch_size_schedule"


def check_schedule(schedule: Any, global_batch_size: int) -> list[tuple[int, int]]:
    """`[[TOKENS, GLOBAL_BATCH], ...]` as pairs: thresholds on tokens_seen ascending from 0, the
    last batch the configured train.global_batch_size; else one OlmoError naming the entry."""
    if not isinstance(schedule, (list, tuple)) or not schedule:
        raise OlmoError(f"{SCHEDULE_KEY}={schedule!r}: give [[TOKENS, GLOBAL_BATCH], ...]")
    pairs: list[tuple[int, int]] = []
    for i, entry in enumerate(schedule):
        ints = isinstance(entry, (list, tuple)) and len(entry) == 2
        if not ints or not all(isinstance(v, int) and not isinstance(v, bool) for v in entry):
            raise OlmoError(
                f"{SCHEDULE_KEY}[{i}]={entry!r}: give [TOKENS, GLOBAL_BATCH] (integers)"
            )
        tokens, size = entry
        if i == 0 and tokens != 0:
            raise OlmoError(
                f"{SCHEDULE_KEY}[0]: the first threshold must be 0 tokens, got {tokens}"
            )
        if pairs and tokens <= pairs[-1][0]:
            raise OlmoError(
                f"{SCHEDULE_KEY}[{i}]: thresholds must ascend, got {pairs[-1][0]} then {tokens} tokens"
            )
        pairs.append((tokens, size))
    if pairs[-1][1] != global_batch_size:
        raise OlmoError(
            f"{SCHEDULE_KEY}[{len(pairs) - 1}]: the last batch {pairs[-1][1]} must equal "
            f"train.global_batch_size={global_batch_size}"
        )
    return pairs


def _cancel(pending: deque) -> None:
    for _, job in pending:
        if isinstance(job, Future):
            job.cancel()
    pending.clear()
