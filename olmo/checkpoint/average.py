"""`olmo checkpoint average`: the weighted mean of several checkpoints' weights ("model soup").

Memory-bounded: each input's DCP metadata is read once (safely, see safe.py), then every model
tensor is read from each checkpoint in turn — whatever number of ranks wrote it, DCP joins the
shards — and added into one float64 accumulator, so the inputs are never in memory whole (the
optimizer state is never read). The output is a weights-only checkpoint (`contents: [model]`,
the first input's config.yaml), written atomically; `olmo train` (checkpoint.load=PATH), `olmo
eval` and `olmo convert to-hf` take it like any other.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta, TensorStorageMetadata

from olmo.checkpoint.layout import (
    CONFIG,
    marker_info,
    read_marker,
    resolve_checkpoint,
    write_marker,
)
from olmo.checkpoint.safe import SafeReader, dcp_load, read_dcp_metadata
from olmo.config.loader import read_yaml, save_yaml
from olmo.errors import OlmoError
from olmo.fsutil import atomic_dir

PREFIX = "model."
"""DCP flattens {"model": {name: tensor}} into keys `model.<name>`."""


class _Input:
    """One checkpoint to average: its path, weight, model tensors (name → metadata) and a
    reader whose metadata is unpickled once, not once per tensor."""

    def __init__(self, path: Path, weight: float):
        self.path, self.weight = path, weight
        self.step = read_marker(path).get("step")
        md = read_dcp_metadata(path)
        self.tensors = _model_tensors(path, md)
        self.reader = _CachedReader(str(path), md)

    def read(self, name: str, like: TensorStorageMetadata) -> torch.Tensor:
        out = torch.empty(like.size, dtype=like.properties.dtype)
        dcp_load({"model": {name: out}}, self.path, no_dist=True, reader=self.reader)
        return out


class _CachedReader(SafeReader):
    def __init__(self, path: str, md: Metadata):
        super().__init__(path)
        self._md = md

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        if self._md.storage_meta is None:
            self._md.storage_meta = StorageMeta()
        self._md.storage_meta.load_id = self.load_id
        return self._md


def _model_tensors(path: Path, md: Metadata) -> dict[str, TensorStorageMetadata]:
    out = {}
    for fqn, entry in md.state_dict_metadata.items():
        if not fqn.startswith(PREFIX):
            continue
        if not isinstance(entry, TensorStorageMetadata):
            raise OlmoError(f"{path}: model value {fqn} is not a tensor; cannot average it")
        out[fqn[len(PREFIX) :]] = entry
    if not out:
        raise OlmoError(f"{path}: holds no model weights; give checkpoints written by olmo train")
    return out


def parse_weights(text: str) -> list[float]:
    """`--weights w1,w2,...` as numbers."""
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise OlmoError(f"--weights {text!r}: not a comma-separated list of numbers") from None


def _check_weights(weights: list[float], count: int) -> None:
    """One per checkpoint, any scale (they are normalised), finite, not summing to 0."""
    if len(weights) != count:
        raise OlmoError(
            f"--weights: {len(weights)} values for {count} checkpoints; give one per checkpoint"
        )
    if not all(math.isfinite(w) for w in weights) or sum(weights) == 0:
        raise OlmoError(f"--weights {weights}: must be finite numbers with a nonzero sum")


def _check_same(inputs: list[_Input]) -> None:
    """Every input holds the same tensor names with the same shapes and dtypes as the first."""
    first = inputs[0]
    for other in inputs[1:]:
        extra, missing = (
            set(other.tensors) - set(first.tensors),
            set(first.tensors) - set(other.tensors),
        )
        if extra or missing:
            name, where = (sorted(missing)[0], "lacks") if missing else (sorted(extra)[0], "adds")
            raise OlmoError(
                f"{other.path}: {where} tensor {name!r} compared with {first.path}; "
                "average checkpoints of the same model"
            )
        for name, a in first.tensors.items():
            b = other.tensors[name]
            if a.size != b.size or a.properties.dtype != b.properties.dtype:
                raise OlmoError(
                    f"{other.path}: tensor {name!r} is {list(b.size)} {b.properties.dtype}, "
                    f"{first.path} has {list(a.size)} {a.properties.dtype}; "
                    "average checkpoints of the same model"
                )


def _averaged(inputs: list[_Input]) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, weighted mean) one tensor at a time; integer tensors must agree and are kept."""
    total = sum(i.weight for i in inputs)
    for name, like in sorted(inputs[0].tensors.items()):
        dtype = like.properties.dtype
        if not dtype.is_floating_point:
            first = inputs[0].read(name, like)
            for other in inputs[1:]:
                if not torch.equal(other.read(name, like), first):
                    raise OlmoError(
                        f"{other.path}: integer tensor {name!r} differs; cannot average"
                    )
            yield name, first
            continue
        acc = torch.zeros(like.size, dtype=torch.float64)
        for i in inputs:
            acc.add_(i.read(name, like).double(), alpha=i.weight / total)
        yield name, acc.to(dtype)


def average_checkpoints(
    paths: list[str | os.PathLike],
    out: str | os.PathLike,
    weights: list[float] | None = None,
    verify: bool = True,
) -> dict[str, Any]:
    """Write the weighted mean (uniform by default) of `paths`' model weights to `out` (a new
    directory); returns what the marker records about it. `verify` checksums the inputs first."""
    from olmo.checkpoint.inspect import require_intact

    out = Path(out)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise OlmoError(f"--out {out}: already exists; choose another output directory")
    ckpts = [resolve_checkpoint(p, "checkpoint") for p in paths]
    weights = [1.0] * len(ckpts) if weights is None else weights
    _check_weights(weights, len(ckpts))
    inputs = [_Input(c, w) for c, w in zip(ckpts, weights, strict=True)]
    _check_same(inputs)
    if verify:
        for c in ckpts:
            require_intact(c)
    config = read_yaml(ckpts[0] / CONFIG)
    sources = [{"path": str(i.path.resolve()), "step": i.step, "weight": i.weight} for i in inputs]
    with atomic_dir(out) as tmp:
        # the output is one model's weights: the only thing held whole
        state = {"model": dict(_averaged(inputs))}
        dcp.save(state, checkpoint_id=str(tmp), no_dist=True)
        save_yaml(config, tmp / CONFIG)
        info = marker_info(tmp, step=0, world_size=1, contents=["model"], averaged_from=sources)
        write_marker(tmp, info)
    return info
