"""The OLMo model: published parameter counts, no biases, causality, deterministic init, RoPE."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from olmo.checkpoint.io import parameter_digest
from olmo.errors import OlmoError
from olmo.model import PRESETS, ModelConfig, Transformer, build_model
from olmo.model.transformer import RotaryEmbedding

SMALL = ModelConfig(d_model=64, n_layers=2, n_heads=4, vocab_size=1000, max_seq_len=64)


@pytest.mark.parametrize(
    ("preset", "expected"),
    [("olmo-1b", 1_176_764_416), ("olmo-7b", 6_888_095_744), ("tiny", None)],
)
def test_preset_parameter_counts_match_published(preset, expected):
    cfg = ModelConfig(preset=preset).resolved()
    model = build_model(cfg, device="meta")
    counted = sum(p.numel() for p in model.parameters())
    assert counted == cfg.num_params()
    if expected is not None:
        assert counted == expected
    assert cfg.padded_vocab_size == 50304


def test_preset_shapes():
    assert PRESETS["olmo-1b"].hidden_size == 8192 and PRESETS["olmo-1b"].weight_tying
    assert PRESETS["olmo-7b"].hidden_size == 11008 and not PRESETS["olmo-7b"].weight_tying
    # default SwiGLU width: 8/3·d rounded up to a multiple of 128
    assert ModelConfig(d_model=128).hidden_size == 384
    assert ModelConfig(d_model=4096).hidden_size == 11008
    # a preset key given beside the preset overrides it
    assert ModelConfig(preset="olmo-1b", n_layers=2).resolved().n_layers == 2


@pytest.mark.parametrize("tying", [True, False])
def test_no_bias_and_parameter_free_layer_norms(tying):
    model = build_model(dataclasses.replace(SMALL, weight_tying=tying), device="meta")
    names = [n for n, _ in model.named_parameters()]
    assert all(n.endswith(".weight") for n in names), names
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            assert module.bias is None
        if "LayerNorm" in type(module).__name__:
            assert list(module.parameters(recurse=False)) == []
    per_block = {n.split(".", 2)[2] for n in names if n.startswith("layers.")}
    assert per_block == {
        "attention.qkv.weight",
        "attention.out.weight",
        "feed_forward.proj.weight",
        "feed_forward.out.weight",
    }
    assert ("lm_head.weight" in names) is (not tying)


def test_causal():
    model = build_model(SMALL, seed=0).eval()
    x = torch.randint(0, SMALL.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))
    y = x.clone()
    y[:, 15] = (y[:, 15] + 1) % SMALL.vocab_size
    with torch.no_grad():
        a, b = model(x), model(y)
    assert a.shape == (2, 24, SMALL.padded_vocab_size)
    torch.testing.assert_close(a[:, :15], b[:, :15], rtol=0, atol=1e-6)
    assert (a[:, 15:] - b[:, 15:]).abs().amax(dim=-1).min() > 1e-4  # every later position moved


def test_init_is_deterministic_for_a_seed():
    a = build_model(SMALL, seed=7)
    b = build_model(SMALL, seed=7)
    c = build_model(SMALL, seed=8)
    assert parameter_digest(a) == parameter_digest(b) != parameter_digest(c)
    # meta build + to_empty + init_weights by hand gives the same weights and RoPE tables
    with torch.device("meta"):
        d = Transformer(SMALL)
    d.to_empty(device="cpu")
    d.init_weights(torch.Generator().manual_seed(7))
    assert parameter_digest(d) == parameter_digest(a)
    assert torch.equal(d.rope.cos, a.rope.cos) and torch.equal(d.rope.sin, a.rope.sin)
    # output projections use the smaller std
    out_std = a.layers["0"].attention.out.weight.std().item()
    qkv_std = a.layers["0"].attention.qkv.weight.std().item()
    assert out_std == pytest.approx(0.02 / (2 * SMALL.n_layers) ** 0.5, rel=0.1)
    assert qkv_std == pytest.approx(0.02, rel=0.1)


def _rope_reference(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate-half RoPE as a complex rotation: (x_i, x_{i+d/2}) by angle pos·theta^(-2i/d)."""
    d = x.shape[-1]
    pos = torch.arange(x.shape[-2], dtype=torch.float64)[:, None]
    freq = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    z = torch.complex(x[..., : d // 2].double(), x[..., d // 2 :].double())
    z = z * torch.polar(torch.ones_like(pos * freq), pos * freq)
    return torch.cat([z.real, z.imag], dim=-1)


def test_rope_matches_reference_formula():
    rope = RotaryEmbedding(head_dim=16, max_seq_len=32, theta=500.0)
    rope.reset_tables()
    q, k = torch.randn(2, 3, 20, 16), torch.randn(2, 3, 20, 16)
    rq, rk = rope(q, k)
    torch.testing.assert_close(rq.double(), _rope_reference(q, 500.0), rtol=0, atol=1e-5)
    torch.testing.assert_close(rk.double(), _rope_reference(k, 500.0), rtol=0, atol=1e-5)
    # relative: <rope(q)_m, rope(k)_n> depends only on m - n
    v = torch.randn(1, 1, 1, 16).expand(1, 1, 20, 16)
    rv, _ = rope(v, v)
    dots = torch.einsum("d,nd->n", rv[0, 0, 3], rv[0, 0, 3:13])
    dots2 = torch.einsum("d,nd->n", rv[0, 0, 7], rv[0, 0, 7:17])
    torch.testing.assert_close(dots, dots2, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"d_model": 100, "n_heads": 3}, "divisible"),
        ({"d_model": 12, "n_heads": 4}, "even"),
        ({"n_layers": 0}, "n_layers must be positive"),
        ({"vocab_size": -1}, "vocab_size must be positive"),
        ({"max_seq_len": 0}, "max_seq_len must be positive"),
    ],
)
def test_validate_errors(changes, message):
    cfg = dataclasses.replace(SMALL, **changes)
    with pytest.raises(OlmoError, match=message):
        cfg.validate()
    with pytest.raises(OlmoError, match=message):
        build_model(cfg, device="meta")


def test_unknown_preset_and_too_long_input():
    with pytest.raises(OlmoError, match="unknown preset 'olmo-2b'"):
        ModelConfig(preset="olmo-2b").resolved()
    model = build_model(SMALL, seed=0)
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, SMALL.max_seq_len + 1, dtype=torch.long))


def test_fused_qkv_rope_forward_and_backward_match_generic_rope():
    rope = RotaryEmbedding(head_dim=16, max_seq_len=32, theta=500.0)
    rope.reset_tables()
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(2, 20, 3, 3, 16, generator=g, requires_grad=True)
    weights = torch.randn(2, 20, 3, 3, 16, generator=g)
    fast = rope.rotate_qkv(qkv)
    (fast * weights).sum().backward()
    fast_grad, qkv.grad = qkv.grad, None
    q, k, v = qkv.unbind(2)
    rq, rk = rope(q.transpose(1, 2), k.transpose(1, 2))
    ref = torch.stack((rq.transpose(1, 2), rk.transpose(1, 2), v), dim=2)
    (ref * weights).sum().backward()
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(fast_grad, qkv.grad, rtol=0, atol=1e-6)
