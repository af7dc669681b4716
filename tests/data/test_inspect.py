"""`olmo data inspect`: recompute a step's batch from the config alone (steps are 1-based)."""

import argparse
import json

import numpy as np
import pytest
import yaml

from olmo.data.inspect import add_cli, inspect_step, loader_from_config_dict
from olmo.data.loader import batch_hash, global_order
from olmo.data.prepare import prepare_data
from olmo.errors import OlmoError

DOCS = [f"Document {i} talks about topic number {i * 7} at some length." for i in range(40)]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect")
    src = root / "docs.jsonl"
    src.write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    prepare_data([str(src)], str(root / "tokens"))
    return {
        "data": {"paths": [str(root / "tokens")], "seq_len": 16},
        "train": {"seed": 5, "global_batch_size": 4, "max_steps": 10},
        "model": {"d_model": 64},
    }


def test_step_n_is_loader_batch_n_minus_1(cfg):
    loader = loader_from_config_dict(cfg)
    n = len(loader.dataset)
    assert n > 20 and loader.global_batch_size == 4
    first = inspect_step(cfg, 1)
    assert first["indices"] == global_order(n, 5, 0)[:4].tolist()
    third = inspect_step(cfg, 3)
    assert third["step"] == 3 and third["indices"] == global_order(n, 5, 0)[8:12].tolist()
    assert third["batch_hash"] == batch_hash(np.array(third["indices"]))
    assert third["tokens"] == loader.dataset.get_batch(third["indices"]).tolist()
    eos_count = sum(row.count(50279) for row in third["tokens"])
    assert eos_count >= 1  # ~13 tokens per document: every 16-token instance nearly has one


def test_holdout_is_excluded_like_in_training(cfg):
    full = len(loader_from_config_dict(cfg).dataset)
    held = {**cfg, "train": {**cfg["train"], "eval_holdout_instances": 5}}
    loader = loader_from_config_dict(held)
    assert len(loader.dataset) == full - 5
    assert inspect_step(held, 2)["indices"] == global_order(full - 5, 5, 0)[4:8].tolist()


def test_cli_json_from_run_dir(cfg, tmp_path, capsys):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers())
    args = parser.parse_args(["data", "inspect", str(tmp_path), "--step", "2", "--json"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    got = json.loads(out)
    assert got["indices"] == inspect_step(cfg, 2)["indices"] and got["step"] == 2
    args = parser.parse_args(["data", "inspect", str(tmp_path / "config.yaml"), "--step", "2"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert got["batch_hash"] in text and "Document" in text and "topic number" in text


def test_config_errors(cfg, tmp_path):
    with pytest.raises(OlmoError, match=r"--step 0: steps are 1-based"):
        inspect_step(cfg, 0)
    with pytest.raises(OlmoError, match=r"train\.seed must be an integer"):
        loader_from_config_dict({"data": cfg["data"], "train": {"global_batch_size": 4}})
    with pytest.raises(OlmoError, match=r"unknown key 'data\.seqlen'"):
        loader_from_config_dict({"data": {"seqlen": 4}, "train": cfg["train"]})
    with pytest.raises(OlmoError, match=r"data\.seq_len=1: must be >= 2"):
        loader_from_config_dict({"data": {**cfg["data"], "seq_len": 1}, "train": cfg["train"]})
    with pytest.raises(OlmoError, match=r"config\.yaml: run directory has no config\.yaml"):
        add_cli_args = argparse.ArgumentParser()
        add_cli(add_cli_args.add_subparsers())
        args = add_cli_args.parse_args(["data", "inspect", str(tmp_path), "--step", "1"])
        args.func(args)


def test_run_dir_follows_the_logged_data_position(cfg, tmp_path):
    # A run that skipped data before step 3: its batch is read where metrics.jsonl says it lay.
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    n = len(loader_from_config_dict(cfg).dataset)
    lines = [
        json.dumps({"step": 2, "data_position": 4, "global_batch_size": 4}, sort_keys=True),
        json.dumps({"step": 3, "data_position": 8, "global_batch_size": 4}, sort_keys=True),
        '{"step": 3, "data_pos',  # torn line of a killed attempt
        json.dumps({"step": 3, "data_position": 13, "global_batch_size": 2}, sort_keys=True),
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    got = inspect_step(cfg, 3, run_dir=tmp_path)
    assert got["indices"] == global_order(n, 5, 0)[13:15].tolist()  # the last record wins
    assert (got["data_position"], got["global_batch_size"], got["epoch"]) == (13, 2, 0)
    assert inspect_step(cfg, 3)["data_position"] == 8  # a config alone: replayed, no skips
    unlogged = inspect_step(cfg, 5, run_dir=tmp_path)
    assert (
        unlogged["data_position"] == 16 and unlogged["indices"] == inspect_step(cfg, 5)["indices"]
    )
