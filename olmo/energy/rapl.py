"""CPU packages (and DRAM) via Linux powercap RAPL: energy_uj, wrapping at max_energy_range_uj.

Counted zones: 'package-N' and 'dram' (DRAM is not part of the package energy). Skipped:
'core'/'uncore' (inside the package), 'psys' (the whole platform: would double count) and
'intel-rapl-mmio' zones (the same package again). No power reading: power is the counter's rate.
"""

from __future__ import annotations

import os
from pathlib import Path

from olmo.energy.base import Backend, BackendUnavailable, Counter, Device, Reading

POWERCAP = Path("/sys/class/powercap")


def powercap_root() -> Path:
    """$OLMO_POWERCAP_ROOT when the host's powercap tree is bind-mounted elsewhere (containers)."""
    return Path(os.environ.get("OLMO_POWERCAP_ROOT") or POWERCAP)


def _zones(root: Path) -> list[Path]:
    zones = []
    for z in sorted(root.glob("*rapl:*")):
        name_file = z / "name"
        if "mmio" in z.name or not name_file.is_file():  # intel-rapl-mmio repeats the package
            continue
        name = name_file.read_text().strip()
        if name.startswith("package") or name == "dram":
            zones.append(z)
    return zones


class RaplBackend(Backend):
    name = "rapl"

    def __init__(self, root: Path | None = None):
        root = Path(root) if root is not None else powercap_root()
        if not root.is_dir():
            raise BackendUnavailable(f"RAPL: {root} does not exist (no powercap driver)")
        zones = _zones(root)
        if not zones:
            raise BackendUnavailable(f"RAPL: no package/dram zone under {root}")
        self.files, self.devices, self.counters = [], [], []
        for z in zones:
            try:
                (z / "energy_uj").read_text()
                wrap = float((z / "max_energy_range_uj").read_text())
            except OSError as e:  # energy_uj is root-only on many kernels (CVE-2020-8694)
                raise BackendUnavailable(f"RAPL: cannot read {z / 'energy_uj'}: {e}") from e
            name = (z / "name").read_text().strip()
            self.files.append(z / "energy_uj")
            units = 0 if name == "dram" else 1  # DRAM is not a device of its own for device-hours
            self.devices.append(Device(f"{name}@{z.name}", {"zone": str(z), "units": units}))
            self.counters.append(Counter(scale_j=1e-6, wrap=wrap))

    def read(self) -> list[Reading]:
        out = []
        for f, counter in zip(self.files, self.counters, strict=True):
            try:
                out.append(Reading(counter.update(float(_read_raw(f))), None))
            except (OSError, ValueError):
                out.append(Reading(None, None))
        return out


def _read_raw(path: Path) -> bytes:
    """One sysfs read without Python's text layer (4× cheaper; the sampler does this often)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 64)
    finally:
        os.close(fd)
