"""Config loading: YAML + overrides → typed dataclasses, with one-line errors naming the key."""

from __future__ import annotations

import pytest

from olmo.config.loader import describe, field_docs, parse_overrides
from olmo.config.schema import Config, load_config
from olmo.errors import OlmoError
from olmo.train.config import TrainerConfig


def write(tmp_path, text: str):
    p = tmp_path / "c.yaml"
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


def test_yaml_and_overrides_resolve(tmp_path):
    p = write(
        tmp_path,
        "model: {preset: olmo-1b}\ndata: {seq_len: 512}\ntrain: {global_batch_tokens: 4096}\n",
    )
    cfg = load_config(
        p, ["--optim.lr=1e-3", "--train.max_steps", "50", "--optim.betas=[0.9, 0.99]"]
    )
    assert cfg.optim.lr == 1e-3 and cfg.train.max_steps == 50
    assert cfg.optim.betas == [0.9, 0.99]
    assert cfg.model.d_model == 2048 and cfg.model.n_layers == 16  # preset applied
    assert cfg.train.global_batch_size == 8 and cfg.train.global_batch_tokens is None


def test_preset_keys_can_be_overridden(tmp_path):
    cfg = load_config(write(tmp_path, "model: {preset: tiny, n_layers: 2}\ndata: {seq_len: 64}\n"))
    assert cfg.model.n_layers == 2 and cfg.model.preset == "tiny"


def test_unknown_key_names_closest(tmp_path):
    with pytest.raises(OlmoError, match=r"unknown key 'optim.lrr'; did you mean 'optim.lr'"):
        load_config(write(tmp_path, "optim: {lrr: 1}\n"))
    with pytest.raises(OlmoError, match=r"unknown key 'trian'; did you mean 'train'"):
        load_config(None, ["--trian.max_steps=3"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("--train.max_steps=abc", r"'train.max_steps' expects int, got str 'abc'"),
        ("--optim.lr=[1]", r"'optim.lr' expects float"),
        ("--distributed.fsdp=3", r"'distributed.fsdp' expects bool"),
        ("--scheduler.decay=square", r"'scheduler.decay' must be one of"),
        ("--model.preset=olmo-3b", r"unknown preset 'olmo-3b'"),
        ("--model.n_heads=3", r"divisible by model.n_heads"),
        ("--train.global_batch_tokens=1000", r"multiple of data.seq_len"),
        ("--train.max_steps=0", r"train.max_steps must be positive"),
    ],
)
def test_bad_values_are_one_line_errors(override, message):
    with pytest.raises(OlmoError, match=message) as e:
        load_config(None, [override])
    assert "\n" not in str(e.value)


def test_bad_files(tmp_path):
    with pytest.raises(OlmoError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(OlmoError, match=r"c.yaml:\d+: invalid YAML"):
        load_config(write(tmp_path, "model:\n  d_model: [1\n"))
    with pytest.raises(OlmoError, match="not valid UTF-8"):
        load_config(write(tmp_path, b"model: {preset: \xff}\n"))
    with pytest.raises(OlmoError, match="expected a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_override_parsing():
    assert parse_overrides(["--a.b=1", "c.d=x y", "--e", "true"]) == {
        "a": {"b": 1},
        "c": {"d": "x y"},
        "e": True,
    }
    with pytest.raises(OlmoError, match="has no value"):
        parse_overrides(["--a.b"])


def test_every_field_is_documented():
    lines = describe(Config)
    undocumented = [line for line in lines if line.rstrip().endswith(":")]
    assert not undocumented, undocumented
    assert field_docs(TrainerConfig)["max_steps"] == "Optimizer steps to train for."
