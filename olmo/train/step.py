"""The arithmetic of one optimizer step, shared by the training loop and `olmo bench`.

Nothing here fetches a value to the host: the loss sum and the gradient norm stay on the
device until the loop's log flush.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch


def tokens_per_step(global_batch: int, seq_len: int) -> int:
    """Predicted tokens of one global batch: each instance predicts seq_len − 1 next tokens."""
    return global_batch * (seq_len - 1)


def loss_scale(world_size: int, global_batch: int, seq_len: int) -> float:
    """The factor on each rank's summed token loss that makes FSDP's gradient (an average over
    ranks) the mean over every predicted token of the global batch."""
    return world_size / tokens_per_step(global_batch, seq_len)


def forward_backward(
    model: torch.nn.Module,
    batch: torch.Tensor,
    micro_batch_size: int,
    scale: float,
    autocast: Callable[[], contextlib.AbstractContextManager],
) -> torch.Tensor:
    """Accumulate gradients of `scale` × summed token loss over micro-batches of `batch`
    (instances of inputs + 1 targets); returns this rank's summed token loss."""
    micro = batch.split(micro_batch_size)
    total = torch.zeros((), device=batch.device)
    fsdp = hasattr(model, "set_requires_gradient_sync")
    for i, mb in enumerate(micro):
        if fsdp:  # reduce-scatter once, after the last micro-batch
            model.set_requires_gradient_sync(i == len(micro) - 1)
        with autocast():
            # Summed token loss through the fused chunked head: no full logits tensor.
            loss = model(mb[:, :-1], labels=mb[:, 1:])
        (loss * scale).backward()
        total += loss.detach()
    return total


def clip_gradients(model: torch.nn.Module, max_norm: float) -> torch.Tensor:
    """Clip to the global L2 norm (max_norm ≤ 0: no clipping) and return that norm."""
    params = [p for p in model.parameters() if p.grad is not None]
    limit = max_norm if max_norm > 0 else float("inf")
    norm = torch.nn.utils.clip_grad_norm_(params, limit, foreach=True)
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm


def optimizer_step(optim: torch.optim.Optimizer, grad_norm: torch.Tensor, fused: bool) -> None:
    """Update unless the (global) gradient norm is non-finite; the loop books skips at flush."""
    if fused:
        # Fused AdamW skips the update (and its step count) on the device when found_inf is
        # set, so no step waits for the norm to reach the host.
        optim.found_inf = (~torch.isfinite(grad_norm)).float()
        optim.step()
    elif torch.isfinite(grad_norm):  # foreach AdamW: one host sync per step
        optim.step()
    optim.zero_grad(set_to_none=True)
