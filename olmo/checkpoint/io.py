"""Plain functions over torch.distributed.checkpoint (DCP) for whole-model reads and writes.

A checkpoint directory holds the DCP files, `config.yaml` (the resolved run config, so a
checkpoint is self-describing) and `COMMITTED.json` (written last; see checkpointer.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp

from olmo.checkpoint.layout import CONFIG, MARKER, marker_info, read_marker, write_marker
from olmo.checkpoint.safe import dcp_load
from olmo.config.loader import from_dict, read_yaml, save_yaml
from olmo.errors import OlmoError
from olmo.fsutil import atomic_dir
from olmo.model import ModelConfig, Transformer, build_model

__all__ = ["CONFIG", "MARKER", "load_model", "parameter_digest", "read_marker", "save_model"]


def model_config_of(ckpt_dir: str | os.PathLike) -> ModelConfig:
    """The model section of the config stored inside a checkpoint."""
    path = Path(ckpt_dir) / CONFIG
    data = read_yaml(path)
    if "model" not in data:
        raise OlmoError(f"{path}: has no 'model' section")
    return from_dict(ModelConfig, data["model"], "model.", str(path)).resolved()


def load_model(ckpt_dir: str | os.PathLike, device: str = "cpu") -> Transformer:
    """Full (unsharded) model from a sharded checkpoint, on one process; any world size wrote it."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        raise OlmoError(f"{ckpt_dir}: checkpoint directory not found")
    read_marker(ckpt_dir)
    model = build_model(model_config_of(ckpt_dir), device=device, seed=None)
    state = {"model": model.state_dict()}
    dcp_load(state, ckpt_dir, no_dist=True)
    model.load_state_dict(state["model"])
    model.rope.reset_tables()
    return model


def save_model(
    model: Transformer, out_dir: str | os.PathLike, config: dict[str, Any] | None = None
) -> Path:
    """Write a model-only checkpoint (single process) atomically: temp dir, marker, rename."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise OlmoError(f"{out}: already exists and is not empty; choose another output directory")
    with atomic_dir(out) as tmp:
        state = {"model": {k: v.detach().contiguous() for k, v in model.state_dict().items()}}
        dcp.save(state, checkpoint_id=str(tmp), no_dist=True)
        cfg = dict(config or {})
        cfg["model"] = _model_dict(model.cfg)
        save_yaml(cfg, tmp / CONFIG)
        write_marker(tmp, marker_info(tmp, step=0, world_size=1, contents=["model"]))
    return out


def export_hf(ckpt_dir: str | os.PathLike, out_dir: str | os.PathLike, verify: bool = True):
    """The one HF export path (`olmo convert to-hf`, `olmo checkpoint consolidate --format hf`):
    the checkpoint's files checked against its marker unless `verify` is off, then the model
    written as an OlmoForCausalLM directory. Returns the model."""
    from olmo.checkpoint.inspect import require_intact
    from olmo.checkpoint.layout import resolve_checkpoint
    from olmo.model.hf import save_hf

    ckpt = resolve_checkpoint(ckpt_dir)
    read_marker(ckpt)
    if verify:
        require_intact(ckpt)
    model = load_model(ckpt)
    save_hf(model, out_dir)
    return model


def _model_dict(cfg: ModelConfig) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(cfg)


def parameter_digest(model: torch.nn.Module) -> str:
    """sha256 over every parameter's bytes in name order: equal digests = bitwise-equal weights."""
    import hashlib

    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]
