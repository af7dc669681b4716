"""`olmo report` on a real requeued run, on a run still being written, and on bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from matplotlib.image import imread

from olmo.cli import main
from olmo.observe.plots import timeline_points
from olmo.observe.rundata import load_run
from tests.helpers import olmo, read_metrics

pytestmark = pytest.mark.slow
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100, path
    assert img.std() > 0, f"{path} is blank"


def _expected_plots(metrics: list[dict]) -> set[str]:
    plots = {"loss.png", "lr.png", "throughput.png", "timeline.png"}
    if any("energy_j" in m or "power_w" in m for m in metrics):  # measured on this machine
        plots.add("energy.png")
    return plots


@pytest.fixture(scope="module")
def report(requeued_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    proc = olmo("report", str(requeued_run), "--out", str(out))
    assert "summary.md" in proc.stdout
    return out


def test_plots_are_valid_pngs(requeued_run, report):
    metrics = read_metrics(requeued_run)
    summary = json.loads((report / "summary.json").read_text())
    expected = _expected_plots(metrics)
    assert set(summary["plots"]) == expected
    for name in expected:
        _check_png(report / name)


def test_summary_matches_metrics(requeued_run, report):
    metrics = read_metrics(requeued_run)
    attempts = [json.loads(x) for x in (requeued_run / "attempts.jsonl").read_text().splitlines()]
    s = json.loads((report / "summary.json").read_text())
    last, evals = metrics[-1], [m for m in metrics if "eval_loss" in m]
    assert s["steps"] == last["step"] == 20 and s["complete"]
    assert s["tokens"] == last["tokens_seen"] == 20 * 8 * 32
    assert s["attempts"] == len(attempts) == 3 and s["restarts"] == 2
    assert s["final_train_loss"] == last["loss"]
    assert (s["final_eval_loss"], s["final_eval_step"]) == (evals[-1]["eval_loss"], 20)
    assert s["wall_time_s"] == pytest.approx(last["time"] - attempts[0]["time"])
    tps = sorted(m["tokens_per_s"] for m in metrics)
    assert s["median_tokens_per_s"] == pytest.approx((tps[9] + tps[10]) / 2)
    assert s["mfu"] is None  # CPU: no bf16 peak
    assert 0 < s["goodput"] < 1 and s["logbook"]["restarts"] == {"killed": 1, "requeue_signal": 1}
    incidents = [(e["attempt"], e["detail"]["reason"]) for e in s["incidents"]]
    assert incidents == [(1, "requeue_signal"), (2, "killed")]  # the ends that were not completed
    assert (
        s["flops_per_token"]
        == 6 * (2 * (4 * 64 * 64 + 3 * 64 * 256) + 50304 * 64) + 12 * 2 * 64 * 32
    )
    md = (report / "summary.md").read_text()
    for text in ("| steps | 20 of 20 |", "| tokens | 5,120 |", "| restarts | 2 (3 attempts) |",
                 f"| final train loss | {last['loss']:.4f} (step 20) |",
                 f"| final eval loss | {evals[-1]['eval_loss']:.4f} (step 20) |", "| MFU | n/a (CPU) |",
                 f"| goodput | {100 * s['goodput']:.1f}% ", "## Incidents"):  # fmt: skip
        assert text in md, text
    # Attempts table: attempt 2's steps past the step-10 checkpoint were superseded by attempt 3.
    s1 = max(m["step"] for m in metrics if m["attempt"] == 1)
    rows = [
        line for line in md.splitlines() if line.startswith(("| 1 | 20", "| 2 | 20", "| 3 | 20"))
    ]
    assert [r.split(" | ")[-2:] for r in rows] == [
        ["1", f"{s1} |"],
        [str(s1 + 1), "10 |"],
        ["11", "20 |"],
    ]


def test_timeline_places_each_step_at_its_own_time(requeued_run):
    """One segment per attempt, each surviving step at its logged time since the first start."""
    metrics = read_metrics(requeued_run)
    first_start = json.loads((requeued_run / "attempts.jsonl").read_text().splitlines()[0])["time"]
    t0, points = timeline_points(load_run(requeued_run))
    assert t0 == first_start
    assert sorted(points) == sorted({m["attempt"] for m in metrics})
    for attempt, pts in points.items():
        mine = [m for m in metrics if m["attempt"] == attempt]
        assert pts == [(m["time"] - t0, m["step"], m["loss"]) for m in mine]
        assert [t for t, _, _ in pts] == sorted({t for t, _, _ in pts})  # distinct, increasing


def test_report_on_a_run_still_being_written(requeued_run, tmp_path):
    run = tmp_path / "live"
    run.mkdir()
    for name in ("config.yaml", "env.json", "attempts.jsonl"):
        shutil.copy(requeued_run / name, run / name)
    lines = (requeued_run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text(
        "\n".join(lines[:12]) + "\n" + lines[12][: len(lines[12]) // 2]
    )
    assert main(["report", str(run)]) == 0  # in-process: the CLI without a fresh interpreter
    s = json.loads((run / "report" / "summary.json").read_text())
    expected = json.loads(lines[11])
    assert s["steps"] == 12 and not s["complete"] and s["skipped_lines"] == 1
    assert s["final_train_loss"] == expected["loss"] and s["final_eval_step"] == 10
    for name in s["plots"]:
        _check_png(run / "report" / name)
    assert "in progress" in (run / "report" / "summary.md").read_text()


def test_bad_run_dir_is_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "metrics.jsonl: not found" in err
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "lo')
    assert main(["report", str(tmp_path)]) == 2
    assert "no complete step records yet" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


def test_power_and_energy_plotted_when_measured(requeued_run, tmp_path):
    """Per-step energy_j/power_w and energy.json totals as the energy monitor writes them on GPUs
    (this CPU machine measures none, so they are added to a copy of the real run)."""
    run = tmp_path / "measured"
    run.mkdir()
    for name in ("config.yaml", "env.json", "attempts.jsonl"):
        shutil.copy(requeued_run / name, run / name)
    metrics = read_metrics(requeued_run)
    for m in metrics:
        m.update(energy_j=100.0 + m["step"], power_w=350.0)
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    assert main(["report", str(run)]) == 0
    s = json.loads((run / "report" / "summary.json").read_text())
    assert "energy.png" in s["plots"] and s["energy_j"] == sum(100.0 + i for i in range(1, 21))
    _check_png(run / "report" / "energy.png")
    (run / "energy.json").write_text(json.dumps({"totals": {"energy_j": 7200.0, "co2e_kg": 0.001}}))
    assert main(["report", str(run)]) == 0
    s = json.loads((run / "report" / "summary.json").read_text())
    assert (s["energy_j"], s["energy_source"]) == (7200.0, "energy.json")
    assert (
        "| energy | 7,200.0 J = 0.0020 kWh (energy.json), 0.001 kg CO2e |"
        in (run / "report" / "summary.md").read_text()
    )


def test_mfu_from_the_device_table(requeued_run, tmp_path):
    """On an H100 (env.json as written there) the summary's MFU is tokens/s · FLOPs/token / peak."""
    run = tmp_path / "h100"
    run.mkdir()
    for name in ("config.yaml", "attempts.jsonl", "metrics.jsonl"):
        shutil.copy(requeued_run / name, run / name)
    env = json.loads((requeued_run / "env.json").read_text())
    env["devices"] = [{"type": "cuda", "index": 0, "name": "NVIDIA H100 80GB HBM3"}]
    (run / "env.json").write_text(json.dumps(env))
    assert main(["report", str(run)]) == 0
    s = json.loads((run / "report" / "summary.json").read_text())
    assert s["peak_flops_per_device"] == 989e12
    assert s["mfu"] == pytest.approx(s["median_tokens_per_s"] * s["flops_per_token"] / 989e12)
    assert (
        f"| MFU | {100 * s['mfu']:.1f}% of 989 TFLOP/s bf16 per device |"
        in (run / "report" / "summary.md").read_text()
    )
    _check_png(run / "report" / "throughput.png")
