"""The sampler's tallies: counter vs integrated power, the sanity check, interpolation."""

from __future__ import annotations

import time

import pytest

from olmo.energy.base import Backend, Device, Reading
from olmo.energy.sampler import Sampler


class Scripted(Backend):
    """A backend whose readings the test sets before each fold."""

    name = "scripted"

    def __init__(self, n: int):
        self.devices = [Device(f"dev{i}") for i in range(n)]
        self.now: list[Reading] = [Reading(None, None)] * n

    def read(self) -> list[Reading]:
        return list(self.now)


def run(sampler: Sampler, series: list[tuple[float, list[Reading]]]) -> None:
    for t, readings in series:
        sampler._fold(t, readings)


def constant(watts: float, counter_factor: float, seconds: int, dt: float = 0.1):
    """A device at constant power whose counter reads `counter_factor` × the true energy."""
    return [(i * dt, [Reading(counter_factor * watts * i * dt, watts)])
            for i in range(int(seconds / dt) + 1)]  # fmt: skip


def test_trusted_counter_is_the_energy():
    s = Sampler(Scripted(1), 0.1, sanity_window_s=0.5, trace_interval_s=1.0)
    run(s, constant(200.0, 1.3, 3))  # counter 30% off: within (0.1, 10) → trusted
    t = s.tallies[0]
    assert t.source == "counter" and t.sanity["ratio"] == pytest.approx(1.3, rel=1e-6)
    assert s.summary()["energy_j"] == pytest.approx(1.3 * 200 * 3)


@pytest.mark.parametrize("factor", [20.0, 0.05])
def test_counter_off_by_more_than_10x_is_distrusted_and_power_integrated(factor):
    s = Sampler(Scripted(1), 0.1, sanity_window_s=0.5, trace_interval_s=1.0)
    run(s, constant(200.0, factor, 3))
    summ = s.summary()["devices"]["dev0"]
    assert summ["source"] == "power" and summ["sanity"]["result"] == "counter distrusted"
    assert summ["energy_j"] == pytest.approx(200 * 3)  # trapezoids of constant power: exact
    assert summ["mean_power_w"] == pytest.approx(200.0) and summ["peak_power_w"] == 200.0


def test_counter_only_and_power_only_devices():
    s = Sampler(Scripted(2), 0.1, sanity_window_s=0.5, trace_interval_s=1.0)
    series = [(i * 0.1, [Reading(50.0 * i * 0.1, None), Reading(None, 10.0 + (i % 2) * 20)])
              for i in range(11)]  # fmt: skip
    run(s, series)
    a, b = (s.summary()["devices"][k] for k in ("dev0", "dev1"))
    assert a["source"] == "counter" and a["energy_j"] == pytest.approx(50.0)
    assert a["peak_power_w"] == pytest.approx(50.0)  # power from the counter's rate
    assert b["source"] == "power" and b["energy_j"] == pytest.approx(20.0 * 1.0)
    assert b["peak_power_w"] == 30.0
    assert s.summary()["peak_power_w"] == pytest.approx(80.0)


def test_energy_at_interpolates_between_samples_and_trace_is_mean_power():
    s = Sampler(Scripted(1), 0.1, sanity_window_s=0.5, trace_interval_s=1.0)
    run(s, constant(100.0, 1.0, 3))
    e = s.energy_at([0.25, 1.0, 2.55, 99.0])
    assert e == pytest.approx([25.0, 100.0, 255.0, 300.0])
    trace = s.take_trace()
    assert len(trace) == 3 and all(r["w"] == pytest.approx([100.0]) for r in trace)
    assert s.take_trace() == []


def test_thread_samples_at_the_interval_and_stop_closes_the_backend():
    b = Scripted(1)
    closed = []
    b.close = lambda: closed.append(True)
    b.now = [Reading(0.0, 100.0)]
    s = Sampler(b, 0.01, sanity_window_s=0.05, trace_interval_s=1.0).start()
    time.sleep(0.3)
    s.stop()
    assert s.samples >= 10 and closed == [True]
    # a stuck counter (always 0) under 100 W is distrusted; the integrated power is the energy
    summ = s.summary()
    assert s.tallies[0].source == "power" and s.tallies[0].sanity["ratio"] == 0.0
    assert summ["energy_j"] == pytest.approx(100.0 * summ["duration_s"])


def test_concurrent_samples_never_fake_a_wrap(tmp_path):
    """The thread and the trainer's flush both sample; reads must reach the counter in order."""
    from olmo.energy.rapl import RaplBackend
    from tests.energy.fakes import RaplDriver, make_powercap

    root = make_powercap(tmp_path, {"intel-rapl:0": ("package-0", 0, 10**12)})
    driver = RaplDriver(root / "intel-rapl:0", 1000.0, 10**12, tick_s=0.0005)
    driver.start()
    s = Sampler(RaplBackend(root), 0.001, sanity_window_s=0.01, trace_interval_s=1.0).start()
    for _ in range(300):
        s.sample()
    s.stop()
    driver.halt.set()
    assert s.backend.counters[0].wraps == 0
    assert s.summary()["energy_j"] < 1000.0 * (s.summary()["duration_s"] + 0.1)
