"""End-to-end runs of `olmo train` (real process group, real tokenizer and data, real DCP)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from olmo.checkpoint.io import load_model
from olmo.config.schema import load_config
from tests.helpers import SMALL, olmo, read_metrics


@pytest.fixture(scope="module")
def run30(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run") / "r"
    olmo("train", "configs/tiny.yaml", "--run-dir", str(run), "--train.max_steps=30", *SMALL)
    return run


def test_run_dir_contents_and_metrics(run30: Path):
    recs = read_metrics(run30)
    assert [r["step"] for r in recs] == list(range(1, 31))
    for key in (
        "step",
        "loss",
        "lr",
        "grad_norm",
        "tokens_seen",
        "tokens_per_s",
        "batch_hash",
        "time",
    ):
        assert key in recs[0], key
    assert recs[-1]["tokens_seen"] == 30 * 8 * 32
    assert recs[-1]["loss"] < 0.8 * recs[0]["loss"], (recs[0]["loss"], recs[-1]["loss"])
    assert "eval_loss" in recs[9] and "eval_loss" in recs[29] and "eval_loss" not in recs[10]
    # the resolved config reloads to the same values
    cfg = load_config(run30 / "config.yaml")
    assert cfg.model.d_model == 64 and cfg.train.max_steps == 30 and cfg.model.n_layers == 2
    assert (run30 / "checkpoints" / "latest").resolve().name == "step30"
    assert load_model(run30 / "checkpoints" / "step30").cfg.d_model == 64


def test_metrics_time_is_each_steps_own(run30: Path):
    """log_interval=5: the 5 records of one flush carry 5 distinct, increasing step times, and the
    report's timeline places every step at its own time."""
    from olmo.observe.plots import timeline_points
    from olmo.observe.rundata import load_run

    recs = read_metrics(run30)
    times = [r["time"] for r in recs]
    # A step of this model takes tens of ms: times taken at one flush would lie microseconds apart.
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) > 1e-3, gaps
    attempts = [json.loads(x) for x in (run30 / "attempts.jsonl").read_text().splitlines()]
    assert attempts[0]["time"] < times[0]
    t0, points = timeline_points(load_run(run30))
    assert t0 == attempts[0]["time"]
    assert points == {1: [(r["time"] - t0, r["step"], r["loss"]) for r in recs]}


def test_first_loss_is_uniform_prediction(run30: Path):
    import math

    first = read_metrics(run30)[0]["loss"]
    assert abs(first - math.log(50304)) < 0.3  # small init → near-uniform over the padded vocab


@pytest.mark.parametrize("step", [1, 7, 30])
def test_data_inspect_reproduces_logged_batch(run30: Path, step: int):
    logged = read_metrics(run30)[step - 1]["batch_hash"]
    out = json.loads(olmo("data", "inspect", str(run30), "--step", str(step), "--json").stdout)
    assert out["step"] == step and out["batch_hash"] == logged
    assert len(out["indices"]) == 8 and all(len(t) == 32 for t in out["tokens"])


def test_bad_override_is_one_line_error(tmp_path):
    proc = olmo(
        "train", "configs/tiny.yaml", "--run-dir", str(tmp_path / "r"), "--optim.lrr=1", check=False
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == "error: configs/tiny.yaml + overrides: unknown key 'optim.lrr'; did you mean 'optim.lr'?"
    )
    assert not (tmp_path / "r").exists()  # nothing written for a bad config


def test_help_config_lists_documented_keys():
    out = olmo("train", "--help-config").stdout
    assert "train.max_steps (int, default 1000): Optimizer steps to train for." in out
    assert "checkpoint.interval" in out


def test_heldout_eval_is_the_same_on_1_and_2_ranks(tmp_path: Path):
    """9 held-out instances: rank 0 scores 5, rank 1 scores 4 and runs one uncounted forward
    (FSDP needs equal forwards); the mean matches the 1-rank run's."""
    import subprocess
    import sys

    from tests.distributed.launch import _env, torchrun, train_args

    extra = ["--train.max_steps=5", "--train.eval_holdout_instances=9", "--train.eval_interval=5"]
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(
        [sys.executable, *train_args(one, *extra)], check=True, env=_env(None), timeout=300
    )
    proc = torchrun(2, train_args(two, *extra))
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (read_metrics(r)[4]["eval_loss"] for r in (one, two))
    assert abs(a - b) <= 1e-4 * abs(a), (a, b)
