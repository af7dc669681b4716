"""The OLMo model: config, presets and the single-device transformer."""

from olmo.model.build import build_model
from olmo.model.config import PRESETS, ModelConfig
from olmo.model.transformer import Transformer

__all__ = ["PRESETS", "ModelConfig", "Transformer", "build_model"]
