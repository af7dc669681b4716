"""ModelConfig: presets keep every explicitly given key; bad sizes are one error naming the key."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from olmo.config.loader import save_yaml
from olmo.config.schema import config_to_dict, load_config
from olmo.errors import OlmoError
from olmo.model import PRESETS, ModelConfig


def _model(tmp_path: Path, model: dict, overrides: tuple[str, ...] = ()) -> ModelConfig:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": model, "data": {"seq_len": 64}}))
    return load_config(path, list(overrides)).model


@pytest.mark.parametrize(
    ("preset", "key", "value"),
    [
        # each value equals the dataclass default and differs from the preset's
        ("olmo-7b", "weight_tying", True),
        ("tiny", "max_seq_len", 2048),
        ("olmo2-1b", "vocab_size", 50280),
        ("olmo2-1b", "rope_theta", 10000.0),
        ("olmo2-1b", "block", "olmo"),
        ("olmo-1b", "mlp_hidden_size", None),
    ],
)
def test_preset_keeps_explicit_default_valued_key(tmp_path, preset, key, value):
    assert getattr(PRESETS[preset], key) != value == getattr(ModelConfig(), key)
    from_yaml = _model(tmp_path, {"preset": preset, key: value})
    from_override = _model(tmp_path, {"preset": preset}, (f"--model.{key}={json.dumps(value)}",))
    for cfg in (from_yaml, from_override):
        assert getattr(cfg, key) == value
        # every other key is the preset's
        others = {f.name for f in dataclasses.fields(ModelConfig)} - {key}
        assert {k: getattr(cfg, k) for k in others} == {
            k: getattr(PRESETS[preset], k) for k in others if k != "preset"
        } | {"preset": preset}


def test_preset_alone_and_saved_config_round_trip(tmp_path):
    cfg = load_config(None, ["--model.preset=olmo-7b", "--model.n_layers=2"])
    assert cfg.model.n_layers == 2 and not cfg.model.weight_tying and cfg.model.d_model == 4096
    save_yaml(config_to_dict(cfg), tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml").model == cfg.model
    assert ModelConfig(preset="olmo-7b").resolved() == dataclasses.replace(
        PRESETS["olmo-7b"], preset="olmo-7b"
    )


def test_constructor_keys_are_the_given_ones():
    assert ModelConfig().given_keys == frozenset()
    assert ModelConfig(preset="tiny", max_seq_len=2048).given_keys == {"preset", "max_seq_len"}
    assert ModelConfig(preset="tiny", max_seq_len=2048).resolved().max_seq_len == 2048


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("n_heads", 0, "model.n_heads must be positive, got 0"),
        ("n_heads", -4, "model.n_heads must be positive, got -4"),
        ("vocab_multiple", 0, "model.vocab_multiple must be positive, got 0"),
        ("d_model", 0, "model.d_model must be positive"),
        ("d_model", -64, "model.d_model must be positive"),
        ("n_layers", 0, "model.n_layers must be positive"),
        ("vocab_size", 0, "model.vocab_size must be positive"),
        ("max_seq_len", -1, "model.max_seq_len must be positive"),
        ("loss_chunk_tokens", 0, "model.loss_chunk_tokens must be positive"),
        ("mlp_hidden_size", 0, "model.mlp_hidden_size must be positive"),
        ("mlp_hidden_size", -8, "model.mlp_hidden_size must be positive"),
        ("rope_theta", 0, "model.rope_theta must be positive"),
        ("rope_theta", -1e4, "model.rope_theta must be positive"),
        ("rope_theta", ".nan", "model.rope_theta. must be a finite number, got nan"),
        ("rope_theta", ".inf", "model.rope_theta. must be a finite number, got inf"),
        ("layer_norm_eps", 0, "model.layer_norm_eps must be positive"),
        ("init_std", -0.02, "model.init_std must be positive"),
        ("d_model", 66, r"model.d_model \(66\) must be divisible by model.n_heads \(4\)"),
        ("n_heads", 3, r"model.d_model \(128\) must be divisible by model.n_heads \(3\)"),
        ("d_model", 12, "head dim 3 must be even"),
    ],
)
def test_invalid_model_key_is_one_error_naming_it(tmp_path, key, value, message):
    for preset in (None, "tiny"):
        model = {"preset": preset} if preset else {}
        with pytest.raises(OlmoError, match=message):
            _model(tmp_path, model, (f"--model.{key}={value}",))
