"""The OLMo decoder: no biases, non-parametric LayerNorm, SwiGLU, RoPE, causal SDPA.

Single-device code: sharding, compilation and mixed precision are applied from outside
(olmo.distributed.parallelize). Build on the meta device, then `init_weights()`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from olmo.model.config import ModelConfig
from olmo.model.head import HeadLoss, linear_cross_entropy


class LayerNorm(nn.Module):
    """Non-parametric LayerNorm, computed in fp32 for stability under bf16."""

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)


class RotaryEmbedding(nn.Module):
    """RoPE tables (rotate-half convention, as OLMo and HF Olmo); kept in fp32."""

    def __init__(self, head_dim: int, max_seq_len: int, theta: float):
        super().__init__()
        self.head_dim, self.max_seq_len, self.theta = head_dim, max_seq_len, theta
        self.register_buffer("cos", torch.empty(max_seq_len, head_dim), persistent=False)
        self.register_buffer("sin", torch.empty(max_seq_len, head_dim), persistent=False)

    def reset_tables(self) -> None:
        device = self.cos.device
        inv_freq = 1.0 / (
            self.theta
            ** (
                torch.arange(0, self.head_dim, 2, device=device, dtype=torch.float32)
                / self.head_dim
            )
        )
        t = torch.arange(self.max_seq_len, device=device, dtype=torch.float32)
        freqs = torch.outer(t, inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos.copy_(emb.cos())
        self.sin.copy_(emb.sin())

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # q, k: [batch, heads, seq, head_dim]
        seq = q.shape[-2]
        cos, sin = self.cos[:seq], self.sin[:seq]
        return _rotate(q, cos, sin), _rotate(k, cos, sin)

    def rotate_qkv(self, qkv: torch.Tensor) -> torch.Tensor:
        """qkv [batch, seq, 3, heads, head_dim] → the same with q and k rotated (a new tensor)."""
        if qkv.dtype != torch.float32 or torch.compiler.is_compiling():  # the generic path
            q, k, v = qkv.unbind(2)
            q, k = (r.transpose(1, 2) for r in self(q.transpose(1, 2), k.transpose(1, 2)))
            return torch.stack((q, k, v), dim=2)
        half = self.head_dim // 2
        seq = qkv.shape[1]
        # [seq, 1, 1, half]: broadcasts over (q|k, heads); both halves of the tables are equal.
        cos, sin = (t[:seq, None, None, :half] for t in (self.cos, self.sin))
        return _RotateQKV.apply(qkv, cos, sin)


class _RotateQKV(torch.autograd.Function):
    """RoPE on the q and k parts of a fused qkv tensor in four in-place-friendly ops.

    The gradient of a rotation is the inverse rotation (sin → −sin): backward is one more
    rotation, with nothing saved but the tables. Same arithmetic as `_rotate` up to rounding.
    """

    @staticmethod
    def forward(ctx, qkv, cos, sin):
        ctx.save_for_backward(cos, sin)
        return _rotate_qkv(qkv, cos, sin)

    @staticmethod
    def backward(ctx, grad):
        cos, sin = ctx.saved_tensors
        return _rotate_qkv(grad, cos, -sin), None, None


def _rotate_qkv(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    x1, x2 = x[:, :, :2, :, :half], x[:, :, :2, :, half:]
    o1, o2 = out[:, :, :2, :, :half], out[:, :, :2, :, half:]
    torch.mul(x1, cos, out=o1).addcmul_(x2, sin, value=-1.0)  # x1·cos − x2·sin
    torch.mul(x2, cos, out=o2).addcmul_(x1, sin)  # x2·cos + x1·sin
    out[:, :, 2] = x[:, :, 2]  # v passes through
    return out


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    xf = x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (xf * cos + rotated * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        # One fused projection: a single large matmul is faster than three small ones.
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """x [batch, seq, d] → q, k, v as [batch, seq, 3, heads, head_dim]."""
        b, t, _ = x.shape
        return self.qkv(x).view(b, t, 3, self.n_heads, self.head_dim)

    def forward(self, x: torch.Tensor, rope: RotaryEmbedding) -> torch.Tensor:
        b, t, d = x.shape
        qkv = rope.rotate_qkv(self.project(x))
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Module):
    """SwiGLU: one fused input projection whose halves are (up, gate), as in OLMo."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.hidden = cfg.hidden_size
        self.proj = nn.Linear(cfg.d_model, 2 * self.hidden, bias=False)
        self.out = nn.Linear(self.hidden, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attention_norm = LayerNorm(cfg.layer_norm_eps)
        self.attention = Attention(cfg)
        self.ff_norm = LayerNorm(cfg.layer_norm_eps)
        self.feed_forward = FeedForward(cfg)

    def forward(self, x: torch.Tensor, rope: RotaryEmbedding) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), rope)
        return x + self.feed_forward(self.ff_norm(x))


