"""How the model is spread over devices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class DistributedConfig:
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    """Process-group backend; auto = nccl on CUDA/ROCm, gloo on CPU."""
    init_timeout_s: float = 600.0
    """Timeout of process-group setup and the first step (compilation, cold caches)."""
    collective_timeout_s: float = 300.0
    """Collective timeout after the first step: a dead peer is noticed in minutes, not 30."""
    fsdp: bool = True
    """Shard parameters, gradients and optimizer state with FSDP2 (ZeRO-3), also at world size 1."""
    reshard_after_forward: bool = True
    """Free gathered parameters after forward (ZeRO-3); False trades memory for less traffic."""
    activation_checkpointing: bool = False
    """Recompute each block's activations in backward to save memory."""
    compile: bool = False
    """torch.compile each block (first compile takes tens of seconds)."""
    init_device: Literal["cpu", "meta"] = "cpu"
    """Build weights on the CPU (identical bits for every world size and vendor) or on meta,
    materialising only each rank's shard (needed for models that don't fit one host's memory)."""
