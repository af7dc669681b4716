"""Backends' arithmetic at the hardware boundary: units, wrap-around, MI250X attribution."""

from __future__ import annotations

import logging

import pytest

from olmo.energy import choose
from olmo.energy.amd import AmdSmiBackend
from olmo.energy.base import BackendUnavailable, Counter, UnavailableBackend
from olmo.energy.choose import select_backend
from olmo.energy.nvml import NvmlBackend
from olmo.energy.rapl import RaplBackend
from olmo.energy.sampler import Sampler
from tests.energy.fakes import FakeAmdSmi, FakeNvml, fake_mi250x, make_powercap


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
    class NoDriver(FakeNvml):
        def nvmlInit(self):
            raise RuntimeError("NVML Shared Library Not Found")

    with pytest.raises(BackendUnavailable, match="NVML Shared Library Not Found"):
        NvmlBackend(NoDriver([], []))
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


def test_select_backend_falls_back_to_unavailable_with_every_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("OLMO_POWERCAP_ROOT", str(tmp_path / "absent"))

    def no_driver():
        raise BackendUnavailable("NVML: no driver")

    monkeypatch.setitem(choose.BACKENDS, "nvml", no_driver)  # deterministic on any machine
    b = select_backend("auto", "cpu")
    assert isinstance(b, UnavailableBackend)
    assert set(b.reasons) == {"nvml", "amdsmi", "rapl"} and "absent" in b.reasons["rapl"]
    assert select_backend("none", "cpu").reasons == {"none": "disabled by energy.backend=none"}
    monkeypatch.setenv("OLMO_POWERCAP_ROOT", str(make_powercap(tmp_path / "pc", {
        "intel-rapl:0": ("package-0", 1, 10)})))  # fmt: skip
    assert select_backend("auto", "cpu").name == "rapl"
