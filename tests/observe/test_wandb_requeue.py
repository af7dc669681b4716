"""wandb across requeues: one run id, continuous steps, eval/config/env logged, no secrets on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import read_metrics
from tests.observe.conftest import HF_SECRET, SECRET
from tests.observe.wandb_reader import history_rows, read_records

pytestmark = pytest.mark.slow


def _attempt_files(run: Path) -> list[Path]:
    """The .wandb file of each attempt, oldest first (the directory names start with a time)."""
    dirs = sorted(d for d in (run / "wandb").glob("offline-run-*") if not d.is_symlink())
    return [next(d.glob("run-*.wandb")) for d in dirs]


def _of_type(records, kind: str):
    return [r for r in records if r.WhichOneof("record_type") == kind]


def test_one_run_id_across_attempts(requeued_run):
    run_id = (requeued_run / "wandb_id.txt").read_text().strip()
    files = _attempt_files(requeued_run)
    assert len(files) == 3  # one per attempt
    for i, f in enumerate(files):
        ids = [r.run.run_id for r in _of_type(read_records(f), "run")]
        # The SIGKILLed attempt (the 2nd) may die before wandb's writer flushed anything.
        assert ids == [run_id] or (i == 1 and ids == []), f


def test_steps_are_continuous_and_match_metrics(requeued_run):
    rows = [[r for r in history_rows(read_records(f)) if "train/loss" in r]  # not logbook rows
            for f in _attempt_files(requeued_run)]  # fmt: skip
    steps = [[r["train/step"] for r in rs] for rs in rows]
    s1 = steps[0][-1]  # where SIGUSR1 stopped attempt 1 (checkpointed there)
    assert steps[0] == list(range(1, s1 + 1))
    # SIGKILLed after step 15's metrics line: wandb logs asynchronously, so the killed attempt's
    # rows may be lost with the process (seen: some or all of them); what it kept is contiguous.
    killed = steps[1]
    assert killed == list(range(s1 + 1, s1 + 1 + len(killed))) and (not killed or killed[-1] <= 15)
    lost = set(range(s1 + 1, 11)) - set(killed)  # before the checkpoint: never re-logged
    assert steps[2] == list(range(11, 21))  # resumed from the step-10 checkpoint
    for attempt, rs in enumerate(rows, start=1):
        assert {r["train/attempt"] for r in rs} <= {attempt} and (rs or attempt == 2)
    # Later attempts supersede re-logged steps; the result is metrics.jsonl, step for step.
    final: dict[int, dict] = {}
    for rs in rows:
        for r in rs:
            final[r["train/step"]] = r
    metrics = read_metrics(requeued_run)
    assert [m["step"] for m in metrics] == list(range(1, 21))
    assert sorted(final) == sorted(set(range(1, 21)) - lost)
    for m in metrics:
        if m["step"] in lost:
            continue
        assert final[m["step"]]["train/loss"] == m["loss"]
        assert final[m["step"]]["train/lr"] == m["lr"]
        if "eval_loss" in m:
            assert final[m["step"]]["eval/loss"] == m["eval_loss"]
    assert [s for s, r in sorted(final.items()) if "eval/loss" in r] == [10, 20] or 10 in lost


def test_config_env_and_summary_logged(requeued_run):
    records = read_records(_attempt_files(requeued_run)[-1])
    (run,) = _of_type(records, "run")
    config = {u.key: json.loads(u.value_json) for u in run.run.config.update}
    assert config["model"]["d_model"] == 64
    assert config["train"]["max_steps"] == 20
    env = json.loads((requeued_run / "env.json").read_text())
    assert config["env"]["torch"] == env["torch"]
    summary = {}
    for rec in _of_type(records, "summary"):
        summary.update({u.key: json.loads(u.value_json) for u in rec.summary.update})
    assert summary["restarts"] == 2 and summary["attempt"] == 3
    assert summary["status"] == "completed" and summary["final_step"] == 20
    assert [r.exit.exit_code for r in _of_type(records, "exit")] == [0]


def test_no_secret_anywhere_in_the_run_dir(requeued_run):
    files = [p for p in requeued_run.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.suffix == ".wandb" for p in files) and len(files) > 20
    for p in files:
        data = p.read_bytes()
        assert SECRET.encode() not in data, p
        assert HF_SECRET.encode() not in data, p
