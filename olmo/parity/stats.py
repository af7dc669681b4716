"""Summary statistics of tensors, each with the scale its difference is measured against.

A fingerprint quantity is `(value, scale)`; two values are compared as |a − b| / max(scale_a,
scale_b). Norm-like values are their own scale; values that can sit near zero (a mean, a median, a
sum) are measured against the tensor's RMS or L1 norm, so cancellation never inflates the
relative difference.
"""

from __future__ import annotations

import hashlib
import math

import torch

QUANTILE_SAMPLE = 1 << 20  # torch.quantile is limited to 16M elements: use a fixed stride sample
QUANTILES = (0.01, 0.5, 0.99)
CHUNK = 1 << 22  # elements per fp64 chunk

Quantity = tuple[float, float]


def tensor_stats(x: torch.Tensor) -> dict[str, Quantity]:
    """mean, std, rms, absmax and three quantiles of `x`.

    Chunks are reduced in fp32 (cascade sums: ~1e-7 relative, far inside every tolerance) and
    the chunk results added in fp64, so a [tokens, vocab] logits tensor is never copied whole.
    """
    x = x.detach().reshape(-1)
    parts = []
    for chunk in x.split(CHUNK):
        c = chunk.float()
        lo, hi = torch.aminmax(c)
        parts.append(torch.stack([c.sum(), c.square().sum(), torch.maximum(-lo, hi)]))
    sums = torch.stack(parts).double()
    total, sumsq = sums[:, 0].sum().item(), sums[:, 1].sum().item()
    absmax = sums[:, 2].max().item()
    stride = max(1, -(-x.numel() // QUANTILE_SAMPLE))
    sample = x[::stride].double()
    qs = torch.quantile(sample, torch.tensor(QUANTILES, dtype=sample.dtype, device=x.device))
    qs = qs.tolist()
    mean, r = total / x.numel(), math.sqrt(sumsq / x.numel())
    std = math.sqrt(max(sumsq / x.numel() - mean * mean, 0.0))
    # std against the RMS: the one-pass formula cancels when |mean| ≫ std, never beyond RMS·1e-7.
    out = {"mean": (mean, r), "std": (std, r), "rms": (r, r), "absmax": (absmax, absmax)}
    for q, v in zip(QUANTILES, qs, strict=True):
        out[f"q{round(q * 100):02d}"] = (v, r)
    return out


def norm_quantity(x: torch.Tensor) -> Quantity:
    n = float(x.detach().double().norm())
    return (n, n)


def sum_quantity(x: torch.Tensor) -> Quantity:
    """The sum, measured against the L1 norm (the float checksum of a weight)."""
    x = x.detach().double()
    return (float(x.sum()), float(x.abs().sum()))


def bit_hash(tensors: list[tuple[str, torch.Tensor]]) -> str:
    """sha256 over names, dtypes, shapes and the exact bytes of each tensor (on the CPU)."""
    h = hashlib.sha256()
    for name, t in tensors:
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def relative_difference(a: Quantity, b: Quantity) -> float:
    """|a − b| / max(scale_a, scale_b); 0 for equal values, inf when only one is finite."""
    (va, sa), (vb, sb) = a, b
    if va == vb:
        return 0.0
    finite = [v == v and abs(v) != float("inf") for v in (va, vb)]
    if not all(finite):
        return float("inf")
    scale = max(abs(sa), abs(sb))
    return abs(va - vb) / scale if scale > 0 else float("inf")
