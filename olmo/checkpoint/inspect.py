"""What a checkpoint holds (from its marker, DCP metadata and side files) and single-file export."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint.metadata import TensorStorageMetadata

from olmo.checkpoint.layout import (
    CONFIG,
    checkpoints_root,
    committed_steps,
    read_marker,
    set_aside,
    unfinished,
)
from olmo.checkpoint.safe import (
    checkpoint_problems,
    dcp_load,
    read_dcp_metadata,
    read_trainer_state,
)
from olmo.config.loader import read_yaml
from olmo.errors import OlmoError
from olmo.fsutil import atomic_file


def tensor_summary(ckpt: Path) -> dict[str, dict[str, int]]:
    """Per top-level key (model, optim): tensors, their elements and bytes; non-tensor values."""
    out: dict[str, dict[str, int]] = {}
    for fqn, md in read_dcp_metadata(ckpt).state_dict_metadata.items():
        part = out.setdefault(
            fqn.split(".", 1)[0], {"tensors": 0, "numel": 0, "bytes": 0, "values": 0}
        )
        if isinstance(md, TensorStorageMetadata):
            numel = md.size.numel()
            part["tensors"] += 1
            part["numel"] += numel
            part["bytes"] += numel * md.properties.dtype.itemsize
        else:
            part["values"] += 1
    return out


def config_summary(ckpt: Path) -> dict[str, Any]:
    path = ckpt / CONFIG
    if not path.is_file():
        return {}
    cfg = read_yaml(path)
    model, train = cfg.get("model", {}), cfg.get("train", {})
    keys = ("preset", "d_model", "n_layers", "n_heads", "vocab_size", "weight_tying")
    return {
        "model": {k: model.get(k) for k in keys if k in model},
        "seq_len": cfg.get("data", {}).get("seq_len"),
        "global_batch_size": train.get("global_batch_size"),
        "max_steps": train.get("max_steps"),
        "lr": cfg.get("optim", {}).get("lr"),
        "seed": train.get("seed"),
    }


def checkpoint_info(ckpt: Path) -> dict[str, Any]:
    """Everything `olmo checkpoint info` shows about one committed checkpoint (no checksumming)."""
    marker = read_marker(ckpt)
    files = marker.get("files", {})
    trainer = read_trainer_state(ckpt)
    return {
        "path": str(ckpt),
        "committed": True,
        "step": marker.get("step"),
        "world_size": marker.get("world_size"),
        "time": marker.get("time"),
        "contents": marker.get("contents", []),
        "async": marker.get("async"),
        "blocking_s": marker.get("blocking_s"),
        "files": len(files),
        "bytes": sum(f["size"] for f in files.values()),
        "tensors": tensor_summary(ckpt),
        "trainer": trainer.get("train_state", {}),
        "data_loader": trainer.get("loader", {}),
        "rng_files": len(list(ckpt.glob("rng-rank*.pt"))),
        "config": config_summary(ckpt),
    }


def run_listing(path: Path) -> list[dict[str, Any]]:
    """Every checkpoint-like directory of a run/checkpoints dir with its state, newest first."""
    root = checkpoints_root(path)
    if root is None:
        return []
    rows = [(s, p, "committed") for s, p in committed_steps(root)]
    rows += [(s, p, "not committed (a save that never finished)") for s, p in unfinished(root)]
    rows += [(s, p, "set aside at resume (failed verification)") for s, p in set_aside(root)]
    latest = root / "latest"
    target = os.readlink(latest) if latest.is_symlink() else None
    return [
        {"name": p.name, "step": s, "status": st, "latest": p.name == target}
        for s, p, st in sorted(rows, key=lambda r: (-r[0], r[2]))
    ]


def consolidate_torch(ckpt: Path, out: Path) -> dict[str, torch.Tensor]:
    """The model weights of a sharded checkpoint (any world size) as one torch.save file.

    Like DCP's format_utils.dcp_to_torch_save, the state dict is rebuilt from the checkpoint's
    metadata, but only the "model" entries are read (not the optimizer, twice their size).
    """
    weights = {
        fqn.split(".", 1)[1]: torch.empty(md.size, dtype=md.properties.dtype)
        for fqn, md in read_dcp_metadata(ckpt).state_dict_metadata.items()
        if fqn.startswith("model.") and isinstance(md, TensorStorageMetadata)
    }
    if not weights:
        raise OlmoError(f"{ckpt}: holds no model weights")
    state = {"model": weights}
    dcp_load(state, ckpt, no_dist=True)
    with atomic_file(out) as tmp:
        torch.save(state["model"], tmp)
    return state["model"]


def require_intact(ckpt: Path) -> None:
    problems = checkpoint_problems(ckpt)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        hint = "" if "use another checkpoint" in problems[0] else "; use another checkpoint"
        raise OlmoError(f"{problems[0]}{more}{hint}")
