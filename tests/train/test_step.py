"""The shared step arithmetic (olmo/train/step.py): device-side skip, and no host sync on a GPU."""

from __future__ import annotations

import contextlib

import pytest
import torch

from olmo.model import ModelConfig, build_model
from olmo.train.config import OptimConfig
from olmo.train.optim import build_optimizer
from olmo.train.step import clip_gradients, forward_backward, optimizer_step

CFG = ModelConfig(d_model=32, n_layers=2, n_heads=2, vocab_size=256, max_seq_len=16)


def _setup(device: str, fused: bool = True):
    model = build_model(CFG, device="cpu", seed=0).to(device)
    optim = build_optimizer(model, OptimConfig(fused=fused))
    batch = torch.randint(0, 256, (4, 17), generator=torch.Generator().manual_seed(0)).to(device)
    return model, optim, batch


def _step(model, optim, batch, poison: bool = False, fused: bool = True) -> torch.Tensor:
    loss = forward_backward(model, batch, 2, 1 / batch[:, 1:].numel(), contextlib.nullcontext)
    if poison:
        next(model.parameters()).grad.fill_(float("nan"))
    optimizer_step(optim, clip_gradients(model, 1.0), fused)
    return loss


@pytest.mark.parametrize("fused", [True, False])
def test_nonfinite_step_changes_nothing_then_training_goes_on(fused: bool):
    model, optim, batch = _setup("cpu", fused)
    _step(model, optim, batch, fused=fused)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps = [s["step"].item() for s in optim.state.values()]
    _step(model, optim, batch, poison=True, fused=fused)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [s["step"].item() for s in optim.state.values()] == steps  # bias correction intact
    assert all(p.grad is None for p in model.parameters())
    _step(model, optim, batch, fused=fused)
    assert not torch.equal(
        before["layers.0.attention.qkv.weight"], model.layers["0"].attention.qkv.weight
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (sync debug mode is CUDA's)")
def test_cuda_step_never_waits_for_the_host():
    model, optim, batch = _setup("cuda")
    _step(model, optim, batch)  # the first step initialises optimizer state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        losses = [_step(model, optim, batch) for _ in range(3)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.isfinite(torch.stack(losses)))
