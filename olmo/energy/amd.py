"""AMD GPUs via AMD SMI (`amdsmi`): energy accumulator × counter resolution (µJ), power in W.

MI250X: one package holds two GCDs, and power/energy are reported on the even GCD only (the odd
one reads 0 or N/A). Each package is therefore one measured device ('gpu-pkgN', covering GCDs
2N and 2N+1); the odd GCD is never read, so nothing is counted twice.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

from olmo.energy.base import Backend, BackendUnavailable, Counter, Device, Reading

_TWO_GCD_PRODUCTS = ("MI250",)  # MI250 and MI250X: 2 GCDs per package
_POWER_KEYS = ("current_socket_power", "average_socket_power", "socket_power")


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


class AmdSmiBackend(Backend):
    name = "amdsmi"

    def __init__(self, api: Any = None):
        try:
            self.api = api if api is not None else importlib.import_module("amdsmi")
            self.api.amdsmi_init()
            handles = list(self.api.amdsmi_get_processor_handles())
        except Exception as e:  # not installed, no driver, VM guest
            raise BackendUnavailable(f"AMD SMI: {type(e).__name__}: {e}") from e
        if not handles:
            raise BackendUnavailable("AMD SMI: no AMD GPU on this node")
        self.handles, self.devices = [], []
        product = _market_name(self.api, handles[0])
        if any(p in product for p in _TWO_GCD_PRODUCTS) and len(handles) % 2 == 0:
            for pkg in range(len(handles) // 2):
                self.handles.append(handles[2 * pkg])  # the even GCD carries the package's power
                info = {"product": product, "gcds": [2 * pkg, 2 * pkg + 1], "units": 2}
                self.devices.append(Device(f"gpu-pkg{pkg}", info))
        else:
            self.handles = handles
            self.devices = [Device(f"gpu{i}", {"product": product}) for i in range(len(handles))]
        self.counters = [Counter(scale_j=1e-6) for _ in self.handles]

    def _energy_uj(self, h: Any) -> float | None:
        d = self.api.amdsmi_get_energy_count(h)
        # 'energy_accumulator' in current amdsmi; older releases called the same ticks 'power'.
        ticks = _number(d.get("energy_accumulator", d.get("power")))
        res = _number(d.get("counter_resolution"))
        return None if ticks is None or res is None else ticks * res

    def _power_w(self, h: Any) -> float | None:
        info = self.api.amdsmi_get_power_info(h)
        for key in _POWER_KEYS:
            p = _number(info.get(key))
            if p is not None and p > 0:
                return p
        return None

    def read(self) -> list[Reading]:
        out = []
        for h, counter in zip(self.handles, self.counters, strict=True):
            energy = power = None
            try:
                uj = self._energy_uj(h)
                energy = None if uj is None else counter.update(uj)
            except Exception:  # energy count unsupported on this device/driver
                pass
            with contextlib.suppress(Exception):  # power info unsupported
                power = self._power_w(h)
            out.append(Reading(energy, power))
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already shut down
            self.api.amdsmi_shut_down()
