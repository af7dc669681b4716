"""Memory-mapped token dataset: prepared dirs concatenated and cut into `seq_len` instances.

Shards of all dirs are concatenated in order (dir order, then shard order); instance `i` is tokens
`[i * seq_len, (i + 1) * seq_len)` of that stream (it may span shard boundaries); the tail that
does not fill an instance is dropped. Every dir is checked against the tokenizer on open.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from olmo.data.prepare import FORMAT, token_dtype
from olmo.errors import OlmoError
from olmo.inputs import check_record
from olmo.tokenizer import OlmoTokenizer

# Full np.max over the data up to this many tokens per dataset (~0.1 s per 100M in page cache);
# beyond it, shards are spot-checked at both ends so a 2T-token dataset still opens fast.
FULL_CHECK_TOKENS = 2**30
SPOT_CHECK_TOKENS = 2**20


class TokenDataset:
    """Fixed-length instances over the prepared token dirs `paths` (np.memmap, no copies)."""

    def __init__(self, paths: Sequence[str | Path], seq_len: int, tokenizer: OlmoTokenizer):
        if seq_len < 1:
            raise OlmoError(f"data.seq_len={seq_len}: must be >= 1")
        self.paths = [Path(p) for p in paths]
        self.seq_len = seq_len
        self.tokenizer = tokenizer
        self.shards: list[np.ndarray] = []
        checked = 0
        for path in self.paths:
            meta = read_metadata(path, tokenizer)
            for shard in meta["shards"]:
                arr = _open_shard(path, shard, meta["dtype"])
                _check_ids(
                    arr, path / shard["file"], shard, tokenizer, full=checked < FULL_CHECK_TOKENS
                )
                checked += len(arr)
                self.shards.append(arr)
        lengths = np.array([len(s) for s in self.shards], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        self.total_tokens = int(self.offsets[-1])
        self.num_instances = self.total_tokens // seq_len
        if self.num_instances == 0:
            raise OlmoError(
                f"{self.paths[0]}: only {self.total_tokens} tokens, fewer than data.seq_len="
                f"{seq_len}; add data or lower data.seq_len"
            )

    def __len__(self) -> int:
        return self.num_instances

    def __getitem__(self, index: int) -> np.ndarray:
        """Instance `index` as int64 tokens of length `seq_len`."""
        if not -self.num_instances <= index < self.num_instances:
            raise IndexError(f"instance {index} out of range [0, {self.num_instances})")
        return self.get_batch(np.array([index % self.num_instances]))[0]

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Instances `indices` stacked as int64 `[len(indices), seq_len]`."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_instances):
            raise IndexError(f"instance indices must be in [0, {self.num_instances})")
        out = np.empty((len(idx), self.seq_len), dtype=np.int64)
        starts = idx * self.seq_len
        shard_ids = np.searchsorted(self.offsets, starts, side="right") - 1
        for row, (start, k) in enumerate(zip(starts.tolist(), shard_ids.tolist(), strict=True)):
            local = start - int(self.offsets[k])
            if local + self.seq_len <= len(self.shards[k]):  # common case: one slice, one copy
                out[row] = self.shards[k][local : local + self.seq_len]
            else:
                self._read_span(out[row], k, local)
        return out

    def _read_span(self, dest: np.ndarray, k: int, local: int) -> None:
        """Fill `dest` from shard `k` at `local`, continuing into the following shards."""
        filled = 0
        while filled < len(dest):
            piece = self.shards[k][local : local + len(dest) - filled]
            dest[filled : filled + len(piece)] = piece
            filled += len(piece)
            k, local = k + 1, 0


class ConcatInstances:
    """The instances of several TokenDatasets (a mixture's sources) one after another; instance
    ids of source s start at `offsets[s]`."""

    def __init__(self, parts: Sequence[TokenDataset]):
        self.parts = list(parts)
        self.paths = [p for part in self.parts for p in part.paths]
        self.seq_len = self.parts[0].seq_len
        self.sizes = [len(p) for p in self.parts]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"instance indices must be in [0, {len(self)})")
        out = np.empty((len(idx), self.seq_len), dtype=np.int64)
        part = np.searchsorted(self.offsets, idx, side="right") - 1
        for s in np.unique(part).tolist():
            sel = part == s
            out[sel] = self.parts[s].get_batch(idx[sel] - self.offsets[s])
        return out


def read_metadata(path: Path, tokenizer: OlmoTokenizer) -> dict:
    """`path/metadata.json`, checked against `tokenizer`; OlmoError says how to fix."""
    meta_file = path / "metadata.json"
    redo = f"re-run `olmo prepare-data ... --output {path} --tokenizer {tokenizer.name}`"
    if not meta_file.is_file():
        what = "does not exist" if not path.exists() else "has no metadata.json"
        raise OlmoError(f"{path}: not a prepared token directory ({what}); {redo}")
    try:
        meta = json.loads(meta_file.read_text())
    except (ValueError, RecursionError) as e:
        raise OlmoError(f"{meta_file}: corrupt metadata ({e}); {redo}") from None
    keys = ("format", "tokenizer_hash", "vocab_size", "eos_id", "dtype", "shards")
    check_record(meta, str(meta_file), {"shards": list}, redo, required=keys)
    for i, shard in enumerate(meta["shards"]):
        _check_shard_entry(shard, f"{meta_file}: shards[{i}]", redo)
    fmt, tok_hash, vocab, eos, dtype, shards = (meta[k] for k in keys)
    if fmt != FORMAT:
        raise OlmoError(f"{meta_file}: format {fmt}, this version reads {FORMAT}; {redo}")
    ours = (tokenizer.hash, tokenizer.vocab_size, tokenizer.eos_id)
    if (tok_hash, vocab, eos) != ours:
        raise OlmoError(
            f"{path}: prepared with tokenizer {meta.get('tokenizer')!r} (hash {tok_hash}, vocab "
            f"{vocab}, eos {eos}) but data.tokenizer={tokenizer.name!r} has (hash {ours[0]}, "
            f"vocab {ours[1]}, eos {ours[2]}); {redo}"
        )
    if dtype != token_dtype(tokenizer).name or not isinstance(shards, list):
        raise OlmoError(f"{meta_file}: dtype {dtype!r} does not fit the tokenizer; {redo}")
    return meta


def _check_shard_entry(shard: Any, where: str, redo: str) -> None:
    """A shard entry names a file of the token dir itself and its (int) token count."""
    fields = {"file": str, "tokens": int, "max_id": int}
    check_record(shard, where, fields, redo, required=("file", "tokens"))
    name = shard["file"]
    if Path(name).name != name or name in ("", ".", ".."):
        raise OlmoError(f"{where}: file {name!r} is not a file name in the directory; {redo}")
    if shard["tokens"] < 0 or shard.get("max_id", 0) < 0:
        raise OlmoError(f"{where}: negative tokens or max_id; {redo}")


def _open_shard(path: Path, shard: dict, dtype: str) -> np.ndarray:
    """Memory-map one shard; size, dtype and shape must match the metadata."""
    file = path / shard["file"]
    redo = f"re-run `olmo prepare-data` to rebuild {path}"
    try:
        arr = np.load(file, mmap_mode="r")
        size = os.path.getsize(file)
    except (OSError, ValueError, EOFError) as e:
        raise OlmoError(f"{file}: missing, truncated or corrupt shard ({e}); {redo}") from None
    if not isinstance(arr, np.ndarray):  # np.load opens an .npz archive whatever the name
        arr.close()
        raise OlmoError(f"{file}: an .npz archive, not an .npy array; {redo}")
    if arr.dtype != np.dtype(dtype) or arr.ndim != 1:
        raise OlmoError(
            f"{file}: holds {arr.dtype}{list(arr.shape)}, metadata says {dtype}; {redo}"
        )
    if len(arr) != shard["tokens"] or size != arr.offset + arr.nbytes:
        raise OlmoError(
            f"{file}: {len(arr)} tokens in {size} bytes, metadata says {shard['tokens']} tokens "
            f"(truncated or corrupt); {redo}"
        )
    return arr


def _check_ids(
    arr: np.ndarray, file: Path, shard: dict, tokenizer: OlmoTokenizer, full: bool
) -> None:
    """Every id must be < vocab_size: the recorded max always, the data itself (spot) checked."""
    recorded = shard.get("max_id", 0)
    exact = full or len(arr) <= 2 * SPOT_CHECK_TOKENS
    if exact:
        seen = int(arr.max()) if len(arr) else 0
    else:
        n = SPOT_CHECK_TOKENS
        seen = max(int(arr[:n].max()), int(arr[-n:].max()))
    worst = max(recorded, seen)
    if worst < tokenizer.vocab_size and exact and "max_id" in shard and seen != recorded:
        raise OlmoError(
            f"{file}: largest token id is {seen} but metadata recorded {recorded} (corrupt "
            "shard); re-run `olmo prepare-data`"
        )
    if worst >= tokenizer.vocab_size:
        raise OlmoError(
            f"{file}: token id {worst} >= vocab size {tokenizer.vocab_size} of tokenizer "
            f"{tokenizer.name!r}; the shard is corrupt or from another tokenizer, re-run "
            "`olmo prepare-data`"
        )
