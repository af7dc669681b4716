"""Deterministic, resumable data loading: which instances every step uses is pure arithmetic.

Step `s` (0-based count of batches consumed) lies in epoch `s // steps_per_epoch`; each epoch
shuffles all instances with `global_order(n, seed, epoch)` (identical on every machine) and uses
consecutive `global_batch_size` slices of it, dropping the last partial batch. Each rank takes its
contiguous slice of the global batch, so the union over ranks is the global batch in order and
the data seen does not depend on the number of ranks.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from olmo.data.dataset import TokenDataset
from olmo.errors import OlmoError


def global_order(num_instances: int, seed: int, epoch: int) -> np.ndarray:
    """The instance permutation of `epoch`: the same everywhere, a new one every epoch."""
    return np.random.Generator(np.random.PCG64([seed, epoch])).permutation(num_instances)


def batch_hash(indices: np.ndarray) -> str:
    """Fingerprint of a global batch: sha256 of its int64 little-endian indices, 16 hex chars."""
    raw = np.ascontiguousarray(indices, dtype="<i8").tobytes()
    return hashlib.sha256(raw).hexdigest()[:16]


class DataLoader:
    """Batches of one rank for any step, plus an iterator that resumes from `state_dict()`."""

    def __init__(
        self,
        dataset: TokenDataset,
        global_batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        prefetch: int = 2,
    ):
        if global_batch_size < 1:
            raise OlmoError(f"train.global_batch_size={global_batch_size}: must be >= 1")
        if world_size < 1 or not 0 <= rank < world_size:
            raise OlmoError(f"rank {rank} / world size {world_size}: need 0 <= rank < world_size")
        if global_batch_size % world_size:
            raise OlmoError(
                f"train.global_batch_size={global_batch_size} is not divisible by the "
                f"{world_size} ranks; use a multiple of {world_size}"
            )
        self.steps_per_epoch = len(dataset) // global_batch_size
        if self.steps_per_epoch == 0:
            raise OlmoError(
                f"{dataset.paths[0]}: {len(dataset)} instances of data.seq_len={dataset.seq_len} "
                f"tokens, fewer than train.global_batch_size={global_batch_size}; add data or "
                "lower the batch size"
            )
        self.dataset = dataset
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.local_batch_size = global_batch_size // world_size
        self.num_workers = num_workers
        self.prefetch = max(1, prefetch)
        self.steps_consumed = 0
        """Batches handed out by the iterator so far (= the next step it yields)."""
        self.pin_memory = False
        """Page-lock batches (in the prefetch threads) so the copy to a GPU is asynchronous."""
        self._order_cache: tuple[int, np.ndarray] | None = None

    def _order(self, epoch: int) -> np.ndarray:
        # One permutation per epoch, kept: consecutive steps nearly always share an epoch.
        if self._order_cache is None or self._order_cache[0] != epoch:
            self._order_cache = (epoch, global_order(len(self.dataset), self.seed, epoch))
        return self._order_cache[1]

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def global_indices(self, step: int) -> np.ndarray:
        """Instance indices of the whole global batch of `step`, in order."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        epoch, pos = divmod(step, self.steps_per_epoch)
        start = pos * self.global_batch_size
        return self._order(epoch)[start : start + self.global_batch_size].copy()

    def local_indices(self, step: int) -> np.ndarray:
        """This rank's contiguous slice of `global_indices(step)`."""
        start = self.rank * self.local_batch_size
        return self.global_indices(step)[start : start + self.local_batch_size]

    def batch(self, step: int) -> torch.Tensor:
        """This rank's tokens of `step` as int64 `[local_batch_size, seq_len]`."""
        return self._tensor(self.local_indices(step))

    def _tensor(self, indices: np.ndarray) -> torch.Tensor:
        batch = torch.from_numpy(self.dataset.get_batch(indices))
        return batch.pin_memory() if self.pin_memory else batch

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield `(step, batch)` forever from `steps_consumed`; the caller decides when to stop."""
        if self.num_workers <= 0:
            while True:
                step = self.steps_consumed
                batch = self.batch(step)
                self.steps_consumed = step + 1
                yield step, batch
        yield from self._prefetching()

    def _prefetching(self) -> Iterator[tuple[int, torch.Tensor]]:
        # numpy's copies release the GIL, so threads overlap batch assembly with the train step.
        # Indices are computed here (in order) so the threads never touch the order cache.
        pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="olmo-data")
        pending: deque[tuple[int, Future]] = deque()
        next_step = self.steps_consumed
        try:
            while True:
                while len(pending) < self.prefetch + self.num_workers - 1:
                    idx = self.local_indices(next_step)
                    pending.append((next_step, pool.submit(self._tensor, idx)))
                    next_step += 1
                step, fut = pending.popleft()
                batch = fut.result()
                self.steps_consumed = step + 1
                yield step, batch
        finally:
            for _, fut in pending:
                fut.cancel()
            pool.shutdown(wait=False)

    def state_dict(self) -> dict[str, int]:
        """Position to resume from; identical on every rank."""
        return {
            "seed": self.seed,
            "epoch": self.epoch_of(self.steps_consumed),
            "instances_consumed": self.steps_consumed * self.global_batch_size,
            "steps_consumed": self.steps_consumed,
            "global_batch_size": self.global_batch_size,
            "num_instances": len(self.dataset),
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume at `state["steps_consumed"]`; refuses a different seed, batch size or data."""
        for key, ours in (
            ("seed", self.seed),
            ("global_batch_size", self.global_batch_size),
            ("num_instances", len(self.dataset)),
        ):
            theirs = state.get(key, ours)
            if theirs != ours:
                raise OlmoError(
                    f"data loader checkpoint has {key}={theirs} but this run has {ours}; the "
                    f"batch order would change: resume with the original {key} (train.seed, "
                    "train.global_batch_size, data.paths/seq_len) or start a fresh run"
                )
        self.steps_consumed = int(state["steps_consumed"])
