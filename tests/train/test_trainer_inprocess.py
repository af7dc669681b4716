"""The Trainer built and run in this process (world size 1): hook order, fault drills as a
callback, metrics superseded on resume by the writer that owns the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from olmo.config.schema import load_config
from olmo.train.callbacks import Callback, MetricsWriter
from olmo.train.fault import FaultInjection, parse_faults
from olmo.train.setup import build_components
from olmo.train.trainer import Trainer
from tests.helpers import SMALL_MODEL, read_metrics

STEPS = 4


class Recorder(Callback):
    """Every hook call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __getattribute__(self, name: str) -> Any:
        if name.startswith(("on_", "pre_", "post_")):
            return lambda trainer, *args: self.calls.append((name, *args))
        return super().__getattribute__(name)


def run(run_dir: Path, *callbacks: Callback, steps: int = STEPS) -> tuple[int, Trainer]:
    overrides = [*SMALL_MODEL, f"--train.max_steps={steps}", "--train.log_interval=2"]
    overrides += ["--checkpoint.interval=2", "--train.eval_holdout_instances=0"]
    cfg = load_config("configs/tiny.yaml", overrides)
    parts = build_components(cfg, run_dir)
    try:
        trainer = Trainer(cfg, parts, [*callbacks, MetricsWriter(run_dir / "metrics.jsonl")])
        return trainer.fit(), trainer
    finally:
        parts.close()


def test_hooks_run_in_the_documented_order(tmp_path: Path):
    rec = Recorder()
    code, _ = run(tmp_path / "run", rec)
    assert code == 0
    names = [c[0] for c in rec.calls]
    assert names[:2] == ["on_resume", "on_train_start"] and rec.calls[0] == ("on_resume", 0)
    step1 = names[2 : names.index("on_step_end") + 1]
    assert step1 == ["pre_step", "pre_optim_step", "post_step", "on_step_end"]
    step2 = [c for c in rec.calls if len(c) > 1 and c[1] == 2 and c[0] != "on_metrics"]
    assert [c[0] for c in step2] == [
        "pre_step",
        "pre_optim_step",
        "post_step",
        "on_shards_written",
        "on_checkpoint",
        "on_step_end",
    ]
    assert names[-1] == "on_train_end" and rec.calls[-1][1] == "completed"
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == list(range(1, STEPS + 1))


def test_nan_drill_is_a_callback_and_the_step_is_skipped(tmp_path: Path):
    drill = FaultInjection(parse_faults("nan@step=3"), 0, tmp_path / "run")
    code, trainer = run(tmp_path / "run", drill)
    assert code == 0 and trainer.state.skipped_steps == [3]
    losses = {r["step"]: r["loss"] for r in read_metrics(tmp_path / "run")}
    assert losses[3] != losses[3] and all(losses[s] == losses[s] for s in (1, 2, 4))  # NaN


def test_resume_supersedes_what_a_killed_attempt_logged(tmp_path: Path):
    run_dir = tmp_path / "run"
    assert run(run_dir)[0] == 0
    _drop(
        run_dir / "checkpoints", 4
    )  # as if killed after logging steps 3-4, before step 4's commit
    rec = Recorder()
    code, trainer = run(run_dir, rec, steps=STEPS)
    assert code == 0 and rec.calls[0] == ("on_resume", 2)
    assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, STEPS + 1))
    assert {r["attempt"] for r in read_metrics(run_dir) if r["step"] > 2} == {2}


def _drop(ckpt: Path, step: int) -> None:
    import shutil

    shutil.rmtree(ckpt / f"step{step}")
    (ckpt / "latest").unlink(missing_ok=True)
    (ckpt / "latest").symlink_to("step2")


@pytest.fixture(autouse=True)
def _no_fault_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLMO_FAULT_INJECT", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
