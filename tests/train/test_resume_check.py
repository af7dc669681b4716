"""Config changes on resume (#20.3): refused unless allowed, recorded in the logbook; optimizer
switches AdamW → SGD → AdamW; an anneal from another run's checkpoint recorded as its parent
(#21). The Trainer runs in this process (world size 1)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from olmo.checkpoint.checkpointer import Checkpointer
from olmo.config.schema import load_config
from olmo.errors import OlmoError
from olmo.logbook import read_events
from olmo.train.callbacks import MetricsWriter
from olmo.train.resume_check import config_diff, plan_start, refused_keys
from olmo.train.setup import build_components
from olmo.train.trainer import Trainer
from tests.helpers import SMALL_MODEL, read_metrics

BASE = [*SMALL_MODEL, "--train.log_interval=2", "--checkpoint.interval=2"]
BASE += ["--train.eval_holdout_instances=0", "--scheduler.decay=linear"]


def run(run_dir: Path, *overrides: str, steps: int = 4) -> Trainer:
    cfg = load_config("configs/tiny.yaml", [*BASE, f"--train.max_steps={steps}", *overrides])
    parts = build_components(cfg, run_dir)
    try:
        trainer = Trainer(cfg, parts, [MetricsWriter(run_dir / "metrics.jsonl")])
        assert trainer.fit() == 0
        return trainer
    finally:
        parts.close()


def changes(run_dir: Path) -> list[dict]:
    return [e for e in read_events(run_dir) if e["event"] == "config_change"]


def test_change_refused_unless_allowed_then_recorded(tmp_path: Path):
    run_dir = tmp_path / "run"
    run(run_dir, steps=2)
    attempts = (run_dir / "attempts.jsonl").read_text()
    with pytest.raises(OlmoError, match=r"changes optim\.lr, train\.seed .*allow_change") as e:
        run(run_dir, "--optim.lr=5e-3", "--train.seed=1", steps=4)
    assert e.value.exit_code == 2
    assert (run_dir / "attempts.jsonl").read_text() == attempts  # no attempt recorded
    # Allowed: recorded with the diff; max_steps raised without asking; a key that does not
    # change the numbers (log interval, workers) neither refused nor recorded.
    run(run_dir, "--optim.lr=5e-3", "--train.allow_change=optim.lr", "--data.num_workers=1")
    (event,) = changes(run_dir)
    assert event["step"] == 2 and event["attempt"] == 2
    assert event["detail"]["kind"] == "resume"
    assert event["detail"]["diff"] == {"optim.lr": [0.01, 0.005], "train.max_steps": [2, 4]}
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2, 3, 4]
    run(run_dir, "--optim.lr=5e-3", "--train.max_steps=6", steps=6)  # only max_steps changed
    assert changes(run_dir)[-1]["detail"]["diff"] == {"train.max_steps": [4, 6]}
    with pytest.raises(OlmoError, match="changes train.max_steps"):  # lowering asks
        run(run_dir, "--optim.lr=5e-3", steps=4)


def test_keys_an_older_checkpoint_lacks_compare_at_defaults():
    saved = {"optim": {"lr": 0.01}, "train": {"max_steps": 4}}
    now = {"optim": {"lr": 0.01, "name": "adamw", "momentum": 0.9}, "train": {"max_steps": 4}}
    assert config_diff(saved, now) == {}
    now["optim"]["name"] = "sgd"
    assert config_diff(saved, now) == {"optim.name": ["adamw", "sgd"]}
    assert refused_keys({"optim.name": ["adamw", "sgd"]}, "optim") == []  # a section allows all
    assert refused_keys({"optim.name": ["adamw", "sgd"]}, "optim.lr") == ["optim.name"]


def test_adamw_to_sgd_and_back_trains_on(tmp_path: Path):
    run_dir = tmp_path / "run"
    run(run_dir, steps=2)
    sgd = ["--optim.name=sgd", "--optim.lr=0.05", "--train.allow_change=optim.name,optim.lr"]
    trainer = run(run_dir, *sgd, steps=4)
    assert isinstance(trainer.optim, torch.optim.SGD)
    # Fresh: only momentum buffers, of this optimizer's own steps.
    assert all(set(s) == {"momentum_buffer"} for s in trainer.optim.state.values())
    trainer = run(run_dir, "--train.allow_change=optim.name,optim.lr", steps=6)
    assert isinstance(trainer.optim, torch.optim.AdamW)
    steps = {float(s["step"]) for s in trainer.optim.state.values()}
    assert steps == {2.0}  # AdamW started fresh at step 4: its own 2 updates, not 2 + 2
    metrics = read_metrics(run_dir)
    assert [r["step"] for r in metrics] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(r["loss"]) for r in metrics)
    kinds = [
        (e["detail"]["diff"]["optim.name"], e["detail"]["optimizer_state"])
        for e in changes(run_dir)
    ]
    assert kinds == [(["adamw", "sgd"], "fresh"), (["sgd", "adamw"], "fresh")]


def test_anneal_from_a_checkpoint_is_a_new_run_with_a_parent(tmp_path: Path):
    parent = run(tmp_path / "pre", steps=2)
    last_lr = read_metrics(tmp_path / "pre")[-1]["lr"]
    assert last_lr == parent.state.lr and last_lr > 0
    child = tmp_path / "anneal"
    ckpt = tmp_path / "pre" / "checkpoints" / "step2"
    anneal = [f"--checkpoint.load={ckpt}", "--scheduler.decay=anneal"]
    run(child, *anneal, steps=4)
    metrics = read_metrics(child)
    assert [r["step"] for r in metrics] == [3, 4]  # the step count continues
    assert metrics[0]["lr"] == pytest.approx(last_lr) and metrics[-1]["lr"] == 0.0
    assert metrics[0]["data_position"] == 2 * 8  # same data: continues from the checkpoint
    record = json.loads((child / "attempts.jsonl").read_text().splitlines()[0])
    assert record["parent"]["path"] == str(ckpt) and record["parent"]["step"] == 2
    assert record["parent"]["config_diff"]["scheduler.decay"] == ["linear", "anneal"]
    (event,) = changes(child)
    assert event["detail"]["kind"] == "parent" and event["detail"]["optimizer_state"] == "loaded"
    # Other data (another order): they start at position 0 of their own order.
    other = tmp_path / "other"
    run(other, *anneal, "--train.seed=1", steps=3)
    assert [(r["step"], r["data_position"]) for r in read_metrics(other)] == [(3, 0)]
    assert changes(other)[0]["detail"]["data"] == "from position 0"


def test_bad_schedules_are_one_line_errors(tmp_path: Path):
    with pytest.raises(
        OlmoError, match=r"scheduler.decay=wsd needs scheduler.decay_steps in 1\.\.95"
    ):
        load_config("configs/tiny.yaml", [*BASE, "--train.max_steps=100", "--scheduler.decay=wsd"])
    with pytest.raises(OlmoError, match="train.allow_change: 'optim.lrr' is not a config key"):
        load_config("configs/tiny.yaml", [*BASE, "--train.allow_change=optim.lr,optim.lrr"])
    cfg = load_config("configs/tiny.yaml", [*BASE, "--scheduler.decay=anneal"])
    empty = Checkpointer(tmp_path / "checkpoints", cfg.checkpoint, 0, 1, {})
    with pytest.raises(OlmoError, match="anneal starts from a checkpoint: set checkpoint.load"):
        plan_start(cfg, empty)
