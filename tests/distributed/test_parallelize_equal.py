"""parallelize_model changes how a step is computed, not what: one forward + backward of the small
model on a fixed batch, each option against plain eager fp32, and checkpoints across AC on/off.

Measured here (torch 2.13 CPU, 2 cores), relative L2 error of each gradient, |Δloss|/loss:
- activation checkpointing: bitwise equal (it recomputes the same ops in the same order);
- torch.compile: loss equal, gradients ≤ 3.3e-7; asserted ≤ 1e-5 for both (a RoPE bug on the
  path only compile takes gave 2.3e-2);
- FSDP fp32 on one gloo rank: bitwise equal;
- FSDP bf16 policy (bf16 params in compute, fp32 master and reduction): loss 2.8e-6, gradients
  5.0e-3 – 7.8e-3; asserted loss ≤ 1e-3, gradients in [1e-4, 2e-2] (the lower bound shows the
  compute really ran in bf16).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict

from olmo.checkpoint.checkpointer import Checkpointer
from olmo.checkpoint.config import CheckpointConfig
from olmo.config.schema import Config, load_config
from olmo.distributed.parallelize import parallelize_model
from olmo.model import Transformer, build_model
from tests.helpers import SMALL_MODEL

CPU = torch.device("cpu")
AC_PREFIX = "_checkpoint_wrapped_module."  # torch's checkpoint_wrapper adds it to parameter names
STATE = {"train_state": {"step": 1}}


def config(*overrides: str) -> Config:
    """The tests' small model (d_model 64, 2 layers, real 50k vocabulary), FSDP off unless asked."""
    return load_config("configs/tiny.yaml", [*SMALL_MODEL, "--distributed.fsdp=false", *overrides])


def build(cfg: Config, seed: int = 0) -> Transformer:
    model = build_model(cfg.model, device="cpu", seed=seed)
    return parallelize_model(model, cfg.distributed, CPU, bf16=cfg.train.precision == "bf16")


def batch(cfg: Config) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, cfg.model.vocab_size, (4, cfg.data.seq_len + 1), generator=g)


