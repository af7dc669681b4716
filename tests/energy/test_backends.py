"""Backends' arithmetic at the hardware boundary (units, wrap-around, MI250X attribution), which
backend a node uses, and the real sensors of this host where it has any."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from olmo.energy.amd import AmdSmiBackend
from olmo.energy.base import BackendUnavailable, Counter, UnavailableBackend
from olmo.energy.choose import BACKENDS, auto_order, select_backend
from olmo.energy.nvml import NvmlBackend
from olmo.energy.rapl import RaplBackend
from olmo.energy.sampler import Sampler
from tests.energy.fakes import FakeAmdSmi, FakeNvml, FakeNvmlNoDriver, fake_mi250x, make_powercap
from tests.energy.host import PRESENT, expected_auto, keep_busy, trainer_device_type


def test_counter_wraps_at_max_range_and_never_goes_negative_on_reset():
    c = Counter(scale_j=1e-6, wrap=1000)
    c.update(900)
    c.update(950)
    assert c.update(10) == pytest.approx((50 + 60) * 1e-6)  # 950 → 1000 ≡ 0 → 10
    assert c.wraps == 1
    no_wrap = Counter(scale_j=1e-3)
    no_wrap.update(5000)
    no_wrap.update(7000)
    assert no_wrap.update(100) == pytest.approx(2.0)  # driver reload: that interval counts 0
    assert no_wrap.update(600) == pytest.approx(2.5) and no_wrap.resets == 1


def test_nvml_converts_mj_and_mw_and_integrates_power_without_counter():
    api = FakeNvml(energy_mj=[1_000_000, None], power_mw=[250_000, 70_500])
    b = NvmlBackend(api)
    assert [d.name for d in b.devices] == ["gpu0", "gpu1"]
    assert b.devices[0].info["product"] == "NVIDIA H100 80GB HBM3"
    first = b.read()
    assert first[0].energy_j == 0.0 and first[0].power_w == 250.0
    assert first[1].energy_j is None and first[1].power_w == 70.5
    api.energy_mj[0] += 123_456  # mJ
    assert b.read()[0].energy_j == pytest.approx(123.456)
    b.close()
    assert not api.initialized


def test_nvml_without_driver_is_unavailable_with_the_reason():
    with pytest.raises(BackendUnavailable, match="NVML Shared Library Not Found"):
        NvmlBackend(FakeNvmlNoDriver())
    with pytest.raises(BackendUnavailable, match="no NVIDIA GPU"):
        NvmlBackend(FakeNvml([], []))


SILENT = {"zero": 0, "n/a": "N/A", "raises": None, "constant": 123_456}


@pytest.mark.parametrize("silent", SILENT)
@pytest.mark.parametrize("reporting", ["even", "odd"])
def test_mi250x_package_energy_is_the_reporting_dies_delta(reporting, silent):
    # 4 GCDs = 2 packages; per package one die reports (rocm_smi_lib #160, #149: not always even)
    api = fake_mi250x(2, reporting, SILENT[silent], watts=400)
    b = AmdSmiBackend(api)
    assert [d.name for d in b.devices] == ["gpu-pkg0", "gpu-pkg1"]
    assert [d.info["gcds"] for d in b.devices] == [[0, 1], [2, 3]]
    assert [d.info["units"] for d in b.devices] == [2, 2]  # device-hours count GCDs
    assert b.read()[0].energy_j == 0.0
    api.burn([100.0, 200.0])
    r = b.read()
    assert [x.energy_j for x in r] == pytest.approx([100.0, 200.0], rel=1e-6)  # not 0, not 2×
    assert [x.power_w for x in r] == [400, 400]  # the package's power, from whichever die has it
    assert [d.info["reporting_gcd"] for d in b.devices] == api.reporting
    reads = len(api.energy_reads)
    api.burn([50.0, 50.0])
    assert [x.energy_j for x in b.read()] == pytest.approx([150.0, 250.0], rel=1e-6)
    assert api.energy_reads[reads:] == api.reporting  # once chosen, only the reporter is read


def test_mi250x_package_whose_dies_both_advance_is_counted_once():
    api = fake_mi250x(2, "both", 0)  # both dies carry the package's counter
    b = AmdSmiBackend(api)
    b.read()
    api.burn([100.0, 200.0])
    assert [x.energy_j for x in b.read()] == pytest.approx([100.0, 200.0], rel=1e-6)
    assert [d.info["reporting_gcd"] for d in b.devices] == [0, 2]  # a tie: the even die
    api.ticks[0] += round(5.0 / 15.3e-6)  # unequal: the die that advanced more is the package
    api.ticks[1] += round(80.0 / 15.3e-6)
    b2 = AmdSmiBackend(api)
    b2.read()
    api.ticks[0] += round(5.0 / 15.3e-6)
    api.ticks[1] += round(80.0 / 15.3e-6)
    assert b2.read()[0].energy_j == pytest.approx(80.0, rel=1e-6)
    assert b2.devices[0].info["reporting_gcd"] == 1


@pytest.mark.parametrize(("factor", "source"), [(1.0, "counter"), (50.0, "power")])
def test_mi250x_counter_is_checked_against_integrated_power(factor, source):
    # the odd die reports: its counter must meet the package's power in one Reading for the check
    api = fake_mi250x(1, "odd", 0, watts=300)
    s = Sampler(AmdSmiBackend(api), 0.1, sanity_window_s=0.5, trace_interval_s=1.0)
    for i in range(11):  # 1 s at 300 W; the counter runs at `factor` × that
        if i:
            api.burn([factor * 300 * 0.1])
        s._fold(i * 0.1, s.backend.read())
    d = s.summary()["devices"]["gpu-pkg0"]
    assert d["source"] == source and d["sanity"]["ratio"] == pytest.approx(factor, rel=1e-5)
    assert d["energy_j"] == pytest.approx(300.0, rel=1e-5)
    assert d["reporting_gcd"] == 1


def test_mi250x_without_an_advancing_counter_warns_and_integrates_power(caplog):
    api = fake_mi250x(1, "none", 0, watts=250)  # both dies stuck at 0; power still reported
    now = [0.0]
    s = Sampler(AmdSmiBackend(api, probe_s=0.3, clock=lambda: now[0]), 0.1, 0.5, 1.0)
    with caplog.at_level(logging.WARNING, logger="olmo.energy"):
        for i in range(11):
            now[0] = i * 0.1
            r = s.backend.read()
            assert r[0].energy_j == (0.0 if now[0] < 0.3 else None)  # 0 J is exact until then
            s._fold(now[0], r)
    assert "neither GCD" in caplog.text and "gpu-pkg0" in caplog.text
    d = s.summary()["devices"]["gpu-pkg0"]
    assert d["reporting_gcd"] is None and d["source"] == "power"
    assert d["energy_j"] == pytest.approx(250.0)
    assert len(api.energy_reads) == 2 * 4  # both dies probed at 0–0.3 s, then left alone


def test_single_gcd_amd_gpus_are_one_device_each_and_old_key_name_works():
    api = FakeAmdSmi("AMD Instinct MI300X", ticks=[10, 20], power_w=["N/A", 650], old_key=True)
    b = AmdSmiBackend(api)
    assert [d.name for d in b.devices] == ["gpu0", "gpu1"]
    b.read()
    api.ticks[1] += 1_000_000
    r = b.read()
    assert r[1].energy_j == pytest.approx(15.3) and r[0].power_w is None and r[1].power_w == 650


def test_rapl_counts_packages_and_dram_only_and_handles_wrap(tmp_path):
    root = make_powercap(tmp_path, {
        "intel-rapl:0": ("package-0", 999_000, 1_000_000),
        "intel-rapl:0:0": ("core", 5, 1_000_000),
        "intel-rapl:0:1": ("dram", 100, 1_000_000),
        "intel-rapl:1": ("psys", 7, 1_000_000),
        "intel-rapl-mmio:0": ("package-0", 9, 1_000_000),
    })  # fmt: skip
    b = RaplBackend(root)
    assert [d.name for d in b.devices] == ["package-0@intel-rapl:0", "dram@intel-rapl:0:1"]
    assert [d.info["units"] for d in b.devices] == [1, 0]
    b.read()
    (root / "intel-rapl:0" / "energy_uj").write_text("4000\n")  # wrapped: +1000 +4000 µJ
    (root / "intel-rapl:0:1" / "energy_uj").write_text("2100\n")
    r = b.read()
    assert r[0].energy_j == pytest.approx(5000e-6) and r[0].power_w is None
    assert r[1].energy_j == pytest.approx(2000e-6)


def test_rapl_unreadable_or_missing_says_why(tmp_path):
    with pytest.raises(BackendUnavailable, match="does not exist"):
        RaplBackend(tmp_path / "nope")
    root = make_powercap(tmp_path / "pc", {"intel-rapl:0": ("package-0", 1, 10)})
    (root / "intel-rapl:0" / "energy_uj").unlink()
    (root / "intel-rapl:0" / "energy_uj").mkdir()  # reads fail like a root-only file does
    with pytest.raises(BackendUnavailable, match="cannot read"):
        RaplBackend(root)


# ---- which backend a node uses ---------------------------------------------------------------
# Hosts are simulated at the hardware boundary only: the vendor libraries (sys.modules; None =
# not installed) and the powercap tree. The expectations come from probing the (simulated) host
# (tests/energy/host.py), as the real-host test below does without any fake.


@dataclass
class Host:
    nvml: object | None
    amdsmi: object | None
    rapl: bool


def simulate(host: Host, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", host.nvml)
    monkeypatch.setitem(sys.modules, "amdsmi", host.amdsmi)
    root = tmp_path / "powercap"
    if host.rapl:
        make_powercap(root, {"intel-rapl:0": ("package-0", 1, 10**6)})
    monkeypatch.setenv("OLMO_POWERCAP_ROOT", str(root))


def nvidia_node() -> Host:
    return Host(FakeNvml([1000, 2000], [300_000, 310_000]), None, rapl=True)


HOSTS = {
    "cpu-no-sensor": (Host(FakeNvmlNoDriver(), None, rapl=False), "unavailable"),
    "cpu-rapl": (Host(None, None, rapl=True), "rapl"),
    "nvidia": (nvidia_node(), "nvml"),
    "nvidia-driver-no-gpu": (Host(FakeNvml([], []), None, rapl=True), "rapl"),
    "amd": (Host(FakeNvmlNoDriver(), FakeAmdSmi("AMD Instinct MI300X", [10, 20]), True), "amdsmi"),
    "amd-mi250x": (Host(None, fake_mi250x(2, "odd", 0), rapl=False), "amdsmi"),
}


@pytest.mark.parametrize("name", HOSTS)
def test_auto_picks_the_sensor_the_host_has(name, monkeypatch, tmp_path):
    host, expected = HOSTS[name]
    simulate(host, monkeypatch, tmp_path)
    assert expected_auto("cpu") == expected  # the probe sees the simulated host
    b = select_backend("auto", "cpu")
    assert b.name == expected
    if expected == "unavailable":
        assert set(b.reasons) == {"nvml", "amdsmi", "rapl"} and "powercap" in b.reasons["rapl"]
    b.close()


def test_rocm_builds_try_amd_smi_first(monkeypatch):
    monkeypatch.setattr(torch.version, "hip", "6.2.41133", raising=False)
    assert auto_order("cuda") == ["amdsmi", "nvml", "rapl"]
    monkeypatch.setattr(torch.version, "hip", None, raising=False)
    assert auto_order("cuda") == ["nvml", "amdsmi", "rapl"]


def test_a_configured_backend_is_used_or_reported_whatever_else_the_host_has(monkeypatch, tmp_path):
    simulate(nvidia_node(), monkeypatch, tmp_path)  # NVML would win in auto mode
    assert select_backend("rapl", "cpu").name == "rapl"
    assert select_backend("nvml", "cpu").name == "nvml"
    b = select_backend("amdsmi", "cpu")  # asked for, absent: no fallback to what is there
    assert isinstance(b, UnavailableBackend) and list(b.reasons) == ["amdsmi"]
    assert select_backend("none", "cpu").reasons == {"none": "disabled by energy.backend=none"}


def test_auto_on_this_host_picks_what_it_has():
    device = trainer_device_type()
    b = select_backend("auto", device)  # no fakes: this machine's libraries and sysfs
    try:
        assert b.name == expected_auto(device)
    finally:
        b.close()


@pytest.mark.parametrize("name", ["nvml", "amdsmi", "rapl"])
def test_real_sensor_readings_are_plausible(name):
    if not PRESENT[name]():
        pytest.skip(f"no {name} sensor on this host")
    backend = BACKENDS[name]()
    try:
        t0 = time.monotonic()
        first = backend.read()
        keep_busy(1.0)
        second = backend.read()
        dt = time.monotonic() - t0
    finally:
        backend.close()
    assert len(first) == len(second) == len(backend.devices) > 0
    advanced = []
    for dev, a, b in zip(backend.devices, first, second, strict=True):
        if a.energy_j is not None and b.energy_j is not None:
            watts = (b.energy_j - a.energy_j) / dt
            assert 0 <= watts < 2000, (dev.name, watts)  # counters never run backwards
            advanced.append(watts > 0)
        if b.power_w is not None:
            assert 0 < b.power_w < 2000, (dev.name, b.power_w)
    if name == "nvml":  # every NVIDIA datacenter GPU reports power; Volta+ also count energy
        assert all(r.power_w is not None for r in second)
    assert any(advanced), "no energy counter advanced in 1 s of work"
