from __future__ import annotations

import dataclasses

import pytest

from olmo.train.config import SchedulerConfig
from olmo.train.optim import learning_rate, lr_factor


@pytest.mark.parametrize("decay", ["linear", "cosine", "inv_sqrt", "constant"])
def test_warmup_then_decay_to_floor(decay):
    cfg = SchedulerConfig(decay=decay, warmup_steps=10, final_lr_ratio=0.1)
    f = [lr_factor(s, cfg, 100) for s in range(1, 101)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(f[:9], f[1:10], strict=True))  # warm-up rises
    assert all(a >= b - 1e-12 for a, b in zip(f[9:-1], f[10:], strict=True))  # then never rises
    assert min(f) >= 0.1 - 1e-12
    if decay in ("linear", "cosine"):
        assert f[-1] == pytest.approx(0.1)


def test_linear_midpoint():
    cfg = SchedulerConfig(decay="linear", warmup_steps=0, decay_steps=100, final_lr_ratio=0.0)
    assert lr_factor(50, cfg, 1000) == pytest.approx(0.5)
    assert lr_factor(500, cfg, 1000) == pytest.approx(0.0)


@pytest.mark.parametrize("block", ["olmo", "olmo2"])
@pytest.mark.parametrize("tying", [True, False])
def test_weight_decay_spares_only_the_embedding(block: str, tying: bool):
    """OLMo 2 / OLMo-core: every parameter decays (norm weights of olmo2 too) except the token
    embedding; with zero gradients one step shrinks exactly the decayed ones by lr × wd."""
    import torch

    from olmo.model import ModelConfig, build_model
    from olmo.train.config import OptimConfig
    from olmo.train.optim import build_optimizer

    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, vocab_size=300, block=block)
    model = build_model(dataclasses.replace(cfg, weight_tying=tying), seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer(model, OptimConfig(lr=0.5, weight_decay=0.1, fused=False))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for name, p in model.named_parameters():
        factor = 1.0 if name == "embeddings.weight" else 1 - 0.5 * 0.1
        torch.testing.assert_close(p.detach(), before[name] * factor, msg=name)
    norms = [n for n, _ in model.named_parameters() if "norm" in n]
    assert bool(norms) == (block == "olmo2")  # OLMo's LayerNorm has no weights to decay
    everything = build_optimizer(model, OptimConfig(decay_embeddings=True, fused=False))
    assert [g["weight_decay"] for g in everything.param_groups] == [0.1]


def test_wsd_warms_up_holds_then_decays_to_the_floor_at_max_steps():
    cfg = SchedulerConfig(decay="wsd", warmup_steps=10, decay_steps=20, final_lr_ratio=0.1)
    f = {s: lr_factor(s, cfg, 100) for s in range(1, 101)}
    assert f[1] == pytest.approx(0.1) and f[10] == pytest.approx(1.0)  # warm-up
    assert all(f[s] == 1.0 for s in range(10, 81))  # stable through step 80 = 100 - 20
    assert f[81] == pytest.approx(1 - 0.9 / 20) and f[90] == pytest.approx(0.55)
    assert f[100] == pytest.approx(0.1)  # the floor exactly at max_steps
    # Raising max_steps (a longer run) lengthens only the stable phase.
    assert lr_factor(100, cfg, 200) == 1.0 and lr_factor(200, cfg, 200) == pytest.approx(0.1)


def test_anneal_goes_linearly_from_the_start_lr_to_zero():
    cfg = SchedulerConfig(decay="anneal", warmup_steps=10)
    lrs = [learning_rate(s, 1.0, cfg, 14, anneal_start=[10, 0.3]) for s in range(11, 15)]
    assert lrs == pytest.approx([0.3, 0.2, 0.1, 0.0])
