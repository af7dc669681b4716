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
    z_loss: float = 0.0,
    z_sum: torch.Tensor | None = None,
) -> torch.Tensor:
    """Accumulate gradients of `scale` × summed token loss over micro-batches of `batch`
    (instances of inputs + 1 targets); returns this rank's summed token cross-entropy.

    With a `z_loss` coefficient the gradients include it and its summed value is added to
    `z_sum` (a device scalar), apart from the returned cross-entropy."""
    micro = batch.split(micro_batch_size)
    total = torch.zeros((), device=batch.device)
    fsdp = hasattr(model, "set_requires_gradient_sync")
    for i, mb in enumerate(micro):
        if fsdp:  # reduce-scatter once, after the last micro-batch
            model.set_requires_gradient_sync(i == len(micro) - 1)
        with autocast():
            # Summed token loss through the fused chunked head: no full logits tensor.
            if z_loss:
                out = model(mb[:, :-1], labels=mb[:, 1:], z_loss=z_loss)
                loss = out.total
            else:
                loss = model(mb[:, :-1], labels=mb[:, 1:])
        (loss * scale).backward()
        if z_loss:
            total += out.cross_entropy
            if z_sum is not None:
                z_sum += out.z_loss
        else:
            total += loss.detach()
    return total


def clip_gradients(model: torch.nn.Module, max_norm: float) -> torch.Tensor:
    """Clip to the global L2 norm (max_norm ≤ 0: no clipping) and return that norm."""
    params = [p for p in model.parameters() if p.grad is not None]
    limit = max_norm if max_norm > 0 else float("inf")
    norm = torch.nn.utils.clip_grad_norm_(params, limit, foreach=True)
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm


def optimizer_step(
    optim: torch.optim.Optimizer,
    grad_norm: torch.Tensor,
    fused: bool,
    skip: torch.Tensor | None = None,
) -> None:
    """Update unless the (global) gradient norm is non-finite or `skip` (a device bool, e.g. a
    loss spike) is true; the loop books skips at flush."""
    drop = ~torch.isfinite(grad_norm)
    if skip is not None:
        drop = drop | skip
    if fused:
        # Fused AdamW skips the update (and its step count) on the device when found_inf is
        # set, so no step waits for the norm to reach the host.
        optim.found_inf = drop.float()
        optim.step()
    elif not drop:  # foreach AdamW: one host sync per step
        optim.step()
    optim.zero_grad(set_to_none=True)
