"""Contiguous instance ranges of a dataset: the tail held out for evaluation, the rest trained on."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from olmo.data.dataset import TokenDataset
from olmo.errors import OlmoError


class InstanceRange:
    """Instances [start, stop) of a TokenDataset, re-indexed from 0; same interface for the loader."""

    def __init__(self, dataset: TokenDataset, start: int, stop: int):
        self.dataset, self.start, self.stop = dataset, start, stop
        self.paths, self.seq_len = dataset.paths, dataset.seq_len

    def __len__(self) -> int:
        return self.stop - self.start

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        return self.dataset.get_batch(np.asarray(indices, dtype=np.int64) + self.start)


def holdout_split(
    dataset: TokenDataset, holdout: int
) -> tuple[InstanceRange, InstanceRange | None]:
    """(train, eval): the last `holdout` instances are never trained on."""
    n = len(dataset)
    if holdout <= 0:
        return InstanceRange(dataset, 0, n), None
    if holdout >= n:
        raise OlmoError(
            f"train.eval_holdout_instances={holdout} but the data has only {n} instances; lower it"
        )
    return InstanceRange(dataset, 0, n - holdout), InstanceRange(dataset, n - holdout, n)
