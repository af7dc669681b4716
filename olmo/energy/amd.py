"""AMD GPUs via AMD SMI (`amdsmi`): energy accumulator × counter resolution (µJ), power in W.

MI250X: one package holds two GCDs, and one die reports the package's power and energy for both,
usually the even GCD but not always (rocm_smi_lib #160, #149); the other die reads 0, N/A, a
constant, or raises. Each package is one measured device ('gpu-pkgN', GCDs 2N and 2N+1, units 2)
whose reporting die is found from the first reads: both dies' counters are read until one has
advanced; that die is chosen (info 'reporting_gcd') and from then on it alone is read. If both
advanced, the one that advanced more is taken (a tie: the even one): one die is counted, never
both, since a die that mirrors the package's counter would double it. Until then the package's
counter reads 0 J, which is exact: neither counter has moved.

The package's power is the reporting die's (else the other die's), returned with the chosen
counter, so the sampler's check of every counter against power × time applies here too.

If neither counter advances within `probe_s`, a warning is logged, 'reporting_gcd' stays None and
the package reports power only: the sampler then finds a counter stuck at 0 J under non-zero power
and integrates the power instead (source 'power').
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import time
from collections.abc import Callable
from typing import Any

from olmo.energy.base import Backend, BackendUnavailable, Counter, Device, Reading

log = logging.getLogger("olmo.energy")

_TWO_GCD_PRODUCTS = ("MI250",)  # MI250 and MI250X: 2 GCDs per package
_POWER_KEYS = ("current_socket_power", "average_socket_power", "socket_power")
PROBE_S = 2.0  # the reporting die's counter ticks every few ms: far longer than needed


def _number(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):  # "N/A"
        return None
    return x if x == x else None


def _market_name(api: Any, handle: Any) -> str:
    try:
        return str(api.amdsmi_get_gpu_asic_info(handle).get("market_name", ""))
    except Exception:  # asic info not readable: assume one GCD per package
        return ""


class _Package:
    """One measured device: its GCDs' handles and which one's counter is the package's."""

    def __init__(self, device: Device, handles: list[Any]):
        self.device, self.handles = device, handles
        self.counters = [Counter(scale_j=1e-6) for _ in handles]
        self.reporter: int | None = 0 if len(handles) == 1 else None  # index into handles
        self.probing = len(handles) > 1

    def order(self) -> list[int]:
        """Handle indices, the reporting die (else the even one) first."""
        first = self.reporter or 0
        return [first] + [i for i in range(len(self.handles)) if i != first]


def _packages(product: str, handles: list[Any]) -> list[_Package]:
    if not (any(p in product for p in _TWO_GCD_PRODUCTS) and len(handles) % 2 == 0):
        return [
            _Package(Device(f"gpu{i}", {"product": product}), [h]) for i, h in enumerate(handles)
        ]
    out = []
    for n in range(len(handles) // 2):
        info = {"product": product, "gcds": [2 * n, 2 * n + 1], "units": 2, "reporting_gcd": None}
        out.append(_Package(Device(f"gpu-pkg{n}", info), handles[2 * n : 2 * n + 2]))
    return out


class AmdSmiBackend(Backend):
    """Every AMD GPU of the node. `api` is the amdsmi module (tests pass a fake); `probe_s`: how
    long to look for each MI250X package's reporting die; `clock`: monotonic seconds."""

    name = "amdsmi"

    def __init__(
        self, api: Any = None, probe_s: float = PROBE_S, clock: Callable[[], float] = time.monotonic
    ):
        try:
            self.api = api if api is not None else importlib.import_module("amdsmi")
            self.api.amdsmi_init()
            handles = list(self.api.amdsmi_get_processor_handles())
        except Exception as e:  # not installed, no driver, VM guest
            raise BackendUnavailable(f"AMD SMI: {type(e).__name__}: {e}") from e
        if not handles:
            raise BackendUnavailable("AMD SMI: no AMD GPU on this node")
        self.probe_s, self.clock = probe_s, clock
        self.t0: float | None = None
        self.packages = _packages(_market_name(self.api, handles[0]), handles)
        self.devices = [p.device for p in self.packages]

    def _energy_uj(self, h: Any) -> float | None:
        d = self.api.amdsmi_get_energy_count(h)
        # 'energy_accumulator' in current amdsmi; older releases called the same ticks 'power'.
        ticks = _number(d.get("energy_accumulator", d.get("power")))
        res = _number(d.get("counter_resolution"))
        return None if ticks is None or res is None else ticks * res

    def _update(self, h: Any, counter: Counter) -> float | None:
        """The die's joules since its first read; None when it has no readable counter."""
        try:
            uj = self._energy_uj(h)
        except Exception:  # energy count unsupported on this device/driver
            return None
        return None if uj is None else counter.update(uj)

    def _power_w(self, h: Any) -> float | None:
        info = self.api.amdsmi_get_power_info(h)
        for key in _POWER_KEYS:
            p = _number(info.get(key))
            if p is not None and p > 0:
                return p
        return None

    def _probe(self, pkg: _Package, elapsed: float) -> float | None:
        """Read both dies; choose the one whose counter advanced (see the module doc)."""
        totals = [self._update(h, c) or 0.0 for h, c in zip(pkg.handles, pkg.counters, strict=True)]
        if max(totals) > 0:
            pkg.reporter = totals.index(max(totals))  # first of equals: the even die
            pkg.probing = False
            pkg.device.info["reporting_gcd"] = pkg.device.info["gcds"][pkg.reporter]
            return totals[pkg.reporter]
        if elapsed >= self.probe_s:
            pkg.probing = False
            log.warning(
                "energy: %s: neither GCD's energy counter advanced in %.1f s; its energy is "
                "integrated from power", pkg.device.name, elapsed,
            )  # fmt: skip
            return None
        return 0.0 if any(c.last is not None for c in pkg.counters) else None

    def _read_package(self, pkg: _Package, elapsed: float) -> Reading:
        if pkg.probing:
            energy = self._probe(pkg, elapsed)
        elif pkg.reporter is not None:
            energy = self._update(pkg.handles[pkg.reporter], pkg.counters[pkg.reporter])
        else:  # no die's counter advanced: power only
            energy = None
        power = None
        for i in pkg.order():  # only one die carries the package's power
            with contextlib.suppress(Exception):  # power info unsupported
                power = self._power_w(pkg.handles[i])
            if power is not None:
                break
        return Reading(energy, power)

    def read(self) -> list[Reading]:
        now = self.clock()
        if self.t0 is None:
            self.t0 = now
        return [self._read_package(p, now - self.t0) for p in self.packages]

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already shut down
            self.api.amdsmi_shut_down()
