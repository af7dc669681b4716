"""Fast checks of the pieces: secret scrubbing, wandb mode/id/rows, FLOPs and peak table."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from olmo.errors import OlmoError
from olmo.model.config import PRESETS
from olmo.observe.config import WandbConfig
from olmo.observe.mfu import flops_per_token, mfu, peak_flops
from olmo.observe.scrub import REDACTED, is_secret_key, scrub, secret_values
from olmo.observe.wandb_logger import (
    ID_FILE,
    WandbLogger,
    flatten_numbers,
    resolve_mode,
    run_id,
    wandb_row,
)


def test_secret_keys_are_word_wise():
    for k in ("WANDB_API_KEY", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "db.password", "apiKey", "key"):
        assert is_secret_key(k), k
    for k in ("tokens_seen", "tokenizer", "global_batch_tokens", "keep_last", "monkey", "step"):
        assert not is_secret_key(k), k


def test_scrub_redacts_keys_and_known_values():
    secret = "s3cr3t-v4lue-0123456789"
    obj = {
        "WANDB_API_KEY": secret,
        "tokens_seen": 5,
        "data": {"tokenizer": "olmo", "paths": [f"/x/{secret}/y", "bundled"]},
        "db": {"password": "hunter2!", "user": "me"},
        "unset_token": None,
    }
    out = scrub(obj, secrets=[secret])
    assert out == {
        "WANDB_API_KEY": REDACTED,
        "tokens_seen": 5,
        "data": {"tokenizer": "olmo", "paths": [f"/x/{REDACTED}/y", "bundled"]},
        "db": {"password": REDACTED, "user": "me"},
        "unset_token": None,
    }
    assert obj["WANDB_API_KEY"] == secret  # a copy, not in place


def test_secret_values_from_environment():
    env = {"WANDB_API_KEY": "a" * 40, "HF_TOKEN": "short", "HOME": "/root/home-dir"}
    assert secret_values(env) == ["a" * 40]  # short values would redact innocent text


@pytest.mark.parametrize(
    ("mode", "env", "expected"),
    [
        ("auto", {}, "offline"),
        ("auto", {"WANDB_API_KEY": "k" * 40}, "online"),
        ("auto", {"WANDB_API_KEY": "k" * 40, "WANDB_MODE": "offline"}, "offline"),
        ("auto", {"WANDB_MODE": "disabled"}, "disabled"),
        ("auto", {"WANDB_MODE": "dryrun"}, "offline"),
        ("offline", {"WANDB_API_KEY": "k" * 40}, "offline"),
        ("disabled", {"WANDB_API_KEY": "k" * 40}, "disabled"),
    ],
)
def test_resolve_mode(mode, env, expected):
    assert resolve_mode(mode, env) == expected


def test_run_id_is_created_once_and_reused(tmp_path):
    first = run_id(tmp_path)
    assert first.isalnum() and len(first) == 8
    assert run_id(tmp_path) == first
    assert (tmp_path / ID_FILE).read_text().strip() == first
    (tmp_path / ID_FILE).write_text("not an id\n")
    with pytest.raises(OlmoError, match=ID_FILE):
        run_id(tmp_path)


def test_wandb_row_names():
    rec = {"step": 7, "loss": 2.5, "lr": 1e-3, "time": 1.0, "batch_hash": "ab", "attempt": 2,
           "eval_loss": 3.0, "downstream/copa": 0.6, "energy_j": 12.0, "power_w": 300.0}  # fmt: skip
    assert wandb_row(rec) == {
        "train/step": 7, "train/loss": 2.5, "train/lr": 1e-3, "train/attempt": 2,
        "eval/loss": 3.0, "downstream/copa": 0.6, "energy/energy_j": 12.0, "energy/power_w": 300.0,
    }  # fmt: skip
    assert flatten_numbers({"total_j": 5, "gpus": {"0": 2.5}, "note": "x"}, "energy") == {
        "energy/total_j": 5,
        "energy/gpus/0": 2.5,
    }


def test_flops_per_token_olmo_7b():
    # By hand: non-embedding 6,476,005,376 + untied head 50,304·4,096 = 6,682,050,560 = N;
    # 6·N = 40,092,303,360; 12·L·d·T = 12·32·4096·2048 = 3,221,225,472.
    assert flops_per_token(PRESETS["olmo-7b"], 2048) == 43_313_528_832


def test_peak_table_and_mfu():
    def env(kind, name):
        return {"devices": [{"type": kind, "name": name}]}

    assert peak_flops(env("cuda", "NVIDIA H100 80GB HBM3"))[0] == 989e12
    assert peak_flops(env("cuda", "NVIDIA A100-SXM4-40GB"))[0] == 312e12
    assert peak_flops(env("cuda", "AMD Instinct MI250X"))[0] == 191.5e12
    assert peak_flops(env("cuda", "AMD Instinct MI300X"))[0] == 1307e12
    assert peak_flops(env("cpu", "x86_64"))[0] is None
    assert peak_flops(env("cuda", "Tesla T4"))[0] is None
    # 8 H100s at 1e5 tokens/s each on a model of 1e9 FLOPs/token: 1e14/989e12 ≈ 10.1%.
    assert mfu(8e5, 1e9, 8, 989e12) == pytest.approx(0.10111, rel=1e-4)
    assert mfu(8e5, 1e9, 8, None) is None


def _trainer(is_main: bool):
    # The logger reads only trainer.env.is_main at start; the real loop is exercised end to end.
    return SimpleNamespace(env=SimpleNamespace(is_main=is_main))


@pytest.mark.parametrize(("mode", "is_main"), [("disabled", True), ("offline", False)])
def test_disabled_or_not_rank0_writes_nothing(tmp_path, monkeypatch, mode, is_main):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    logger = WandbLogger(WandbConfig(mode=mode), tmp_path, {"model": {}}, attempt=1)
    logger.on_train_start(_trainer(is_main))
    logger.on_metrics(_trainer(is_main), [{"step": 1, "loss": 1.0}])
    logger.on_train_end(_trainer(is_main), "completed")
    assert logger.run is None and list(tmp_path.iterdir()) == []
