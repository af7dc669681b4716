"""Next-token cross-entropy over the (padded) vocabulary."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum of token losses (fp32) and the number of predicted tokens.

    Returning the sum lets the trainer normalise by the global token count, so the logged loss
    is the mean over the whole global batch whatever the micro-batching or world size.
    """
    loss = F.cross_entropy(logits.flatten(0, -2).float(), labels.flatten(), reduction="sum")
    return loss, labels.numel()
