"""The shipped configs load and resolve to the published shapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from olmo.config.schema import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(
    ("name", "params", "tokens_per_batch"),
    [("olmo-1b.yaml", 1_176_764_416, 2048 * 2048), ("olmo-7b.yaml", 6_888_095_744, 2048 * 2048)],
)
def test_published_configs(name, params, tokens_per_batch):
    cfg = load_config(CONFIGS / name)
    assert cfg.model.num_params() == params
    assert cfg.train.global_batch_size * cfg.data.seq_len == tokens_per_batch
    assert cfg.optim.grad_clip == 1.0 and cfg.optim.betas == [0.9, 0.95]


def test_tiny_demo_config():
    cfg = load_config(CONFIGS / "tiny.yaml")
    assert cfg.model.preset == "tiny" and cfg.data.paths == ["bundled"]
    assert cfg.data.seq_len <= cfg.model.max_seq_len


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path):
    load_config(path)


def test_anneal_config_is_the_1b_annealed():
    base, anneal = (
        load_config(CONFIGS / "olmo-1b.yaml"),
        load_config(CONFIGS / "olmo-1b-anneal.yaml"),
    )
    assert anneal.model == base.model and anneal.data.seq_len == base.data.seq_len
    assert anneal.scheduler.decay == "anneal" and anneal.checkpoint.load.endswith("step700000")
    tokens = (anneal.train.max_steps - 700000) * anneal.train.global_batch_size * 2048
    assert 50e9 <= tokens < 50e9 + 2048 * 2048
