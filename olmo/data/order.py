"""The global order: which instance sits at every data position, as pure arithmetic.

A data position counts instances of one endless stream, the same on every machine and for any
world size. A global batch of B instances at position p is the stream's positions [p, p + B).

- One source (`SingleOrder`): epoch e is positions [e·n, (e+1)·n), holding
  `global_order(n, seed, e)`. A batch never spans epochs: one that would not fit in the rest of an
  epoch starts at the next epoch (the tail is dropped, as a fixed batch always did).
- A mixture (`MixtureOrder`): positions come in blocks of `BLOCK`; each block holds every source
  in proportion to its weight (largest remainder) in an order shuffled from (seed, block). The
  k-th position of source s reads source s's own endless stream of epochs. So the sources of any
  batch follow from (seed, position) alone, and the proportions are exact per block.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from olmo.errors import OlmoError

BLOCK = 1024
"""Positions per mixture block: the weights' resolution (1/1024) and the span of exact counts."""
_MIX_TAG = 0x6D6978  # "mix": keeps the block shuffles apart from the epoch permutations


def global_order(num_instances: int, seed: int, epoch: int) -> np.ndarray:
    """The instance permutation of `epoch`: the same everywhere, a new one every epoch."""
    return np.random.Generator(np.random.PCG64([seed, epoch])).permutation(num_instances)


class SingleOrder:
    """The order of one source: a permutation per epoch, batches aligned to epochs."""

    names: list[str] | None = None

    def __init__(self, num_instances: int, seed: int):
        self.n, self.seed = num_instances, seed
        self._cache: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        # Permutations kept for two epochs: at an epoch end the prefetch plans the next epoch
        # while the step still hashes the last batch of this one (no recomputing back and forth).
        if epoch not in self._cache:
            if len(self._cache) >= 2:
                del self._cache[min(self._cache)]
            self._cache[epoch] = global_order(self.n, self.seed, epoch)
        return self._cache[epoch]

    def align(self, position: int, size: int) -> int:
        """Where a batch of `size` asked for at `position` starts (the next epoch if it
        would not fit in this one)."""
        offset = position % self.n
        return position if offset + size <= self.n else position - offset + self.n

    def indices(self, start: int, size: int) -> np.ndarray:
        """Instance indices at positions [start, start + size) (one epoch: start is aligned)."""
        epoch, offset = divmod(start, self.n)
        return self._perm(epoch)[offset : offset + size].copy()

    def labels(self, start: int, size: int) -> np.ndarray | None:
        return None

    def epoch(self, position: int) -> int:
        return position // self.n


class MixtureOrder:
    """Sources drawn by weight per block of positions; each source its own endless epochs."""

    def __init__(
        self, names: Sequence[str], sizes: Sequence[int], weights: Sequence[float], seed: int
    ):
        self.names, self.sizes, self.seed = list(names), [int(s) for s in sizes], seed
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.counts = block_counts(weights)
        self._labels: dict[int, np.ndarray] = {}
        self._perms: dict[tuple[int, int], np.ndarray] = {}
        self._walks: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def align(self, position: int, size: int) -> int:
        return position  # every source's stream is endless: no epoch to align to

    def epoch(self, position: int) -> int | None:
        return None

    def _block(self, block: int) -> np.ndarray:
        if block not in self._labels:
            if len(self._labels) > 64:  # batches move forward: old blocks are not asked again
                self._labels.clear()
            gen = np.random.Generator(np.random.PCG64([self.seed, block, _MIX_TAG]))
            self._labels[block] = gen.permutation(
                np.repeat(np.arange(len(self.counts)), self.counts)
            )
        return self._labels[block]

    def labels(self, start: int, size: int) -> np.ndarray:
        """Source index of each position in [start, start + size)."""
        return self._walk(start, size)[1]

    def indices(self, start: int, size: int) -> np.ndarray:
        """Global instance ids (sources concatenated in config order) of [start, start + size)."""
        return self._walk(start, size)[0]

    def _walk(self, start: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        # A batch is walked by the prefetch, then for its hash and source counts: keep the last few.
        key = (start, size)
        if key not in self._walks:
            if len(self._walks) >= 16:
                del self._walks[next(iter(self._walks))]
            self._walks[key] = self._walk_blocks(start, size)
        ids, labels = self._walks[key]
        return ids.copy(), labels.copy()

    def _walk_blocks(self, start: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        ids, labels = np.empty(size, np.int64), np.empty(size, np.int64)
        done = 0
        while done < size:
            block, offset = divmod(start + done, BLOCK)
            take = min(BLOCK - offset, size - done)
            lab = self._block(block)
            seg = lab[offset : offset + take]
            for s in range(len(self.counts)):
                mask = seg == s
                # This source's positions so far: whole blocks, then this block's prefix.
                first = block * int(self.counts[s]) + int(np.count_nonzero(lab[:offset] == s))
                nth = first + np.arange(int(mask.sum()), dtype=np.int64)
                ids[done : done + take][mask] = self._source_instance(s, nth)
            labels[done : done + take] = seg
            done += take
        return ids, labels

    def _source_instance(self, s: int, nth: np.ndarray) -> np.ndarray:
        """Global id of source s's instances number `nth` in its own stream of epochs."""
        n = self.sizes[s]
        epochs, within = np.divmod(nth, n)
        out = np.empty_like(nth)
        for e in np.unique(epochs).tolist():
            key = (s, e)
            if key not in self._perms:
                # Two epochs kept per source (as SingleOrder): a permutation is 8 bytes/instance.
                older = [k for k in self._perms if k[0] == s]
                if len(older) >= 2:
                    del self._perms[min(older)]
                gen = np.random.Generator(np.random.PCG64([self.seed, e, s + 1]))
                self._perms[key] = gen.permutation(n)
            sel = epochs == e
            out[sel] = self._perms[key][within[sel]] + self.offsets[s]
        return out


def block_counts(weights: Sequence[float]) -> np.ndarray:
    """Positions per block of each source: `BLOCK`·weight/Σweights, largest remainder."""
    w = np.asarray(weights, dtype=np.float64)
    exact = BLOCK * w / w.sum()
    counts = np.floor(exact).astype(np.int64)
    rest = np.argsort(-(exact - counts), kind="stable")[: BLOCK - int(counts.sum())]
    counts[rest] += 1
    for i, c in enumerate(counts.tolist()):
        if c == 0:
            raise OlmoError(
                f"data.sources[{i}].weight={weights[i]}: below 1/{BLOCK} of the total weight, "
                "the mixture would never draw it; raise it or drop the source"
            )
    return counts
