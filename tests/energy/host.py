"""What energy sensors this host really has, probed at the vendor libraries and sysfs themselves
(not through olmo.energy), so tests of auto mode expect what this host provides: NVML on NVIDIA
nodes, AMD SMI on AMD nodes, RAPL on bare CPUs, nothing where nothing can measure. A test that
swaps in a fake library (sys.modules) or powercap tree is seen here exactly as the code sees it."""

from __future__ import annotations

import contextlib
import importlib
import os
import time

import torch

from olmo.energy.rapl import powercap_root


def nvidia_gpus() -> int:
    """GPUs NVML finds (0: pynvml missing, no driver, no GPU)."""
    try:
        nvml = importlib.import_module("pynvml")
        nvml.nvmlInit()
    except Exception:  # ImportError, NVMLError_LibraryNotFound, ...
        return 0
    try:
        return int(nvml.nvmlDeviceGetCount())
    except Exception:  # a driver that initialises but cannot count
        return 0
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def amd_gpus() -> int:
    """GPU dies (GCDs) AMD SMI finds (0: amdsmi missing, no driver, no GPU)."""
    try:
        smi = importlib.import_module("amdsmi")
        smi.amdsmi_init()
    except Exception:
        return 0
    try:
        return len(smi.amdsmi_get_processor_handles())
    except Exception:
        return 0
    finally:
        with contextlib.suppress(Exception):
            smi.amdsmi_shut_down()


def rapl_readable() -> bool:
    """A package or DRAM zone whose energy counter this user can read."""
    root = powercap_root()
    for zone in root.glob("*rapl:*") if root.is_dir() else []:
        try:
            name = (zone / "name").read_text().strip()
            if "mmio" not in zone.name and (name.startswith("package") or name == "dram"):
                (zone / "energy_uj").read_text()
                return True
        except OSError:  # root-only energy_uj, a zone without a name
            continue
    return False


PRESENT = {"nvml": nvidia_gpus, "amdsmi": amd_gpus, "rapl": rapl_readable}
"""Backend name → probe: truthy when that sensor exists here."""


def expected_auto(device_type: str) -> str:
    """The backend energy.backend=auto must pick on this host: the GPUs' vendor library, else
    RAPL, else none ('unavailable'). With both vendors' GPUs, the one torch was built for."""
    vendors = [name for name in ("nvml", "amdsmi") if PRESENT[name]()]
    if len(vendors) == 2 and device_type == "cuda" and getattr(torch.version, "hip", None):
        vendors.reverse()
    if vendors:
        return vendors[0]
    return "rapl" if rapl_readable() else "unavailable"


def trainer_device_type() -> str:
    """The device type `olmo train` uses here (ROCm builds report 'cuda' too)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def keep_busy(seconds: float) -> None:
    """Work for the sensors to see: matmuls on the GPU when torch has one, else the CPU."""
    end = time.monotonic() + seconds
    if torch.cuda.is_available():
        a = torch.randn(4096, 4096, device="cuda")
        while time.monotonic() < end:
            a = torch.tanh(a @ a)
            torch.cuda.synchronize()
        return
    x = 0
    while time.monotonic() < end:
        x = (x * 31 + os.getpid()) % 1_000_003
