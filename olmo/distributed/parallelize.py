"""Sharding applied from outside the model: activation checkpointing → compile → FSDP2 per block → root."""

from __future__ import annotations

import torch
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from olmo.distributed.config import DistributedConfig
from olmo.model import Transformer


def parallelize_model(
    model: Transformer, cfg: DistributedConfig, device: torch.device, bf16: bool
) -> Transformer:
    """Wrap `model` in place for training and return it.

    bf16: FSDP keeps fp32 master weights and casts to bf16 when it gathers a block; gradients
    are reduced in fp32 (OLMo's mixed-precision recipe).
    """
    if cfg.activation_checkpointing:
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

        for name, block in list(model.layers.items()):
            model.layers[name] = checkpoint_wrapper(block, preserve_rng_state=False)
    if cfg.compile:
        for block in model.layers.values():
            block.compile()
    if not cfg.fsdp:
        return model
    mp = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if bf16
        else None
    )
    kwargs = {"mp_policy": mp} if mp is not None else {}
    for block in model.layers.values():
        fully_shard(block, reshard_after_forward=cfg.reshard_after_forward, **kwargs)
    # The root holds the embeddings (tied with the output head) and needs no resharding:
    # it is gathered again right away for backward.
    fully_shard(model, reshard_after_forward=False, **kwargs)
    return model
