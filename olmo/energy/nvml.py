"""NVIDIA GPUs via NVML (nvidia-ml-py): total-energy counter in mJ (Volta+), else power in mW."""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

from olmo.energy.base import Backend, BackendUnavailable, Counter, Device, Reading


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class NvmlBackend(Backend):
    """Every GPU NVML sees on the node (NVML ignores CUDA_VISIBLE_DEVICES: one sampler per node
    measures all of them). `api` is the pynvml module; tests pass a fake one."""

    name = "nvml"

    def __init__(self, api: Any = None):
        try:
            self.api = api if api is not None else importlib.import_module("pynvml")
            self.api.nvmlInit()
            count = self.api.nvmlDeviceGetCount()
        except Exception as e:  # library missing, no driver, ...
            raise BackendUnavailable(f"NVML: {type(e).__name__}: {e}") from e
        if count == 0:
            self.api.nvmlShutdown()
            raise BackendUnavailable("NVML: no NVIDIA GPU on this node")
        self.handles = [self.api.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        self.devices, self.counters = [], []
        for i, h in enumerate(self.handles):
            self.devices.append(Device(f"gpu{i}", {"product": _str(self.api.nvmlDeviceGetName(h))}))
            try:
                self.api.nvmlDeviceGetTotalEnergyConsumption(h)
                self.counters.append(Counter(scale_j=1e-3))  # mJ since driver load, 64-bit
            except Exception:  # pre-Volta or not supported: integrate power instead
                self.counters.append(None)

    def read(self) -> list[Reading]:
        out = []
        for h, counter in zip(self.handles, self.counters, strict=True):
            energy = power = None
            try:
                if counter is not None:
                    energy = counter.update(self.api.nvmlDeviceGetTotalEnergyConsumption(h))
                power = self.api.nvmlDeviceGetPowerUsage(h) / 1000.0  # mW → W
            except Exception:  # a transient NVML error: this sample has a gap
                pass
            out.append(Reading(energy, power))
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already shut down
            self.api.nvmlShutdown()
