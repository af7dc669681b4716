"""OLMo 2 variant: published parameter count and logits equal to transformers' Olmo2ForCausalLM."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from olmo.model import ModelConfig, build_model
from olmo.model.config import PRESETS
from olmo.model.hf import olmo2_state_dict_to_hf, to_hf_olmo2_config
from olmo.model.olmo2 import Olmo2Transformer

BASE = ModelConfig(
    d_model=64,
    n_layers=2,
    n_heads=4,
    vocab_size=1000,
    max_seq_len=64,
    layer_norm_eps=1e-6,
    rope_theta=5e5,
    block="olmo2",
)


def test_olmo2_1b_parameter_count_matches_published():
    cfg = PRESETS["olmo2-1b"]
    model = build_model(cfg, device="meta")
    assert isinstance(model, Olmo2Transformer)
    assert model.num_params() == cfg.num_params() == 1_484_916_736


@pytest.mark.parametrize("tying", [True, False], ids=["tied", "untied"])
def test_logits_equal_transformers_olmo2(tying):
    transformers = pytest.importorskip("transformers")
    cfg = dataclasses.replace(BASE, weight_tying=tying)
    model = build_model(cfg, seed=1)
    with torch.no_grad():  # non-trivial norm weights, so a swapped norm would show
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(len(name)))
    hf = transformers.Olmo2ForCausalLM(to_hf_olmo2_config(cfg))
    missing, unexpected = hf.load_state_dict(olmo2_state_dict_to_hf(model), strict=False)
    assert unexpected == [] and missing == (["lm_head.weight"] if tying else [])
    tokens = torch.randint(0, 1000, (2, 33), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (model.eval()(tokens) - hf.eval()(tokens).logits).abs().max().item()
    assert diff < 1e-5


def test_olmo1_export_refuses_olmo2():
    pytest.importorskip("transformers")
    from olmo.errors import OlmoError
    from olmo.model.hf import to_hf_config

    with pytest.raises(OlmoError, match="model.block=olmo2"):
        to_hf_config(BASE)
