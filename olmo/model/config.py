"""Model hyper-parameters and the presets we train (tiny CPU demo, OLMo-1B, OLMo-7B)."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from olmo.errors import OlmoError

T = TypeVar("T")


def round_up(x: float, multiple: int) -> int:
    return int(-(-x // multiple) * multiple)


def _remembers_given_keys(cls: type[T]) -> type[T]:
    """Wrap the dataclass __init__ so that an instance knows which keys its caller gave.

    A preset must not override a given key even when its value equals the dataclass default
    (`preset: olmo-7b` + `weight_tying: true`); the YAML + overrides reach the class as exactly
    these keyword arguments (`config.loader.from_dict`). `dataclasses.replace` gives every key.
    """
    init = cls.__init__
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self._given = frozenset(names[: len(args)]).union(kwargs)

    cls.__init__ = __init__  # type: ignore[method-assign]
    return cls


@_remembers_given_keys
@dataclass
class ModelConfig:
    preset: str | None = None
    """Start from a named preset (tiny, olmo-1b, olmo-7b, olmo2-1b); keys given beside it override it."""
    d_model: int = 128
    """Hidden size."""
    n_layers: int = 4
    """Number of transformer blocks."""
    n_heads: int = 4
    """Attention heads; d_model must be divisible by it."""
    mlp_hidden_size: int | None = None
    """SwiGLU hidden size; None = 8/3·d_model rounded up to a multiple of 128."""
    vocab_size: int = 50280
    """Tokenizer vocabulary; the embedding is padded up to a multiple of `vocab_multiple`."""
    vocab_multiple: int = 128
    """Pad the embedding rows to a multiple of this (tensor-core friendly shapes)."""
    max_seq_len: int = 2048
    """Longest sequence the RoPE tables are built for."""
    rope_theta: float = 10000.0
    """RoPE base frequency."""
    weight_tying: bool = True
    """Share the input embedding with the output projection (OLMo-1B: yes, OLMo-7B: no)."""
    layer_norm_eps: float = 1e-5
    """Epsilon of the non-parametric LayerNorm."""
    init_std: float = 0.02
    """Std of the normal init; output projections are scaled by 1/sqrt(2·n_layers)."""
    loss_chunk_tokens: int = 512
    """Tokens per chunk of the fused output head + cross-entropy (bounds the logits memory)."""
    block: Literal["olmo", "olmo2"] = "olmo"
    """Block variant: olmo (pre-norm, non-parametric LayerNorm) or olmo2 (RMSNorm after
    attention and MLP, QK-norm; `layer_norm_eps` is then the RMSNorm epsilon)."""

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def hidden_size(self) -> int:
        if self.mlp_hidden_size is not None:
            return self.mlp_hidden_size
        return round_up(8 * self.d_model / 3, 128)

    @property
    def padded_vocab_size(self) -> int:
        return round_up(self.vocab_size, self.vocab_multiple)

    @property
    def given_keys(self) -> frozenset[str]:
        """Keys passed to the constructor (from YAML + overrides when loaded from a config)."""
        return self._given  # type: ignore[attr-defined]

    def resolved(self) -> ModelConfig:
        """The preset's values overlaid with every explicitly given key, validated."""
        cfg = self
        if self.preset is not None:
            if self.preset not in PRESETS:
                raise OlmoError(
                    f"model.preset: unknown preset '{self.preset}'; choose one of {', '.join(PRESETS)}"
                )
            given = {k: getattr(self, k) for k in self.given_keys}
            cfg = ModelConfig(**{**dataclasses.asdict(PRESETS[self.preset]), **given})
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """One OlmoError naming the key for any size or constant the model cannot be built with."""
        for key in _POSITIVE:
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise OlmoError(f"model.{key} must be positive, got {value!r}")
        if self.mlp_hidden_size is not None and self.mlp_hidden_size <= 0:
            raise OlmoError(
                f"model.mlp_hidden_size must be positive (or null for 8/3·d_model), "
                f"got {self.mlp_hidden_size}"
            )
        if self.d_model % self.n_heads:
            raise OlmoError(
                f"model.d_model ({self.d_model}) must be divisible by model.n_heads ({self.n_heads})"
            )
        if self.head_dim % 2:
            raise OlmoError(
                f"model: head dim {self.head_dim} must be even for RoPE; change model.n_heads"
            )

    def num_params(self, include_embedding: bool = True) -> int:
        """Closed-form parameter count (checked against the built model in tests)."""
        d, h = self.d_model, self.hidden_size
        per_block = 4 * d * d + 3 * d * h
        emb = self.padded_vocab_size * d
        if self.block == "olmo2":  # RMSNorm weights: q, k, post-attention, post-MLP; final
            per_block += 4 * d
        total = self.n_layers * per_block + (d if self.block == "olmo2" else 0)
        if include_embedding:
            total += emb if self.weight_tying else 2 * emb
        return total


# Checked before anything divides by them (n_heads, vocab_multiple) or builds tensors of them.
_POSITIVE = (
    "d_model",
    "n_layers",
    "n_heads",
    "vocab_size",
    "vocab_multiple",
    "max_seq_len",
    "loss_chunk_tokens",
    "rope_theta",
    "layer_norm_eps",
    "init_std",
)

PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(d_model=128, n_layers=4, n_heads=4, max_seq_len=512, weight_tying=True),
    "olmo-1b": ModelConfig(
        d_model=2048, n_layers=16, n_heads=16, mlp_hidden_size=8192, weight_tying=True
    ),
    "olmo-7b": ModelConfig(
        d_model=4096, n_layers=32, n_heads=32, mlp_hidden_size=11008, weight_tying=False
    ),
    # OLMo-2-0425-1B (its dolma2 tokenizer: 100,278 entries → 100,352 rows).
    "olmo2-1b": ModelConfig(
        d_model=2048,
        n_layers=16,
        n_heads=16,
        mlp_hidden_size=8192,
        vocab_size=100278,
        max_seq_len=4096,
        rope_theta=500000.0,
        weight_tying=False,
        layer_norm_eps=1e-6,
        block="olmo2",
    ),
}
