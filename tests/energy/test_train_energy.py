"""Real `olmo train` runs: auto mode with this host's own sensors (its GPUs' where it has them,
else none: reasons in energy.json), and a RAPL tree driven by a fake kernel at a known power (the
counter wraps every 4 s), resumed once, reported, estimated. The RAPL runs force
energy.backend=rapl, so on GPU nodes too they measure the fake kernel and not NVML or AMD SMI."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import pytest

from tests.distributed.launch import torchrun, train_args
from tests.energy.fakes import RaplDriver, make_powercap
from tests.energy.host import expected_auto, trainer_device_type
from tests.helpers import SMALL, olmo, read_metrics

pytestmark = pytest.mark.slow
WATTS, WRAP_UJ = 50.0, 200_000_000  # 200 J: wraps every 4 s at 50 W
BASE = ["configs/tiny.yaml", *SMALL, "--wandb.mode=disabled", "--train.eval_interval=0"]
RAPL = [*BASE, "--energy.backend=rapl"]
NO_GPUS = {"CUDA_VISIBLE_DEVICES": "", "HIP_VISIBLE_DEVICES": "", "ROCR_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="module")
def rapl(tmp_path_factory):
    root = make_powercap(tmp_path_factory.mktemp("powercap"), {
        "intel-rapl:0": ("package-0", 0, WRAP_UJ), "intel-rapl:0:0": ("core", 0, WRAP_UJ)})  # fmt: skip
    driver = RaplDriver(root / "intel-rapl:0", WATTS, WRAP_UJ)
    driver.start()
    old = os.environ.get("OLMO_POWERCAP_ROOT")
    os.environ["OLMO_POWERCAP_ROOT"] = str(root)  # inherited by the `olmo` subprocesses
    yield root
    os.environ.pop("OLMO_POWERCAP_ROOT")
    if old is not None:
        os.environ["OLMO_POWERCAP_ROOT"] = old
    driver.halt.set()


@pytest.fixture(scope="module")
def measured_run(rapl, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("e") / "run"
    olmo("train", *RAPL, "--run-dir", str(run), "--train.max_steps=10", "--energy.pue=1.2",
         "--energy.carbon_intensity_g_per_kwh=600")  # fmt: skip
    first = json.loads((run / "energy.json").read_text())
    olmo("train", *RAPL, "--run-dir", str(run), "--train.max_steps=15", "--energy.pue=1.2",
         "--energy.carbon_intensity_g_per_kwh=600")  # fmt: skip
    (run / "first_energy.json").write_text(json.dumps(first))
    return run


def test_auto_run_measures_with_the_hosts_gpus_or_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("OLMO_POWERCAP_ROOT", str(tmp_path / "no-powercap"))  # RAPL out of play
    expected = expected_auto(trainer_device_type())  # what this host has: nvml, amdsmi or none
    run = tmp_path / "run"
    olmo("train", *BASE, "--run-dir", str(run), "--train.max_steps=3")
    data = json.loads((run / "energy.json").read_text())
    recs = read_metrics(run)
    assert len(recs) == 3 and data["segments"][0]["status"] == "completed"
    if expected == "unavailable":
        (reasons,) = data["unavailable"].values()
        assert "no-powercap" in reasons["rapl"] and {"nvml", "amdsmi"} <= set(reasons)
        assert set(data["backends"].values()) == {"unavailable"} and data["totals"]["kwh"] is None
        assert not any("energy_j" in r for r in recs)
        return
    assert data["measured"] and set(data["backends"].values()) == {expected}
    assert data["totals"]["energy_j"] > 0 and data["totals"]["mean_power_w"] > 0
    assert all(r["energy_j"] >= 0 for r in recs)


def test_measured_energy_matches_the_known_power(measured_run):
    data = json.loads((measured_run / "energy.json").read_text())
    assert data["backends"] and set(data["backends"].values()) == {"rapl"}
    seg1, seg2 = data["segments"]
    for seg in (seg1, seg2):
        (node,) = seg["nodes"].values()
        dev = node["devices"]["package-0@intel-rapl:0"]
        assert dev["source"] == "counter" and list(node["devices"]) == ["package-0@intel-rapl:0"]
        # the fake kernel's counter ran at 50 W the whole time (it wrapped several times)
        assert node["mean_power_w"] == pytest.approx(WATTS, rel=0.05)
        assert seg["energy_j"] == pytest.approx(WATTS * node["duration_s"], rel=0.05)
    assert (seg1["first_step"], seg1["last_step"], seg2["first_step"], seg2["last_step"]) == (
        1, 10, 11, 15)  # fmt: skip


def test_segments_accumulate_across_restarts(measured_run):
    first = json.loads((measured_run / "first_energy.json").read_text())
    data = json.loads((measured_run / "energy.json").read_text())
    assert len(first["segments"]) == 1 and len(data["segments"]) == 2
    assert data["segments"][0]["energy_j"] == pytest.approx(first["totals"]["energy_j"])
    t = data["totals"]
    assert t["energy_j"] == pytest.approx(sum(s["energy_j"] for s in data["segments"]))
    assert t["tokens"] == 15 * 8 * 32 and t["j_per_token"] == pytest.approx(t["energy_j"] / 3840)
    assert t["co2e_kg"] == pytest.approx(t["energy_j"] / 3.6e6 * 1.2 * 600 / 1000)


def test_per_step_energy_in_metrics(measured_run):
    recs = read_metrics(measured_run)
    assert [r["step"] for r in recs] == list(range(1, 16))
    assert all(r["energy_j"] >= 0 for r in recs)
    assert statistics.median(r["power_w"] for r in recs) == pytest.approx(WATTS, rel=0.25)
    data = json.loads((measured_run / "energy.json").read_text())
    per_step = sum(r["energy_j"] for r in recs)
    assert 0.3 * data["totals"]["energy_j"] < per_step < data["totals"]["energy_j"]


def test_report_table_and_plot(measured_run, tmp_path):
    png = tmp_path / "energy.png"
    out = olmo("energy", "report", str(measured_run), "--png", str(png)).stdout
    assert "node" in out and "[rapl]" in out and "kg CO2e" in out
    assert [ln.split()[0] for ln in out.splitlines() if ln.split()[1:2] == ["completed"]] == [
        "1", "2"]  # fmt: skip
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_estimate_scales_measured_j_per_token_by_parameters(measured_run):
    out = olmo("energy", "estimate", "configs/olmo-7b.yaml", "--tokens", "2e12", "--run",
               str(measured_run), "--cluster", "lumi", "--json").stdout  # fmt: skip
    est = json.loads(out)
    data = json.loads((measured_run / "energy.json").read_text())
    assert est["param_scale"] == pytest.approx(6_888_095_744 / est["measured_params"])
    assert est["j_per_token"] == pytest.approx(data["totals"]["j_per_token"] * est["param_scale"])
    assert est["it_mwh"] == pytest.approx(est["j_per_token"] * 2e12 / 3.6e9)
    bad = olmo("energy", "estimate", "configs/olmo-7b.yaml", "--tokens", "1e9", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")


def test_two_ranks_one_node_count_the_node_once(rapl, tmp_path):
    run = tmp_path / "run"
    # GPUs hidden: two ranks on a one-GPU node would share it, and the sampler is the subject here
    proc = torchrun(2, train_args(run, "--train.max_steps=6", "--wandb.mode=disabled",
                                  "--energy.backend=rapl"),
                    env={"OLMO_POWERCAP_ROOT": str(rapl), **NO_GPUS})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((run / "energy.json").read_text())
    (node,) = data["segments"][0]["nodes"].values()  # one sampler for the node, not one per rank
    assert node["mean_power_w"] == pytest.approx(WATTS, rel=0.05)
    recs = read_metrics(run)
    assert statistics.median(r["power_w"] for r in recs) == pytest.approx(WATTS, rel=0.25)


def test_killed_attempt_still_counts(rapl, tmp_path, monkeypatch):
    run = tmp_path / "run"
    args = ["train", *RAPL, "--run-dir", str(run), "--train.max_steps=8", "--train.log_interval=2",
            "--energy.write_interval_s=0.01"]  # fmt: skip
    monkeypatch.setenv("OLMO_FAULT_INJECT", "kill@step=6")  # SIGKILL: no on_train_end
    assert olmo(*args, check=False).returncode == -9
    assert not (run / "energy.json").exists()
    monkeypatch.delenv("OLMO_FAULT_INJECT")
    olmo(*args)  # no checkpoint yet: starts over at step 1
    data = json.loads((run / "energy.json").read_text())
    killed, done = data["segments"]
    assert (killed["status"], killed["last_step"], done["status"]) == ("running", 6, "completed")
    assert killed["energy_j"] == pytest.approx(WATTS * killed["duration_s"], rel=0.05)
    assert data["totals"]["energy_j"] == pytest.approx(killed["energy_j"] + done["energy_j"])
    assert data["totals"]["tokens"] == (6 + 8) * 8 * 32  # the redone steps cost energy too
