"""AdamW and the warm-up + decay learning-rate schedule."""

from __future__ import annotations

import math
from typing import Any

import torch

from olmo.train.config import OptimConfig, SchedulerConfig


def param_groups(model: torch.nn.Module, cfg: OptimConfig) -> list[dict[str, Any]]:
    """Two groups: decayed, and not decayed (the token embedding unless cfg.decay_embeddings).
    Matched by name as OLMo-core does (`embeddings.weight`), also under FSDP/AC/compile wrappers."""
    decay, keep = [], []
    for name, p in model.named_parameters():
        exempt = name.split(".")[-2:] == ["embeddings", "weight"] and not cfg.decay_embeddings
        (keep if exempt else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if keep:
        groups.append({"params": keep, "weight_decay": 0.0})
    return groups


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        param_groups(model, cfg),
        lr=cfg.lr,
        betas=(cfg.betas[0], cfg.betas[1]),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        fused=cfg.fused,
        foreach=None if cfg.fused else True,
    )


def lr_factor(step: int, cfg: SchedulerConfig, max_steps: int) -> float:
    """LR multiplier for optimizer step `step` (1-based: step 1 is the first update)."""
    if cfg.warmup_steps > 0 and step <= cfg.warmup_steps:
        return step / cfg.warmup_steps
    if cfg.decay == "constant":
        return 1.0
    decay_steps = (
        cfg.decay_steps if cfg.decay_steps is not None else max(1, max_steps - cfg.warmup_steps)
    )
    t = min(1.0, (step - cfg.warmup_steps) / max(1, decay_steps))
    floor = cfg.final_lr_ratio
    if cfg.decay == "linear":
        return 1.0 - (1.0 - floor) * t
    if cfg.decay == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
    # inverse square root, continuous at the end of warm-up, never below the floor
    return max(floor, math.sqrt(max(1, cfg.warmup_steps) / max(1, step)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
