"""What every energy backend provides: per-device cumulative joules and/or instantaneous watts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class BackendUnavailable(Exception):
    """A backend cannot measure on this node; the message says why (it lands in energy.json)."""


@dataclass
class Reading:
    """One device at one instant. energy_j: a monotonic cumulative counter (origin arbitrary),
    already in joules with wrap-around removed; None when the device has no counter.
    power_w: instantaneous (or driver-averaged) power; None when not reported."""

    energy_j: float | None
    power_w: float | None


@dataclass
class Device:
    name: str
    """Label in energy.json, e.g. 'gpu0', 'package-0' (RAPL), 'gpu-pkg0' (MI250X: GCD 0+1)."""
    info: dict[str, Any] = field(default_factory=dict)
    """Product name, which GCDs a package covers, etc.; 'units' = compute devices it counts as
    in device-hours (default 1; an MI250X package 2, a DRAM zone 0)."""


class Backend:
    name = "base"
    devices: list[Device]

    def read(self) -> list[Reading]:
        """One reading per device (same order as `devices`); a failing device gives Nones."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class Counter:
    """Raw hardware counter ticks → cumulative joules, removing wrap-around.

    `scale_j`: joules per raw unit (1e-3 for NVML's mJ, 1e-6 for µJ). `wrap`: the raw value at
    which the counter wraps to 0 (RAPL's max_energy_range_uj); None = it never wraps, and a
    decrease means the counter was reset (driver reload): that interval counts as 0, never < 0.
    Read at least once per wrap period (RAPL: minutes at full power), or a wrap is lost.
    """

    def __init__(self, scale_j: float, wrap: float | None = None):
        self.scale_j, self.wrap = scale_j, wrap
        self.last: float | None = None
        self.total_j = 0.0
        self.wraps = self.resets = 0

    def update(self, raw: float) -> float:
        if self.last is not None:
            delta = raw - self.last
            if delta < 0:
                if self.wrap is not None:
                    delta += self.wrap
                    self.wraps += 1
                else:
                    delta = 0.0
                    self.resets += 1
            self.total_j += delta * self.scale_j
        self.last = raw
        return self.total_j


class UnavailableBackend(Backend):
    """No sensor on this node: measures nothing and says why (per backend tried)."""

    name = "unavailable"

    def __init__(self, reasons: dict[str, str]):
        self.reasons = reasons
        self.devices = []

    def read(self) -> list[Reading]:
        return []
