"""AdamW or SGD, and the learning-rate schedules (warm-up + decay, WSD, anneal)."""

from __future__ import annotations

import dataclasses
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


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW (fused by default: a non-finite step is then skipped on the device, as
    step.optimizer_step sets `found_inf`) or SGD (foreach: fused SGD has no DTensor kernel, so
    it cannot run on FSDP's parameters; the loop then checks the norm on the host)."""
    groups = param_groups(model, cfg)
    foreach = None if cfg.fused else True
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, foreach=True)
    return torch.optim.AdamW(
        groups,
        lr=cfg.lr,
        betas=(cfg.betas[0], cfg.betas[1]),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        fused=cfg.fused,
        foreach=foreach,
    )


def state_kind(cfg: OptimConfig) -> str:
    """What the optimizer keeps per parameter, and in which groups: a checkpoint's optimizer
    state loads only into an optimizer of the same kind (AdamW: step + two moments; SGD: a
    momentum buffer or nothing)."""
    name = "sgd-momentum" if cfg.name == "sgd" and cfg.momentum > 0 else cfg.name
    return f"{name}, {'one group' if cfg.decay_embeddings else 'embedding apart'}"


def apply_hparams(optim: torch.optim.Optimizer, model: torch.nn.Module, cfg: OptimConfig) -> None:
    """Set the configured hyperparameters on every group: loading an optimizer state also loads
    the checkpoint's (betas, eps, weight decay, momentum), and an allowed change must win."""
    fresh = build_optimizer(model, dataclasses.replace(cfg, fused=False))
    for group, want in zip(optim.param_groups, fresh.param_groups, strict=True):
        group.update({k: v for k, v in want.items() if k not in ("params", "fused", "foreach")})


def lr_factor(step: int, cfg: SchedulerConfig, max_steps: int) -> float:
    """LR multiplier for optimizer step `step` (1-based: step 1 is the first update)."""
    if cfg.decay == "anneal":
        raise ValueError("anneal: the LR depends on where it started; use learning_rate()")
    if cfg.warmup_steps > 0 and step <= cfg.warmup_steps:
        return step / cfg.warmup_steps
    if cfg.decay == "constant":
        return 1.0
    floor = cfg.final_lr_ratio
    if cfg.decay == "wsd":  # stable at the peak until the last decay_steps, then linear
        decay_steps = max(1, cfg.decay_steps or 1)
        t = min(1.0, max(0, step - (max_steps - decay_steps)) / decay_steps)
        return 1.0 - (1.0 - floor) * t
    decay_steps = (
        cfg.decay_steps if cfg.decay_steps is not None else max(1, max_steps - cfg.warmup_steps)
    )
    t = min(1.0, (step - cfg.warmup_steps) / max(1, decay_steps))
    if cfg.decay == "linear":
        return 1.0 - (1.0 - floor) * t
    if cfg.decay == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
    # inverse square root, continuous at the end of warm-up, never below the floor
    return max(floor, math.sqrt(max(1, cfg.warmup_steps) / max(1, step)))


def learning_rate(
    step: int,
    peak: float,
    cfg: SchedulerConfig,
    max_steps: int,
    anneal_start: list[float] | None = None,
) -> float:
    """The LR of step `step`. An anneal goes from `anneal_start = [step0, lr0]` (the loaded
    checkpoint's step and last LR) linearly to 0: lr0 at step0 + 1, 0 at max_steps."""
    if cfg.decay != "anneal":
        return peak * lr_factor(step, cfg, max_steps)
    if anneal_start is None:
        raise ValueError("anneal without a start: the trainer sets it when it loads a checkpoint")
    step0, lr0 = int(anneal_start[0]), float(anneal_start[1])
    return lr0 * max(0, max_steps - step) / max(1, max_steps - step0 - 1)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
