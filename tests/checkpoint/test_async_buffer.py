"""Async saves: training waits only for the copy into a host buffer allocated once; the writing,
checksums and commit run on the writer thread, and the result is an ordinary checkpoint."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import torch

from olmo.checkpoint.checkpointer import Checkpointer
from olmo.checkpoint.config import CheckpointConfig
from olmo.checkpoint.io import load_model
from olmo.checkpoint.layout import verify
from olmo.model import ModelConfig, build_model


def _model_and_optim():
    cfg = ModelConfig(d_model=64, n_layers=2, n_heads=4, vocab_size=256, max_seq_len=32)
    model = build_model(cfg, seed=0)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optim.step()
    return cfg, model, optim


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_holds(ckpt: Path, weights: dict[str, torch.Tensor]) -> None:
    assert verify(ckpt) is None
    got = load_model(ckpt).state_dict()
    assert all(torch.equal(got[k], v) for k, v in weights.items())


def test_async_save_returns_after_the_copy_and_commits_on_the_writer_thread(tmp_path: Path):
    cfg, model, optim = _model_and_optim()
    config = {"model": dataclasses.asdict(cfg)}
    ckpt = Checkpointer(tmp_path, CheckpointConfig(async_save=True), 0, 1, config)
    gate, writers = threading.Event(), []
    ckpt._writer.submit(gate.wait, 5)  # the writer thread is busy until the test lets it go
    ckpt.on_written = lambda step: writers.append(threading.current_thread())
    before = _weights(model)
    ckpt.save(1, model, optim, {"train_state": {"step": 1}})
    # save() returned before anything was written ...
    assert not (tmp_path / "step1").exists() and not writers
    with torch.no_grad():  # ... and the next optimizer step changes the weights meanwhile
        for p in model.parameters():
            p.add_(1.0)
    gate.set()
    ckpt.wait()
    assert writers and writers[0] is not threading.main_thread()
    _assert_holds(tmp_path / "step1", before)

    after = _weights(model)
    ckpt.save(2, model, optim, {"train_state": {"step": 2}})
    ckpt.wait()
    _assert_holds(tmp_path / "step2", after)
    assert ckpt._buffer.allocations == 1  # the second save reused the first one's buffer
