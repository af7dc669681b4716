"""Fused output head + cross-entropy: the [tokens, vocab] logits never exist in full.

With a 50k vocabulary the head dominates small models: the fp32 logits, their log-softmax and
the gradients of both are each tokens × 50,304 floats. Here the head matmul and the loss run a
chunk of tokens at a time, and the gradients of the hidden states and the head weight are
computed right there (softmax − one-hot is the gradient of the summed token loss), so backward
only scales them. Same math as `F.cross_entropy(F.linear(h, w).float(), y, reduction="sum")`:
fp32 logits, fp32 loss and fp32 weight-gradient accumulation.

With a z-loss coefficient z (OLMo 2: 1e-5) the differentiated loss gains z·Σ logsumexp(logits)²,
which keeps the softmax normaliser near 1 (PaLM, OLMo 2); its gradient on the logits,
2z·lse·softmax, is added to the same in-place buffer: one extra pass (a row scaling) per chunk.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

DEFAULT_CHUNK_TOKENS = 512


class HeadLoss(NamedTuple):
    """The summed token losses of a head with z-loss (fp32 scalars)."""

    total: torch.Tensor
    """cross_entropy + z_loss: the one to differentiate."""
    cross_entropy: torch.Tensor
    """The pure cross-entropy (no gradient): the logged `loss`."""
    z_loss: torch.Tensor
    """coefficient × Σ logsumexp(logits)² (no gradient): the logged `z_loss`."""


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, labels, chunk, z_coef):  # hidden [N, d], weight [V, d]
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n, vocab = hidden.shape[0], weight.shape[0]
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        z_sum = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        )
        # One logits buffer reused by every chunk: fresh large CPU allocations page-fault.
        buf = torch.empty(min(chunk, n), vocab, dtype=hidden.dtype, device=hidden.device)
        for start in range(0, n, chunk):
            h, y = hidden[start : start + chunk], labels[start : start + chunk]
            logits = torch.mm(h, weight.t(), out=buf[: h.shape[0]]).float()
            # The z-loss needs each row's logsumexp: logit − log-probability of any one token
            # (the label's), so no extra pass over the chunk's logits.
            x_y = logits.gather(1, y[:, None]) if z_coef else None
            # In place: every fresh [chunk, vocab] tensor would cost a pass of page faults on CPU.
            logp = torch._log_softmax(logits, 1, False, out=logits)
            logp_y = logp.gather(1, y[:, None])
            loss -= logp_y.sum()
            lse = None if x_y is None else (x_y - logp_y).squeeze(1)
            if lse is not None:
                z_sum += lse.square().sum()
            if not (need_h or need_w):
                continue
            # d(sum of token losses)/d logits = softmax − one-hot, built in place; the z-loss
            # adds 2z·lse·softmax, i.e. scales each row's softmax by 1 + 2z·lse.
            probs = logp.exp_()
            if lse is not None:
                probs.mul_((lse * (2 * z_coef)).add_(1.0)[:, None])
            probs.scatter_add_(1, y[:, None], probs.new_full((h.shape[0], 1), -1.0))
            g = probs.to(hidden.dtype)
            if need_h:
                torch.mm(g, weight, out=grad_h[start : start + chunk])
            if need_w:
                if g.dtype == torch.float32:
                    grad_w.addmm_(g.t(), h)
                else:
                    grad_w += torch.mm(g.t(), h).float()
        ctx.grads = (grad_h, grad_w, weight.dtype)
        # The first output is what backward differentiates; the two parts are for logging.
        total, ce = loss + z_sum * z_coef, loss.clone()
        ctx.mark_non_differentiable(ce, z_sum)
        return total, ce, z_sum

    @staticmethod
    def backward(ctx, grad_loss, _grad_ce=None, _grad_z=None):
        if ctx.grads is None:
            raise RuntimeError("fused head + cross-entropy: backward can run only once per forward")
        grad_h, grad_w, w_dtype = ctx.grads
        ctx.grads = None  # scaled in place below (no second [vocab, d] allocation)
        if grad_h is not None:
            grad_h.mul_(grad_loss.to(grad_h.dtype))
        if grad_w is not None:
            grad_w = grad_w.mul_(grad_loss).to(w_dtype)
        return grad_h, grad_w, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    z_loss: float | None = None,
) -> torch.Tensor | HeadLoss:
    """Sum over tokens of cross-entropy(hidden @ weight.T, labels), fp32, chunk by chunk.

    hidden [..., d], labels [...] (ids in [0, vocab)); under autocast the matmuls run in the
    autocast dtype, as `F.linear` would. With `z_loss` (a coefficient, may be 0): a HeadLoss
    whose `total` (cross-entropy + z_loss·Σ logsumexp²) carries the gradients.
    """
    if chunk_tokens <= 0:
        raise ValueError(f"chunk_tokens must be positive, got {chunk_tokens}")
    device_type = hidden.device.type
    dtype = hidden.dtype
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
    h = hidden.reshape(-1, hidden.shape[-1]).to(dtype)
    w = weight.to(dtype)
    if not torch.is_grad_enabled():  # evaluation: no gradients to precompute
        h, w = h.detach(), w.detach()
    with torch.autocast(device_type, enabled=False):
        total, ce, z_sum = _LinearCrossEntropy.apply(
            h, w, labels.reshape(-1), chunk_tokens, float(z_loss or 0.0)
        )
    return total if z_loss is None else HeadLoss(total, ce, z_sum * z_loss)
