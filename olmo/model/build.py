"""Build a model of either block type (OLMo, OLMo 2) from its config."""

from __future__ import annotations

import torch

from olmo.model.config import ModelConfig
from olmo.model.olmo2 import Olmo2Transformer
from olmo.model.transformer import Transformer


def build_model(
    cfg: ModelConfig, device: str | torch.device = "cpu", seed: int | None = 0
) -> Transformer:
    """Build and initialise; on "meta" only the structure (call `to_empty` + `init_weights` later)."""
    model_cls = Olmo2Transformer if cfg.block == "olmo2" else Transformer
    with torch.device("meta"):
        model = model_cls(cfg)
    if str(device) == "meta":
        return model
    model.to_empty(device=device)
    gen = None
    if seed is not None:
        gen = torch.Generator(device=device).manual_seed(seed)
    model.init_weights(gen)
    return model
