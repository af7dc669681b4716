"""The fused chunked head + cross-entropy equals F.cross_entropy on the full logits."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from olmo.model import ModelConfig, build_model
from olmo.model.head import linear_cross_entropy

V, D, N = 1000, 32, 37


def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The reference: summed fp32 token loss over full logits, and the token count."""
    loss = F.cross_entropy(logits.flatten(0, -2).float(), labels.flatten(), reduction="sum")
    return loss, labels.numel()


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, D, generator=g, requires_grad=True)
    w = (torch.randn(V, D, generator=g) * 0.5).requires_grad_()
    y = torch.randint(0, V, (N,), generator=g)
    return h, w, y


def _grads(loss_fn, h, w, y, scale: float):
    h.grad = w.grad = None
    loss = loss_fn(h, w, y)
    (loss * scale).backward()
    return loss.detach(), h.grad.clone(), w.grad.clone()


def _reference(h, w, y):
    return F.cross_entropy(F.linear(h, w).float(), y, reduction="sum")


@pytest.mark.parametrize("chunk", [1, 5, 16, N, 1000])
def test_fused_loss_and_gradients_equal_reference(chunk):
    h, w, y = _inputs()
    ref = _grads(_reference, h, w, y, scale=0.37)
    fused = _grads(lambda *a: linear_cross_entropy(*a, chunk_tokens=chunk), h, w, y, scale=0.37)
    assert fused[0].dtype == torch.float32
    for a, b in zip(fused, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_no_grad_gives_the_same_loss_and_keeps_batch_shape():
    h, w, y = _inputs(1)
    with torch.no_grad():
        fused = linear_cross_entropy(h.view(1, N, D), w, y.view(1, N), chunk_tokens=7)
        ref = _reference(h, w, y)
    torch.testing.assert_close(fused, ref, rtol=1e-6, atol=1e-5)


def test_bad_chunk_size():
    h, w, y = _inputs()
    with pytest.raises(ValueError, match="chunk_tokens"):
        linear_cross_entropy(h, w, y, chunk_tokens=0)


@pytest.mark.parametrize("tying", [True, False], ids=["tied", "untied"])
def test_model_labels_path_equals_logits_path(tying):
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, vocab_size=300, weight_tying=tying)
    cfg = dataclasses.replace(cfg, loss_chunk_tokens=13)  # odd: the last chunk is partial
    tokens = torch.randint(0, 300, (3, 17), generator=torch.Generator().manual_seed(2))
    inputs, labels = tokens[:, :-1], tokens[:, 1:]
    model = build_model(cfg, seed=3)
    ref_loss, count = cross_entropy_loss(model(inputs), labels)
    ref_loss.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    loss = model(inputs, labels=labels)
    loss.backward()
    assert count == labels.numel()
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-4)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[name], rtol=1e-5, atol=1e-6, msg=name)
    hidden = model(inputs, return_hidden=True)
    assert hidden.shape == (3, 16, 32)
    torch.testing.assert_close(F.linear(hidden, model.output_weight), model(inputs))


def test_autocast_bf16_matches_reference_under_autocast():
    h, w, y = _inputs(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = _grads(_reference, h, w, y, scale=1.0)
        fused = _grads(lambda *a: linear_cross_entropy(*a, chunk_tokens=8), h, w, y, scale=1.0)
    assert fused[1].dtype == fused[2].dtype == torch.float32
    for a, b in zip(fused, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)


def test_second_backward_is_refused():
    h, w, y = _inputs()
    loss = linear_cross_entropy(h, w, y)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="only once"):
        loss.backward()


@pytest.mark.parametrize("chunk", [5, N])
def test_z_loss_gradient_equals_autograd_of_the_reference_formula(chunk):
    """OLMo 2's z-loss, z·mean(logsumexp(logits)²), on top of the mean cross-entropy: the fused
    head's precomputed gradients equal autograd's; the logged parts stay apart."""
    z = 0.05  # large enough that a wrong z-gradient exceeds the tolerance (OLMo 2 uses 1e-5)
    h, w, y = _inputs(2)

    def reference(h, w, y):
        logits = F.linear(h, w).float()
        return F.cross_entropy(logits, y) + z * torch.logsumexp(logits, -1).square().mean()

    ref = _grads(reference, h, w, y, scale=1.0)
    out = linear_cross_entropy(h, w, y, chunk_tokens=chunk, z_loss=z)
    h.grad = w.grad = None
    (out.total / N).backward()
    torch.testing.assert_close(out.total.detach() / N, ref[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h.grad, ref[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w.grad, ref[2], rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        logits = F.linear(h, w)
        torch.testing.assert_close(out.cross_entropy, _reference(h, w, y), rtol=1e-6, atol=1e-5)
        lse2 = torch.logsumexp(logits, -1).square().sum()
        torch.testing.assert_close(out.z_loss, z * lse2, rtol=1e-6, atol=1e-6)
    assert not out.cross_entropy.requires_grad and not out.z_loss.requires_grad