def full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def step(model: Transformer, tokens: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The summed token loss and every parameter's gradient, by its name without wrappers."""
    loss = model(tokens[:, :-1], labels=tokens[:, 1:])
    loss.backward()
    grads = {}
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient"
        grads[name.replace(AC_PREFIX, "")] = full(p.grad)
    return loss.detach(), grads


def first_qkv(model: Transformer) -> torch.nn.Module:
    """Block 0's qkv projection, under whatever wrappers parallelize_model put around the block."""
    return next(m for name, m in model.named_modules() if name.endswith("attention.qkv"))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def grad_errors(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> dict[str, float]:
    assert got.keys() == ref.keys()
    return {k: rel_err(got[k], ref[k]) for k in ref}


@pytest.fixture
def one_rank_group(tmp_path: Path) -> Iterator[None]:
    """A 1-rank gloo group: FSDP2 and its mixed-precision policy as the trainer runs them on CPU."""
    dist.init_process_group(
        "gloo",
        init_method=f"file://{tmp_path / 'store'}",
        rank=0,
        world_size=1,
        timeout=datetime.timedelta(seconds=60),
    )
    yield
    dist.destroy_process_group()


def test_activation_checkpointing_recomputes_the_same_step():
    cfg = config()
    loss, grads = step(build(cfg), batch(cfg))
    ac = build(config("--distributed.activation_checkpointing=true"))
    calls: list[bool] = []  # AC is really on: each block's forward runs again in backward
    first_qkv(ac).register_forward_hook(lambda *_: calls.append(True))
    ac_loss, ac_grads = step(ac, batch(cfg))
    assert len(calls) == 2
    assert torch.equal(ac_loss, loss)
    assert ac_grads.keys() == grads.keys()
    assert [k for k in grads if not torch.equal(ac_grads[k], grads[k])] == []


@pytest.mark.parametrize("save_ac", [True, False], ids=["ac-to-plain", "plain-to-ac"])
def test_checkpoint_loads_across_activation_checkpointing(one_rank_group, tmp_path, save_ac):
    ac, fsdp = "--distributed.activation_checkpointing=true", "--distributed.fsdp=true"
    with_ac, without = config(ac, fsdp), config(fsdp)
    saved_cfg, loaded_cfg = (with_ac, without) if save_ac else (without, with_ac)
    src = build(saved_cfg, seed=0)
    opt = torch.optim.AdamW(src.parameters(), lr=1e-3)
    step(src, batch(saved_cfg))
    opt.step()
    ckpt = Checkpointer(tmp_path / "ckpts", CheckpointConfig(), rank=0, world_size=1, config={})
    ckpt.save(1, src, opt, STATE)
    path = tmp_path / "ckpts" / "step1"

    # The files name parameters as the plain model does: no AC wrapper in any key.
    keys = set(dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata)
    assert [k for k in keys if "checkpoint_wrapped" in k] == []
    plain = build_model(saved_cfg.model, device="meta").state_dict()
    assert {k for k in keys if k.startswith("model.")} == {f"model.{k}" for k in plain}

    dst = build(loaded_cfg, seed=1)  # other weights, so a load that does nothing fails
    dst_opt = torch.optim.AdamW(dst.parameters(), lr=1e-3)
    assert ckpt.load(path, dst, dst_opt) == STATE
    want_model, want_optim = get_state_dict(src, opt)
    got_model, got_optim = get_state_dict(dst, dst_opt)
    assert want_model.keys() == got_model.keys()
    assert [k for k in want_model if not torch.equal(full(got_model[k]), full(want_model[k]))] == []
    assert want_optim["state"].keys() == got_optim["state"].keys()
    for name, state in want_optim["state"].items():
        for key, value in state.items():
            assert torch.equal(full(got_optim["state"][name][key]), full(value)), (name, key)


def test_bf16_policy_computes_in_bf16_and_keeps_fp32_masters(one_rank_group):
    cfg = config()
    tokens = batch(cfg)
    ref_loss, ref_grads = step(build(cfg), tokens)

    f32_loss, f32_grads = step(build(config("--distributed.fsdp=true")), tokens)
    assert torch.equal(f32_loss, ref_loss)
    assert max(grad_errors(f32_grads, ref_grads).values()) <= 1e-6

    model = build(config("--distributed.fsdp=true", "--train.precision=bf16"))
    seen: dict[str, torch.dtype] = {}
    first_qkv(model).register_forward_hook(
        lambda m, args, out: seen.update(qkv_in=args[0].dtype, w=m.weight.dtype)
    )
    model.final_norm.register_forward_hook(lambda m, args, out: seen.update(final=out.dtype))
    loss, grads = step(model, tokens)
    assert seen == {"qkv_in": torch.bfloat16, "w": torch.bfloat16, "final": torch.bfloat16}
    assert loss.dtype == torch.float32 and abs(loss - ref_loss) / ref_loss <= 1e-3
    errors = grad_errors(grads, ref_grads)
    assert all(1e-4 <= e <= 2e-2 for e in errors.values()), errors
    masters = {n: (p.dtype, p.grad.dtype) for n, p in model.named_parameters()}
    assert set(masters.values()) == {(torch.float32, torch.float32)}, masters


@pytest.mark.slow
def test_compile_matches_eager(tmp_path, monkeypatch):
    # A private inductor cache: a cold compile (~30 s on 2 cores), never another run's artifacts.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    cfg = config()
    ref_loss, ref_grads = step(build(cfg), batch(cfg))
    try:
        model = build(config("--distributed.compile=true"))
        loss, grads = step(model, batch(cfg))
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # compile is really on
    finally:
        torch._dynamo.reset()
    assert abs(loss - ref_loss) / ref_loss <= 1e-5
    errors = grad_errors(grads, ref_grads)
    assert max(errors.values()) <= 1e-5, errors
