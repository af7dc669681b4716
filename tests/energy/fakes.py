"""Fake device APIs at the hardware boundary (no GPU here): the same calls and units as the real ones."""

from __future__ import annotations

import threading
import time
from pathlib import Path


class FakeNVMLError(Exception):
    pass


class FakeNvml:
    """pynvml's surface: energy in mJ (None = counter not supported), power in mW."""

    def __init__(self, energy_mj: list[int | None], power_mw: list[int]):
        self.energy_mj, self.power_mw = energy_mj, power_mw
        self.initialized = False

    def nvmlInit(self):
        self.initialized = True

    def nvmlShutdown(self):
        self.initialized = False

    def nvmlDeviceGetCount(self):
        return len(self.power_mw)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if self.energy_mj[h] is None:
            raise FakeNVMLError("Not Supported")
        return self.energy_mj[h]

    def nvmlDeviceGetPowerUsage(self, h):
        return self.power_mw[h]


class FakeNvmlNoDriver(FakeNvml):
    """pynvml installed on a host without the NVIDIA driver (CPU and AMD nodes often have it)."""

    def __init__(self):
        super().__init__([], [])

    def nvmlInit(self):
        raise FakeNVMLError("NVML Shared Library Not Found")


class FakeAmdSmi:
    """amdsmi's surface: one handle per GCD. A tick count of None makes the energy call raise
    (unsupported), 'N/A' is read as such; a power of None makes the power call raise."""

    def __init__(self, market_name: str, ticks: list[int | str | None], resolution: float = 15.3,
                 power_w: list[object] | None = None, old_key: bool = False):  # fmt: skip
        self.market_name, self.ticks, self.resolution = market_name, ticks, resolution
        self.power_w = power_w if power_w is not None else [0] * len(ticks)
        self.old_key = old_key
        self.reporting: list[int] = list(range(len(ticks)))
        self.energy_reads: list[int] = []

    def burn(self, joules: list[float]) -> None:
        """MI250X: every reporting GCD's counter advances by its package's (GCD // 2) joules."""
        for g in self.reporting:
            self.ticks[g] += round(joules[g // 2] / (self.resolution * 1e-6))

    def amdsmi_init(self):
        pass

    def amdsmi_shut_down(self):
        pass

    def amdsmi_get_processor_handles(self):
        return list(range(len(self.ticks)))

    def amdsmi_get_gpu_asic_info(self, h):
        return {"market_name": self.market_name}

    def amdsmi_get_energy_count(self, h):
        self.energy_reads.append(h)
        if self.ticks[h] is None:
            raise RuntimeError("AMDSMI_STATUS_NOT_SUPPORTED")
        key = "power" if self.old_key else "energy_accumulator"
        return {key: self.ticks[h], "counter_resolution": self.resolution, "timestamp": 0}

    def amdsmi_get_power_info(self, h):
        if self.power_w[h] is None:
            raise RuntimeError("AMDSMI_STATUS_NOT_SUPPORTED")
        return {"current_socket_power": "N/A", "average_socket_power": self.power_w[h]}


def fake_mi250x(packages: int, reporting: str, silent: object, watts: float = 400.0) -> FakeAmdSmi:
    """An MI250X node. Per package the `reporting` die ('even', 'odd', 'both', 'none') carries the
    energy counter and power; a silent die's counter reads `silent` for good (0, 'N/A', None =
    the call raises, or a constant count) and its power 0 W (a silent package: `watts` on even)."""
    dies = {"even": (0,), "odd": (1,), "both": (0, 1), "none": ()}[reporting]
    gcds = range(2 * packages)
    api = FakeAmdSmi("AMD Instinct MI250X", [1_000_000 if g % 2 in dies else silent for g in gcds])
    api.reporting = [g for g in gcds if g % 2 in dies]
    api.power_w = [watts if g % 2 in (dies or (0,)) else 0 for g in gcds]
    return api


def make_powercap(root: Path, zones: dict[str, tuple[str, int, int]]) -> Path:
    """A powercap tree: {dir name: (zone name, energy_uj, max_energy_range_uj)}."""
    for d, (name, energy, max_range) in zones.items():
        z = root / d
        z.mkdir(parents=True)
        (z / "name").write_text(name + "\n")
        (z / "energy_uj").write_text(f"{energy}\n")
        (z / "max_energy_range_uj").write_text(f"{max_range}\n")
    return root


class RaplDriver(threading.Thread):
    """Plays the kernel: advances a zone's energy_uj at `watts`, wrapping at `max_range_uj`."""

    def __init__(self, zone: Path, watts: float, max_range_uj: int, tick_s: float = 0.005):
        super().__init__(daemon=True)
        self.zone, self.watts, self.max_range, self.tick = zone, watts, max_range_uj, tick_s
        self.halt = threading.Event()
        self.total_uj = 0.0

    def run(self):
        t_last = time.monotonic()
        while not self.halt.wait(self.tick):
            now = time.monotonic()
            self.total_uj += self.watts * (now - t_last) * 1e6
            t_last = now
            tmp = self.zone / ".energy_uj.tmp"
            tmp.write_text(f"{int(self.total_uj) % self.max_range}\n")
            tmp.replace(self.zone / "energy_uj")
