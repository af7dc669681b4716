"""Run comparison: identical runs (one of them killed and resumed) pass; a different data order
(train.seed) and a loss divergence (optim.lr) are caught and named."""

import json
import os
import subprocess
import sys

import pytest

from olmo.errors import OlmoError
from olmo.parity.runs import compare_runs, read_steps
from tests.helpers import SMALL, olmo, read_metrics

STEPS = 20
TRAIN = [
    *SMALL,
    f"--train.max_steps={STEPS}",
    "--train.log_interval=1",
    "--train.eval_holdout_instances=0",
]


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_each_step_counts_once_the_last_record_wins(tmp_path):
    recs = [{"step": s, "loss": 5.0 - s / 10, "batch_hash": f"h{s}"} for s in range(1, 6)]
    stale = {"step": 4, "loss": 99.0, "batch_hash": "h4"}  # logged by a killed attempt
    lines = [json.dumps(r) for r in recs[:4]] + [json.dumps(stale)] + [json.dumps(recs[3])]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 5, "lo\n')
    steps = read_steps(tmp_path)
    assert list(steps) == [1, 2, 3, 4] and steps[4]["loss"] == recs[3]["loss"]


def test_windowed_difference_and_band():
    a = {s: {"loss": 1.0, "batch_hash": str(s)} for s in range(1, 11)}
    b = {s: {"loss": 1.0 + (0.3 if s == 5 else 0.0), "batch_hash": str(s)} for s in range(1, 11)}
    c = compare_runs(a, b, window=5, band=0.05)
    assert c.window_diffs == pytest.approx([0.06] * 5 + [0.0])  # one 0.3 spike over 5 steps
    assert not c.passed and max(c.deltas) == pytest.approx(0.3)
    assert compare_runs(a, b, window=10, band=0.05).passed  # 0.03 averaged over 10 steps
    with pytest.raises(OlmoError, match="no logged step"):
        compare_runs(a, {11: a[1]})


def _train(run, *extra, env=None):
    cmd = [sys.executable, "-m", "olmo", "train", "configs/tiny.yaml", "--run-dir", str(run)]
    return subprocess.run(
        [*cmd, *TRAIN, *extra],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    # The resumed run is killed right after step 13 (checkpoint at 10) and started again.
    killed = _train(root / "resumed", env={"OLMO_FAULT_INJECT": "kill@step=13"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    for name, extra in [
        ("resumed", []),
        ("base", []),
        ("seed", ["--train.seed=1"]),
        ("lr", ["--optim.lr=5e-2"]),
    ]:
        proc = _train(root / name, *extra)
        assert proc.returncode == 0, proc.stderr[-2000:]
    return root


@pytest.mark.slow
def test_identical_runs_pass_across_a_restart(runs, tmp_path):
    attempts = (runs / "resumed" / "attempts.jsonl").read_text().splitlines()
    assert len(attempts) == 2 and [r["step"] for r in read_metrics(runs / "resumed")] == list(
        range(1, STEPS + 1)
    )
    png = tmp_path / "overlay.png"
    proc = olmo("parity", "runs", str(runs / "base"), str(runs / "resumed"), "--png", str(png))
    assert "PASS" in proc.stdout and f"batch hashes: {STEPS}/{STEPS} identical" in proc.stdout
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_different_data_order_is_caught(runs):
    proc = olmo("parity", "runs", str(runs / "base"), str(runs / "seed"), "--json", check=False)
    verdict = json.loads(proc.stdout)
    assert proc.returncode == 1 and verdict["verdict"] == "FAIL"
    assert verdict["first_hash_mismatch_step"] == 1 and verdict["batch_hash_mismatches"] == STEPS


@pytest.mark.slow
def test_loss_divergence_is_caught(runs):
    proc = olmo("parity", "runs", str(runs / "base"), str(runs / "lr"), check=False)
    assert proc.returncode == 1, proc.stdout
    assert f"batch hashes: {STEPS}/{STEPS} identical" in proc.stdout
    assert "FAIL: loss curves diverge" in proc.stdout
    wide = olmo(
        "parity", "runs", str(runs / "base"), str(runs / "lr"), "--band", "100", check=False
    )
    assert wide.returncode == 0  # the same curves inside a (silly) wide band: the band decides
