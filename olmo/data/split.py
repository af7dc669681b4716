"""Contiguous instance ranges of a dataset: the tail held out for evaluation, the rest trained on."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from olmo.data.config import DataConfig
from olmo.data.dataset import ConcatInstances, TokenDataset
from olmo.data.loader import DataLoader
from olmo.data.order import MixtureOrder
from olmo.errors import OlmoError
from olmo.tokenizer import OlmoTokenizer


class InstanceRange:
    """Instances [start, stop) of a TokenDataset, re-indexed from 0; same interface for the loader."""

    def __init__(self, dataset: TokenDataset | ConcatInstances, start: int, stop: int):
        self.dataset, self.start, self.stop = dataset, start, stop
        self.paths, self.seq_len = dataset.paths, dataset.seq_len

    def __len__(self) -> int:
        return self.stop - self.start

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        return self.dataset.get_batch(np.asarray(indices, dtype=np.int64) + self.start)


def holdout_split(
    dataset: TokenDataset | ConcatInstances, holdout: int
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


def build_train_data(
    data_cfg: DataConfig,
    seed: int,
    global_batch_size: int,
    holdout: int,
    rank: int = 0,
    world_size: int = 1,
    tokenizer: OlmoTokenizer | None = None,
    schedule: Sequence[Sequence[int]] | None = None,
    micro_batch_size: int = 1,
) -> tuple[DataLoader, InstanceRange | None]:
    """The training loader and the held-out eval range: the one place both the trainer and
    `olmo data inspect` build them, so an inspected batch is exactly the trained one. A
    mixture's held-out tail comes from its last source."""
    tok = tokenizer or data_cfg.build_tokenizer()
    dataset = data_cfg.build_dataset(tok)
    train, held_out = holdout_split(dataset, holdout)
    order = None
    if data_cfg.sources is not None:
        assert isinstance(dataset, ConcatInstances)
        sizes = dataset.sizes[:-1] + [dataset.sizes[-1] - (holdout if holdout > 0 else 0)]
        if sizes[-1] <= 0:
            raise OlmoError(
                f"train.eval_holdout_instances={holdout}: the last of data.sources "
                f"({data_cfg.sources[-1].name!r}) has only {dataset.sizes[-1]} instances; lower it"
            )
        names = [s.name for s in data_cfg.sources]
        order = MixtureOrder(names, sizes, [s.weight for s in data_cfg.sources], seed)
    loader = DataLoader(
        train,
        global_batch_size,
        seed,
        rank=rank,
        world_size=world_size,
        num_workers=data_cfg.num_workers,
        prefetch=data_cfg.prefetch_batches,
        schedule=schedule,
        order=order,
        micro_batch_size=micro_batch_size,
    )
    return loader, held_out
