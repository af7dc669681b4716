"""HF interchange: our Transformer and transformers' OlmoForCausalLM give the same logits."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import pytest
import torch

pytest.importorskip("transformers")
from transformers import OlmoConfig, OlmoForCausalLM  # noqa: E402

from olmo.checkpoint.io import load_model, parameter_digest, save_model  # noqa: E402
from olmo.errors import OlmoError  # noqa: E402
from olmo.model import ModelConfig, build_model  # noqa: E402
from olmo.model.convert_cli import add_cli  # noqa: E402
from olmo.model.hf import (  # noqa: E402
    TOKENIZER_SOURCE,
    from_hf_config,
    load_hf,
    save_hf,
    state_dict_from_hf,
    state_dict_to_hf,
    to_hf_config,
)

ATOL = 1e-5
BASE = ModelConfig(d_model=64, n_layers=2, n_heads=4, vocab_size=50280, max_seq_len=64)


@pytest.fixture(params=[True, False], ids=["tied", "untied"])
def cfg(request) -> ModelConfig:
    return dataclasses.replace(BASE, weight_tying=request.param)


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randint(0, 50280, (2, 33), generator=torch.Generator().manual_seed(0))


def _logits_diff(ours, hf, tokens) -> float:
    with torch.no_grad():
        return (ours.eval()(tokens) - hf.eval()(tokens).logits).abs().max().item()


def _hf_from_ours(model) -> OlmoForCausalLM:
    hf = OlmoForCausalLM(to_hf_config(model.cfg))
    missing, unexpected = hf.load_state_dict(state_dict_to_hf(model), strict=False)
    assert unexpected == []
    assert missing == (["lm_head.weight"] if model.cfg.weight_tying else [])
    return hf


def test_to_hf_config_fields():
    cfg = dataclasses.replace(BASE, rope_theta=5e5, max_seq_len=128)
    hf = to_hf_config(cfg)
    assert hf.vocab_size == 50304
    assert (hf.hidden_size, hf.intermediate_size, hf.num_hidden_layers) == (64, 256, 2)
    assert (hf.num_attention_heads, hf.num_key_value_heads) == (4, 4)
    assert hf.max_position_embeddings == 128
    assert (hf.eos_token_id, hf.pad_token_id, hf.bos_token_id) == (50279, 1, None)
    assert hf.tie_word_embeddings is True and hf.attention_bias is False and hf.clip_qkv is None
    back = from_hf_config(hf)
    assert back.rope_theta == 5e5 and back.padded_vocab_size == 50304 and back.vocab_size % 128 == 0
    for key in ("d_model", "n_layers", "n_heads", "hidden_size", "max_seq_len", "weight_tying"):
        assert getattr(back, key) == getattr(cfg, key)


def test_ours_to_hf_same_logits(cfg, tokens):
    model = build_model(cfg, seed=1)
    hf = _hf_from_ours(model)
    if cfg.weight_tying:
        assert hf.lm_head.weight.data_ptr() == hf.model.embed_tokens.weight.data_ptr()
    assert _logits_diff(model, hf, tokens) < ATOL


def test_swapped_gate_and_up_is_detected(tokens):
    """The comparison is sensitive: mapping the SwiGLU halves the wrong way round fails it."""
    model = build_model(BASE, seed=1)
    sd = state_dict_to_hf(model)
    for i in range(BASE.n_layers):
        p = f"model.layers.{i}.mlp."
        sd[p + "up_proj.weight"], sd[p + "gate_proj.weight"] = (
            sd[p + "gate_proj.weight"],
            sd[p + "up_proj.weight"],
        )
    hf = OlmoForCausalLM(to_hf_config(BASE))
    hf.load_state_dict(sd, strict=False)
    assert _logits_diff(model, hf, tokens) > 1e-3


def test_hf_to_ours_same_logits(cfg, tokens):
    torch.manual_seed(3)
    hf = OlmoForCausalLM(to_hf_config(cfg))  # HF's own random init
    ours_cfg = from_hf_config(hf.config)
    model = build_model(ours_cfg, device="meta")
    model.to_empty(device="cpu")
    model.load_state_dict(state_dict_from_hf(hf.state_dict(), ours_cfg))
    model.rope.reset_tables()
    assert _logits_diff(model, hf, tokens) < ATOL


def test_save_hf_from_pretrained_and_back(cfg, tokens, tmp_path):
    model = build_model(cfg, seed=2)
    out = save_hf(model, tmp_path / "hf")
    files = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json"} <= files
    assert ("tokenizer.json" in files) is TOKENIZER_SOURCE.is_file()
    assert not list(tmp_path.glob(".*tmp*"))
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert ("lm_head.weight" in f.keys()) is (not cfg.weight_tying)  # noqa: SIM118
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is cfg.weight_tying

    hf = OlmoForCausalLM.from_pretrained(out, local_files_only=True)
    assert hf.dtype == torch.float32
    assert _logits_diff(model, hf, tokens) < ATOL
    back = load_hf(out)
    assert parameter_digest(back) == parameter_digest(model)
    assert _logits_diff(back, hf, tokens) < ATOL


def test_convert_cli_round_trip(cfg, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="olmo")
    add_cli(parser.add_subparsers(dest="command"))
    model = build_model(cfg, seed=4)
    save_model(model, tmp_path / "ckpt")

    args = parser.parse_args(["convert", "to-hf", str(tmp_path / "ckpt"), str(tmp_path / "hf")])
    assert args.func(args) == 0
    args = parser.parse_args(["convert", "from-hf", str(tmp_path / "hf"), str(tmp_path / "ckpt2")])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("converted" in line for line in lines)

    back = load_model(tmp_path / "ckpt2")
    assert parameter_digest(back) == parameter_digest(model)
    assert back.cfg.padded_vocab_size == cfg.padded_vocab_size
    assert back.cfg.weight_tying is cfg.weight_tying


def test_convert_cli_requires_a_subcommand():
    parser = argparse.ArgumentParser(prog="olmo")
    add_cli(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["convert"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attention_bias": True}, "attention_bias"),
        ({"clip_qkv": 8.0}, "clip_qkv"),
        ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "RoPE scaling"),
        ({"num_key_value_heads": 2}, "num_key_value_heads"),
        ({"hidden_act": "gelu"}, "hidden_act"),
    ],
)
def test_unsupported_hf_options(kwargs, message, tmp_path):
    base = dict(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, intermediate_size=256)
    with pytest.raises(OlmoError, match=message):
        from_hf_config(OlmoConfig(**base, **kwargs))
    # and through a directory: the config is refused before any weights are read
    OlmoConfig(**base, **kwargs).save_pretrained(tmp_path)
    with pytest.raises(OlmoError, match=message):
        load_hf(tmp_path)


def test_bad_directories(tmp_path):
    with pytest.raises(OlmoError, match="not found"):
        load_hf(tmp_path / "nope")
    with pytest.raises(OlmoError, match="config.json: not found"):
        load_hf(tmp_path)
    to_hf_config(BASE).save_pretrained(tmp_path)
    with pytest.raises(OlmoError, match="model.safetensors: not found"):
        load_hf(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(OlmoError, match="config.json"):
        load_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(OlmoError, match="model_type 'llama'"):
        load_hf(tmp_path)


def test_save_hf_refuses_non_empty_dir_and_bad_eps(tmp_path):
    model = build_model(BASE, seed=0)
    (tmp_path / "x").write_text("keep me")
    with pytest.raises(OlmoError, match="not empty"):
        save_hf(model, tmp_path)
    assert (tmp_path / "x").read_text() == "keep me"
    with pytest.raises(OlmoError, match="layer_norm_eps"):
        to_hf_config(dataclasses.replace(BASE, layer_norm_eps=1e-6))


def test_bad_state_dicts():
    model = build_model(BASE, seed=0)
    sd = state_dict_to_hf(model)
    missing = {k: v for k, v in sd.items() if "k_proj" not in k}
    with pytest.raises(OlmoError, match="k_proj.weight' is missing"):
        state_dict_from_hf(missing, BASE)
    with pytest.raises(OlmoError, match="unexpected tensor"):
        state_dict_from_hf({**sd, "model.layers.0.self_attn.q_proj.bias": torch.zeros(64)}, BASE)
    with pytest.raises(OlmoError, match="has shape"):
        state_dict_from_hf({**sd, "model.layers.1.mlp.up_proj.weight": torch.zeros(128, 64)}, BASE)
    with pytest.raises(OlmoError, match="differs from the embedding"):
        state_dict_from_hf({**sd, "lm_head.weight": torch.zeros(50304, 64)}, BASE)
    untied = dataclasses.replace(BASE, weight_tying=False)
    with pytest.raises(OlmoError, match="lm_head.weight' is missing"):
        state_dict_from_hf(sd, untied)


def test_missing_transformers_is_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(OlmoError, match=r"pip install 'olmo-hpc\[hf\]'"):
        to_hf_config(BASE)


def test_sharded_safetensors_as_published_checkpoints_load(tmp_path):
    """Published OLMo checkpoints are sharded (model-0000N-of-0000M.safetensors + an index);
    transformers itself writes that layout here, and load_hf reads it back exactly."""
    model = build_model(BASE, seed=4)
    hf = _hf_from_ours(model)
    hf.save_pretrained(tmp_path, max_shard_size="2MB", safe_serialization=True)
    shards = sorted(tmp_path.glob("model-*-of-*.safetensors"))
    assert len(shards) >= 2 and (tmp_path / "model.safetensors.index.json").is_file()
    back = load_hf(tmp_path)
    assert parameter_digest(back) == parameter_digest(model)


def test_bf16_forward_matches_hf_in_bf16(tokens):
    """Both sides in bf16 (weights and compute): the same logits up to bf16 rounding."""
    model = build_model(BASE, seed=5)
    hf = _hf_from_ours(model)
    ours, theirs = model.to(torch.bfloat16).eval(), hf.to(torch.bfloat16).eval()
    with torch.no_grad():
        a, b = ours(tokens).float(), theirs(tokens).logits.float()
    scale = b.abs().max().item()
    assert (a - b).abs().max().item() <= 2e-2 * scale, (a - b).abs().max().item() / scale


def test_positions_beyond_the_short_test_length_match_hf():
    """RoPE at positions up to 1000 (the other tests stop at 33): a table built too short or
    cached for the first length seen would break only here."""
    cfg = dataclasses.replace(BASE, max_seq_len=1024)
    model = build_model(cfg, seed=6)
    hf = _hf_from_ours(model)
    short = torch.randint(0, 50280, (1, 16), generator=torch.Generator().manual_seed(1))
    long = torch.randint(0, 50280, (1, 1000), generator=torch.Generator().manual_seed(2))
    assert _logits_diff(model, hf, short) <= ATOL  # a short call first: tables must then grow
    assert _logits_diff(model, hf, long) <= 5 * ATOL
