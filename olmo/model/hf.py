"""Interchange with Hugging Face transformers' `OlmoForCausalLM` (config, weights, directories).

transformers is optional (`pip install 'olmo-hpc[hf]'`) and imported inside the functions.
Weight layout differences: our attention has one fused `qkv` ([q; k; v] rows) where HF has
`q_proj`/`k_proj`/`v_proj`; our SwiGLU has one fused `proj` whose first half is `up` and second
half is `gate` where HF has `up_proj`/`gate_proj`. Everything else maps one to one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from olmo.errors import OlmoError
from olmo.fsutil import atomic_dir
from olmo.model.build import build_model
from olmo.model.config import ModelConfig
from olmo.model.transformer import Transformer

EOS_TOKEN_ID = 50279
PAD_TOKEN_ID = 1
HF_LAYER_NORM_EPS = 1e-5  # OlmoLayerNorm hard-codes it
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
HF_CONFIG = "config.json"
TOKENIZER_SOURCE = (
    Path(__file__).resolve().parents[1]
    / "tokenizer"
    / "data"
    / "allenai_eleuther-ai-gpt-neox-20b-pii-special.json"
)


def _transformers():
    try:
        import transformers
    except ImportError:
        raise OlmoError(
            "Hugging Face conversion needs transformers: pip install 'olmo-hpc[hf]'"
        ) from None
    return transformers


def hf_shape_kwargs(cfg: ModelConfig) -> dict:
    """The config fields every transformers OLMo family (Olmo, Olmo2) spells the same way."""
    return dict(
        vocab_size=cfg.padded_vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.hidden_size,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        max_position_embeddings=cfg.max_seq_len,
        rope_theta=cfg.rope_theta,  # transformers 5 folds it into rope_parameters
        tie_word_embeddings=cfg.weight_tying,
        attention_bias=False,
    )


def to_hf_config(cfg: ModelConfig):
    """The `OlmoConfig` of the same architecture (vocab_size = our padded embedding rows)."""
    transformers = _transformers()
    cfg = cfg.resolved()
    cfg.validate()
    if cfg.block != "olmo":
        raise OlmoError(
            f"model.block={cfg.block}: HF export covers OlmoForCausalLM (block olmo) only"
        )
    if cfg.layer_norm_eps != HF_LAYER_NORM_EPS:
        raise OlmoError(
            f"model.layer_norm_eps={cfg.layer_norm_eps}: HF OlmoForCausalLM fixes it at 1e-5; "
            "such a model cannot be exported"
        )
    return transformers.OlmoConfig(
        **hf_shape_kwargs(cfg),
        hidden_act="silu",
        initializer_range=cfg.init_std,
        attention_dropout=0.0,
        clip_qkv=None,
        eos_token_id=EOS_TOKEN_ID,
        pad_token_id=PAD_TOKEN_ID,
        bos_token_id=None,
    )


def _rope_theta_of(hf_cfg: Any, source: str) -> float:
    """rope_theta from either transformers 5 (`rope_parameters`) or 4.x (`rope_theta`/`rope_scaling`)."""
    params = getattr(hf_cfg, "rope_parameters", None)
    if isinstance(params, dict):  # transformers >= 5 (rope_scaling, if present, aliases it)
        extra = set(params) - {"rope_type", "rope_theta"}
        scaling = params if params.get("rope_type", "default") != "default" or extra else None
        theta = params.get("rope_theta", 10000.0)
    else:
        scaling = getattr(hf_cfg, "rope_scaling", None)
        theta = getattr(hf_cfg, "rope_theta", 10000.0)
    if scaling:
        raise OlmoError(f"{source}: RoPE scaling {scaling!r} is not supported (plain RoPE only)")
    if not _is_number(theta) or not math.isfinite(theta) or theta <= 0:
        raise OlmoError(f"{source}: rope_theta must be a positive number, got {theta!r}")
    return float(theta)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


# Sizes from config.json that must be positive integers before anything divides by them.
HF_SIZES = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "vocab_size", "max_position_embeddings")  # fmt: skip


def _check_sizes(hf_cfg: Any, source: str) -> None:
    for key in HF_SIZES:
        value = getattr(hf_cfg, key, None)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise OlmoError(f"{source}: {key} must be a positive integer, got {value!r}")
    if hf_cfg.hidden_size % hf_cfg.num_attention_heads:
        raise OlmoError(
            f"{source}: hidden_size {hf_cfg.hidden_size} is not divisible by "
            f"num_attention_heads {hf_cfg.num_attention_heads}"
        )


def from_hf_config(hf_cfg: Any, source: str = "HF config") -> ModelConfig:
    """Our ModelConfig for an `OlmoConfig`; refuses options our model does not implement.
    `source` (the config.json path) starts every error message."""
    _check_sizes(hf_cfg, source)
    n_heads = hf_cfg.num_attention_heads
    refusals = {
        "attention_bias": bool(getattr(hf_cfg, "attention_bias", False)),
        "clip_qkv": getattr(hf_cfg, "clip_qkv", None) is not None,
        "attention_dropout": bool(getattr(hf_cfg, "attention_dropout", 0.0)),
        "num_key_value_heads": getattr(hf_cfg, "num_key_value_heads", None) not in (None, n_heads),
        "hidden_act": getattr(hf_cfg, "hidden_act", "silu") != "silu",
        "head_dim": getattr(hf_cfg, "head_dim", None) not in (None, hf_cfg.hidden_size // n_heads),
    }
    for key, bad in refusals.items():
        if bad:
            raise OlmoError(
                f"{source}: {key}={getattr(hf_cfg, key)!r} is not supported by the OLMo model "
                "(no biases, no QKV clipping, no dropout, full multi-head attention, SwiGLU)"
            )
    vocab = int(hf_cfg.vocab_size)
    cfg = ModelConfig(
        d_model=hf_cfg.hidden_size,
        n_layers=hf_cfg.num_hidden_layers,
        n_heads=n_heads,
        mlp_hidden_size=hf_cfg.intermediate_size,
        # The HF embedding already has its padded size; keep it (a multiple of 128 as a rule,
        # otherwise no padding so the weights still fit).
        vocab_size=vocab,
        vocab_multiple=128 if vocab % 128 == 0 else 1,
        max_seq_len=hf_cfg.max_position_embeddings,
        rope_theta=_rope_theta_of(hf_cfg, source),
        weight_tying=bool(hf_cfg.tie_word_embeddings),
        layer_norm_eps=HF_LAYER_NORM_EPS,
        init_std=float(getattr(hf_cfg, "initializer_range", 0.02)),
    )
    cfg.validate()
    return cfg


def _hf_layer_keys(i: int) -> dict[str, str]:
    p = f"model.layers.{i}."
    return {
        name: p + name
        for name in (
            "self_attn.q_proj.weight",
            "self_attn.k_proj.weight",
            "self_attn.v_proj.weight",
            "self_attn.o_proj.weight",
            "mlp.up_proj.weight",
            "mlp.gate_proj.weight",
            "mlp.down_proj.weight",
        )
    }


def state_dict_to_hf(model: Transformer) -> dict[str, torch.Tensor]:
    """Our weights under HF names (split qkv and SwiGLU). `lm_head.weight` only when untied."""
    cfg = model.cfg
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {"model.embed_tokens.weight": sd["embeddings.weight"]}
    for i in range(cfg.n_layers):
        k = _hf_layer_keys(i)
        q, kk, v = sd[f"layers.{i}.attention.qkv.weight"].chunk(3, dim=0)
        up, gate = sd[f"layers.{i}.feed_forward.proj.weight"].chunk(2, dim=0)
        out[k["self_attn.q_proj.weight"]] = q
        out[k["self_attn.k_proj.weight"]] = kk
        out[k["self_attn.v_proj.weight"]] = v
        out[k["self_attn.o_proj.weight"]] = sd[f"layers.{i}.attention.out.weight"]
        out[k["mlp.up_proj.weight"]] = up
        out[k["mlp.gate_proj.weight"]] = gate
        out[k["mlp.down_proj.weight"]] = sd[f"layers.{i}.feed_forward.out.weight"]
    if not cfg.weight_tying:
        out["lm_head.weight"] = sd["lm_head.weight"]
    return {name: t.detach().contiguous() for name, t in out.items()}


def state_dict_from_hf(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """HF `OlmoForCausalLM` weights → our state dict (fuse qkv and [up; gate]).

    With tied embeddings a `lm_head.weight` in `sd` must equal the embedding and is dropped.
    Missing, unexpected or mis-shaped tensors are an OlmoError naming the tensor.
    """
    sd = dict(sd)
    d, h, v = cfg.d_model, cfg.hidden_size, cfg.padded_vocab_size

    def take(name: str, shape: tuple[int, int]) -> torch.Tensor:
        if name not in sd:
            raise OlmoError(f"HF weights: tensor '{name}' is missing")
        t = sd.pop(name)
        if tuple(t.shape) != shape:
            raise OlmoError(
                f"HF weights: '{name}' has shape {tuple(t.shape)}, the config implies {shape}"
            )
        return t

    out: dict[str, torch.Tensor] = {"embeddings.weight": take("model.embed_tokens.weight", (v, d))}
    for i in range(cfg.n_layers):
        k = _hf_layer_keys(i)
        qkv = [take(k[f"self_attn.{x}_proj.weight"], (d, d)) for x in "qkv"]
        out[f"layers.{i}.attention.qkv.weight"] = torch.cat(qkv, dim=0)
        out[f"layers.{i}.attention.out.weight"] = take(k["self_attn.o_proj.weight"], (d, d))
        up = take(k["mlp.up_proj.weight"], (h, d))
        gate = take(k["mlp.gate_proj.weight"], (h, d))
        out[f"layers.{i}.feed_forward.proj.weight"] = torch.cat([up, gate], dim=0)
        out[f"layers.{i}.feed_forward.out.weight"] = take(k["mlp.down_proj.weight"], (d, h))
    if cfg.weight_tying:
        head = sd.pop("lm_head.weight", None)
        if head is not None and not torch.equal(head, out["embeddings.weight"]):
            raise OlmoError(
                "HF weights: tie_word_embeddings is true but lm_head.weight differs from the embedding"
            )
    else:
        out["lm_head.weight"] = take("lm_head.weight", (v, d))
    if sd:
        names = sorted(sd)
        raise OlmoError(
            f"HF weights: {len(names)} unexpected tensor(s), e.g. '{names[0]}'; not an OlmoForCausalLM"
        )
    return out


def save_hf(model: Transformer, out_dir: str | os.PathLike) -> Path:
    """Write an HF model directory atomically: model.safetensors, config.json,
    generation_config.json and (when bundled) tokenizer.json + tokenizer_config.json.
    """
    transformers = _transformers()
    from safetensors.torch import save_file

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OlmoError(f"{out}: already exists and is not empty; choose another output directory")
    hf_cfg = to_hf_config(model.cfg)
    dtype = next(model.parameters()).dtype
    hf_cfg.dtype = dtype  # older transformers read torch_dtype; both are set by this setter
    tensors = {k: t.cpu() for k, t in state_dict_to_hf(model).items()}
    with atomic_dir(out) as tmp:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt"})
        hf_cfg.save_pretrained(tmp)
        gen = transformers.GenerationConfig(
            eos_token_id=EOS_TOKEN_ID, pad_token_id=PAD_TOKEN_ID, bos_token_id=None
        )
        gen.save_pretrained(tmp)
        if TOKENIZER_SOURCE.is_file():
            shutil.copyfile(TOKENIZER_SOURCE, tmp / "tokenizer.json")
            tok_cfg = {
                "tokenizer_class": "GPTNeoXTokenizerFast",
                "eos_token": "<|endoftext|>",
                "pad_token": "<|padding|>",
                "model_max_length": model.cfg.max_seq_len,
            }
            (tmp / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n")
    return out


def _index_files(index: Path) -> list[str]:
    """The weight files a safetensors index maps tensors to."""
    try:
        data = json.loads(index.read_text())
    except (ValueError, RecursionError):
        data = None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(f, str) for f in weight_map.values()):
        raise OlmoError(
            f"{index}: not a valid safetensors index (needs a 'weight_map' of tensor → file)"
        )
    return sorted(set(weight_map.values()))


def _read_safetensors(hf_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    index = hf_dir / WEIGHTS_INDEX
    if (hf_dir / WEIGHTS).is_file():
        files = [hf_dir / WEIGHTS]
    elif index.is_file():
        files = [hf_dir / s for s in _index_files(index)]
    else:
        hint = (
            " (pytorch_model.bin is not read; re-save with safetensors)"
            if (hf_dir / "pytorch_model.bin").exists()
            else ""
        )
        raise OlmoError(f"{hf_dir / WEIGHTS}: not found{hint}")
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        if not f.is_file():
            raise OlmoError(f"{f}: weight shard not found")
        try:
            sd.update(load_file(str(f)))
        except Exception as e:  # safetensors raises its own error types for bad headers
            raise OlmoError(
                f"{f}: cannot read safetensors ({type(e).__name__}: {str(e)[:200]})"
            ) from None
    return sd


def load_hf(hf_dir: str | os.PathLike, device: str | torch.device = "cpu") -> Transformer:
    """Our Transformer (fp32) from a local HF OlmoForCausalLM directory; never touches the network."""
    transformers = _transformers()
    hf_dir = Path(hf_dir)
    if not hf_dir.is_dir():
        raise OlmoError(f"{hf_dir}: HF model directory not found")
    if not (hf_dir / HF_CONFIG).is_file():
        raise OlmoError(f"{hf_dir / HF_CONFIG}: not found; not a Hugging Face model directory")
    try:
        data = json.loads((hf_dir / HF_CONFIG).read_text())
    except (ValueError, RecursionError):  # bad JSON or UTF-8, deep nesting
        data = None
    if not isinstance(data, dict):
        raise OlmoError(f"{hf_dir / HF_CONFIG}: not a JSON object")
    model_type = data.get("model_type")
    if model_type != "olmo":
        raise OlmoError(
            f"{hf_dir / HF_CONFIG}: model_type '{model_type}' is not 'olmo' (OlmoForCausalLM)"
        )
    try:
        hf_cfg = transformers.OlmoConfig.from_pretrained(hf_dir, local_files_only=True)
    except Exception as e:  # bad JSON, strict-dataclass type errors, ...
        raise OlmoError(
            f"{hf_dir / HF_CONFIG}: cannot read ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from None
    cfg = from_hf_config(hf_cfg, str(hf_dir / HF_CONFIG))
    sd = state_dict_from_hf(_read_safetensors(hf_dir), cfg)
    model = build_model(cfg, device="meta")
    model.to_empty(device=device)
    model.load_state_dict(sd)  # copies (and casts to the fp32 parameters)
    model.rope.reset_tables()
    return model


# OLMo 2's extra norms: ours → Olmo2ForCausalLM names (the rest maps as for OLMo).
_OLMO2_NORMS = {
    "attention.q_norm": "self_attn.q_norm",
    "attention.k_norm": "self_attn.k_norm",
    "attention_norm": "post_attention_layernorm",
    "ff_norm": "post_feedforward_layernorm",
}


def olmo2_state_dict_to_hf(model: Transformer) -> dict[str, torch.Tensor]:
    """Our OLMo 2 weights under `Olmo2ForCausalLM` names."""
    sd = model.state_dict()
    out = state_dict_to_hf(model)
    for i in range(model.cfg.n_layers):
        for ours, theirs in _OLMO2_NORMS.items():
            out[f"model.layers.{i}.{theirs}.weight"] = sd[f"layers.{i}.{ours}.weight"]
    out["model.norm.weight"] = sd["final_norm.weight"]
    return {name: t.detach().contiguous() for name, t in out.items()}


def to_hf_olmo2_config(cfg: ModelConfig):
    """The transformers `Olmo2Config` of the same architecture."""
    return _transformers().Olmo2Config(**hf_shape_kwargs(cfg), rms_norm_eps=cfg.layer_norm_eps)
