"""energy.json from the per-attempt files: segments accumulate, totals and CO2e arithmetic."""

from __future__ import annotations

import pytest

from olmo.energy import store
from olmo.energy.summary import build, write_energy_json


def node(name: str, energy: float, duration: float, devices: dict, backend: str = "nvml"):
    return {"node": name, "backend": backend, "energy_j": energy, "duration_s": duration,
            "mean_power_w": energy / duration, "peak_power_w": 2 * energy / duration,
            "samples": 10, "devices": devices}  # fmt: skip


def job(attempt: int, first: int, last: int, tokens: int, status: str, pue=1.2, carbon=500.0):
    return {"attempt": attempt, "first_step": first, "last_step": last, "tokens": tokens,
            "status": status, "nodes": 2, "world_size": 16,
            "settings": {"pue": pue, "carbon_intensity_g_per_kwh": carbon}}  # fmt: skip


def test_segments_accumulate_across_restarts(tmp_path):
    gpus = {f"gpu{i}": {"energy_j": 1.0} for i in range(8)}
    pkgs = {
        f"gpu-pkg{i}": {"energy_j": 1.0, "gcds": [2 * i, 2 * i + 1], "units": 2} for i in range(4)
    }
    # attempt 1 was killed (rank 0's last write said running); attempt 2 completed
    store.write_job(tmp_path, 1, job(1, 1, 40, 40_000, "running"))
    store.write_node(tmp_path, 1, "a", node("a", 3.6e6, 3600, gpus))
    store.write_node(tmp_path, 1, "b", node("b", 1.8e6, 3600, pkgs, backend="amdsmi"))
    store.write_job(tmp_path, 2, job(2, 31, 100, 70_000, "completed", pue=1.1, carbon=600.0))
    store.write_node(tmp_path, 2, "a", node("a", 7.2e6, 1800, gpus))
    store.write_node(tmp_path, 2, "b", node("b", 0.0, 1800, pkgs, backend="amdsmi"))
    data = write_energy_json(tmp_path)
    assert [s["attempt"] for s in data["segments"]] == [1, 2]
    assert [s["energy_j"] for s in data["segments"]] == [5.4e6, 7.2e6]
    t = data["totals"]
    assert t["energy_j"] == 12.6e6 and t["kwh"] == pytest.approx(3.5)
    assert t["facility_kwh"] == pytest.approx(3.5 * 1.1)  # the newest attempt's PUE
    assert t["co2e_kg"] == pytest.approx(3.5 * 1.1 * 600 / 1000)
    assert t["tokens"] == 110_000 and t["j_per_token"] == pytest.approx(12.6e6 / 110_000)
    assert t["duration_s"] == 5400 and t["mean_power_w"] == pytest.approx(12.6e6 / 5400)
    # 8 GPUs + 4 MI250X packages (= 8 GCDs) per node, 1.5 h in all
    assert t["device_hours"] == pytest.approx(16 * 1.5)
    assert t["peak_node_power_w"] == pytest.approx(2 * 7.2e6 / 1800)
    assert data["backends"] == {"a": "nvml", "b": "amdsmi"} and t["complete"]
    assert (tmp_path / "energy.json").is_file()


def test_unmeasured_node_makes_totals_incomplete_and_says_why(tmp_path):
    store.write_job(tmp_path, 1, job(1, 1, 10, 1000, "completed"))
    store.write_node(tmp_path, 1, "a", node("a", 500.0, 10, {"package-0": {"energy_j": 500.0}},
                                            backend="rapl"))  # fmt: skip
    unav = {"node": "b", "backend": "unavailable", "energy_j": None, "duration_s": 10,
            "reasons": {"rapl": "RAPL: /sys/class/powercap does not exist"}, "devices": {}}  # fmt: skip
    store.write_node(tmp_path, 1, "b", unav)
    data = build(tmp_path)
    assert data["unavailable"] == {"b": {"rapl": "RAPL: /sys/class/powercap does not exist"}}
    assert data["totals"]["energy_j"] == 500.0 and not data["totals"]["complete"]


def test_no_sensor_anywhere_gives_null_totals(tmp_path):
    store.write_job(tmp_path, 1, job(1, 1, 10, 1000, "completed"))
    store.write_node(tmp_path, 1, "a", {"node": "a", "backend": "unavailable", "energy_j": None,
                                        "duration_s": 5, "reasons": {"x": "y"}})  # fmt: skip
    data = build(tmp_path)
    assert not data["measured"] and data["totals"]["kwh"] is None
    assert data["totals"]["co2e_kg"] is None and data["totals"]["tokens"] == 1000