class Transformer(nn.Module):
    block_cls: type[nn.Module] = Block
    """Subclasses (olmo.model.olmo2) swap the block and the final norm."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.embeddings = nn.Embedding(cfg.padded_vocab_size, cfg.d_model)
        self.rope = RotaryEmbedding(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.layers = nn.ModuleDict({str(i): self.block_cls(cfg) for i in range(cfg.n_layers)})
        self.final_norm = self.make_norm(cfg)
        self.lm_head = (
            None if cfg.weight_tying else nn.Linear(cfg.d_model, cfg.padded_vocab_size, bias=False)
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        return_hidden: bool = False,
        z_loss: float | None = None,
    ) -> torch.Tensor | HeadLoss:
        """input_ids [batch, seq] → logits [batch, seq, padded_vocab].

        With `labels` [batch, seq]: the summed next-token cross-entropy (fp32 scalar) through the
        fused chunked head (olmo.model.head), so the full logits never exist. With
        `return_hidden`: the final-norm hidden states [batch, seq, d_model]. Both stay inside
        forward so that FSDP has the head weight gathered. With labels and a `z_loss`
        coefficient: a HeadLoss (total to differentiate, cross-entropy and z-loss apart).
        """
        if input_ids.shape[-1] > self.cfg.max_seq_len:
            raise ValueError(
                f"sequence length {input_ids.shape[-1]} > model.max_seq_len {self.cfg.max_seq_len}"
            )
        h = self.embeddings(input_ids)
        for block in self.layers.values():
            h = block(h, self.rope)
        h = self.final_norm(h)
        if return_hidden:
            return h
        if labels is not None:
            return linear_cross_entropy(
                h, self.output_weight, labels, self.cfg.loss_chunk_tokens, z_loss
            )
        return F.linear(h, self.output_weight)

    @staticmethod
    def make_norm(cfg: ModelConfig) -> nn.Module:
        return LayerNorm(cfg.layer_norm_eps)

    @property
    def output_weight(self) -> torch.Tensor:
        """The head weight [padded_vocab, d_model]: the embedding when tied."""
        return self.embeddings.weight if self.lm_head is None else self.lm_head.weight

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Fill every parameter (and the RoPE tables) in place; works after `to_empty()`."""
        std = self.cfg.init_std
        out_std = std / math.sqrt(2 * self.cfg.n_layers)
        nn.init.normal_(self.embeddings.weight, std=std, generator=generator)
        for block in self.layers.values():
            nn.init.normal_(block.attention.qkv.weight, std=std, generator=generator)
            nn.init.normal_(block.attention.out.weight, std=out_std, generator=generator)
            nn.init.normal_(block.feed_forward.proj.weight, std=std, generator=generator)
            nn.init.normal_(block.feed_forward.out.weight, std=out_std, generator=generator)
        if self.lm_head is not None:
            nn.init.normal_(self.lm_head.weight, std=std, generator=generator)
        self.rope.reset_tables()

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
