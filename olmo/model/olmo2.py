"""The OLMo 2 block variant (arXiv 2501.00656): RMSNorm with weights, QK-norm, and norms applied
to the outputs of attention and MLP (no pre-norms). Everything else is the OLMo model.

Matches transformers' `Olmo2ForCausalLM` (checked in tests); `olmo2_state_dict_to_hf` and
`to_hf_olmo2_config` map to it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from olmo.model.config import ModelConfig
from olmo.model.transformer import Attention, FeedForward, RotaryEmbedding, Transformer


class RMSNorm(nn.Module):
    """RMSNorm with a weight, computed in fp32 (as OLMo 2: weight · normalized, then cast)."""

    def __init__(self, size: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps)
        return y.to(x.dtype)


class Olmo2Attention(Attention):
    """QK-norm: RMSNorm over the whole q and k projections, before splitting into heads."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.q_norm = RMSNorm(cfg.d_model, cfg.layer_norm_eps)
        self.k_norm = RMSNorm(cfg.d_model, cfg.layer_norm_eps)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        qkv = torch.cat((self.q_norm(q), self.k_norm(k), v), dim=-1)
        return qkv.view(b, t, 3, self.n_heads, self.head_dim)


class Olmo2Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attention = Olmo2Attention(cfg)
        self.attention_norm = RMSNorm(cfg.d_model, cfg.layer_norm_eps)  # after attention
        self.feed_forward = FeedForward(cfg)
        self.ff_norm = RMSNorm(cfg.d_model, cfg.layer_norm_eps)  # after the MLP

    def forward(self, x: torch.Tensor, rope: RotaryEmbedding) -> torch.Tensor:
        x = x + self.attention_norm(self.attention(x, rope))
        return x + self.ff_norm(self.feed_forward(x))


class Olmo2Transformer(Transformer):
    block_cls = Olmo2Block

    @staticmethod
    def make_norm(cfg: ModelConfig) -> nn.Module:
        return RMSNorm(cfg.d_model, cfg.layer_norm_eps)

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        super().init_weights(generator)
        for module in self.modules():
            if isinstance(module, RMSNorm):
                module.weight.fill_(1.0)
