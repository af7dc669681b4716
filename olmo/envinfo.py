"""Environment fingerprint: what software and hardware a run (or a parity check) ran on.

Recorded in every run's `env.json`, printed by `olmo env`, and embedded in parity fingerprints, so
two runs can be compared knowing exactly which stack produced each.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import torch

# Set by our container images (containers/versions.env → ENV lines), so a run knows its image.
IMAGE_ENV_KEYS = ("OLMO_IMAGE", "OLMO_IMAGE_DIGEST", "OLMO_GIT_COMMIT")


# What decides the collectives' transport and libraries (no secrets live under these names).
NETWORK_ENV_PREFIXES = ("NCCL_", "RCCL_", "TORCH_NCCL_", "GLOO_", "FI_", "CXI_", "MIOPEN_")


def network_env() -> dict[str, str]:
    """LD_LIBRARY_PATH and the NCCL/RCCL/libfabric/gloo settings this process runs with."""
    keys = sorted(k for k in os.environ if k.startswith(NETWORK_ENV_PREFIXES))
    keys = [k for k in keys if not any(w in k for w in ("KEY", "TOKEN", "SECRET", "PASS"))]
    env = {k: os.environ[k] for k in keys}
    if "LD_LIBRARY_PATH" in os.environ:
        env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    return env


def container_info() -> dict[str, Any]:
    """Which container runtime (if any) we are in, and the image name/digest when known."""
    info: dict[str, Any] = {"runtime": None}
    if os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER"):
        info["runtime"] = "apptainer"
        info["sif"] = os.environ.get("APPTAINER_CONTAINER") or os.environ.get(
            "SINGULARITY_CONTAINER"
        )
    elif Path("/.dockerenv").exists():
        info["runtime"] = "docker"
    elif Path("/run/.containerenv").exists():
        info["runtime"] = "podman"
    for key in IMAGE_ENV_KEYS:
        if os.environ.get(key):
            info[key.lower().removeprefix("olmo_")] = os.environ[key]
    return info


def _nccl_version() -> str | None:
    try:
        v = torch.cuda.nccl.version()
    except Exception:  # no NCCL/RCCL in this build (CPU wheel)
        return None
    return ".".join(map(str, v)) if isinstance(v, tuple) else str(v)


def _driver_version() -> str | None:
    """NVIDIA driver via NVML, AMD driver via amdsmi; None when neither library or device exists."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            v = pynvml.nvmlSystemGetDriverVersion()
            return v.decode() if isinstance(v, bytes) else v
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVIDIA driver here; try AMD
        pass
    try:
        import amdsmi

        amdsmi.amdsmi_init()
        try:
            return str(amdsmi.amdsmi_get_gpu_driver_info(amdsmi.amdsmi_get_processor_handles()[0]))
        finally:
            amdsmi.amdsmi_shut_down()
    except Exception:  # no AMD driver either
        return None


def _git_commit() -> str | None:
    if os.environ.get("OLMO_GIT_COMMIT"):
        return os.environ["OLMO_GIT_COMMIT"]
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def devices() -> list[dict[str, Any]]:
    if not torch.cuda.is_available():
        return [
            {
                "type": "cpu",
                "name": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
            }
        ]
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append(
            {
                "type": "cuda",
                "index": i,
                "name": p.name,
                "memory_gib": round(p.total_memory / 2**30, 1),
            }
        )
    return out


def environment_fingerprint() -> dict[str, Any]:
    """Software/hardware stack of this process (no secrets: only versions, names and paths)."""
    return {
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "hip": getattr(torch.version, "hip", None),
        "nccl": _nccl_version(),
        "driver": _driver_version(),
        "devices": devices(),
        "visible_devices": {
            k: os.environ[k]
            for k in ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")
            if k in os.environ
        },
        "container": container_info(),
        "network_env": network_env(),
        "git_commit": _git_commit(),
    }


def _print(args) -> int:
    fp = environment_fingerprint()
    if args.json:
        print(json.dumps(fp, indent=1))
    else:
        for k, v in fp.items():
            print(f"{k:16s} {json.dumps(v) if isinstance(v, (dict, list)) else v}")
    return 0


def add_cli(subparsers) -> None:
    """Register `olmo env`."""
    p = subparsers.add_parser(
        "env", help="print the environment fingerprint (python, torch, CUDA/ROCm, devices, image)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object instead of aligned lines")
    p.set_defaults(func=_print)
