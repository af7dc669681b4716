"""Pick the energy backend of this node: the configured one, or the first that works."""

from __future__ import annotations

import logging

import torch

from olmo.energy.amd import AmdSmiBackend
from olmo.energy.base import Backend, BackendUnavailable, UnavailableBackend
from olmo.energy.nvml import NvmlBackend
from olmo.energy.rapl import RaplBackend

log = logging.getLogger("olmo.energy")

BACKENDS = {"nvml": NvmlBackend, "amdsmi": AmdSmiBackend, "rapl": RaplBackend}


def auto_order(device_type: str) -> list[str]:
    """GPU vendor's library first (ROCm builds of torch report 'cuda' too), RAPL last."""
    if device_type == "cuda" and getattr(torch.version, "hip", None):
        return ["amdsmi", "nvml", "rapl"]
    return ["nvml", "amdsmi", "rapl"]


def select_backend(choice: str, device_type: str) -> Backend:
    """Never raises: when nothing can measure, an UnavailableBackend carries the reasons."""
    if choice == "none":
        return UnavailableBackend({"none": "disabled by energy.backend=none"})
    order = auto_order(device_type) if choice == "auto" else [choice]
    reasons: dict[str, str] = {}
    for name in order:
        try:
            backend = BACKENDS[name]()
        except BackendUnavailable as e:
            reasons[name] = str(e)
            continue
        log.info("energy: %s backend, %d devices", name, len(backend.devices))
        return backend
    log.warning("energy: no backend can measure on this node: %s", "; ".join(reasons.values()))
    return UnavailableBackend(reasons)
