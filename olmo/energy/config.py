"""Config of energy measurement (`energy:` section); cluster profiles set pue and grid intensity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from olmo.errors import OlmoError


@dataclass
class EnergyConfig:
    enabled: bool = True
    """Measure the run's energy (per step in metrics.jsonl, per run in RUN_DIR/energy.json)."""
    interval_ms: int = 100
    """Sampling interval of the per-node sampler thread (counters and power), in milliseconds."""
    backend: Literal["auto", "nvml", "amdsmi", "rapl", "none"] = "auto"
    """auto = NVML on NVIDIA GPUs, AMD SMI on AMD GPUs, else RAPL (CPU packages), else none
    (energy.json then says why each backend was unavailable)."""
    pue: float = 1.1
    """Power usage effectiveness of the data centre: facility energy = IT energy × pue."""
    carbon_intensity_g_per_kwh: float = 475.0
    """Grid carbon intensity in gCO2e per kWh (the cluster profile sets the site's value)."""
    sanity_window_s: float = 0.5
    """At start, each energy counter is compared with power × time over this window; a counter
    that disagrees by more than 10× is distrusted and power is integrated instead."""
    trace_interval_s: float = 1.0
    """Power-over-time trace resolution written to RUN_DIR/energy/ (mean power per window)."""
    write_interval_s: float = 30.0
    """How often each node persists its running totals (so a killed attempt still counts)."""

    def validate(self) -> None:
        if self.interval_ms < 1:
            raise OlmoError(f"energy.interval_ms must be ≥ 1, got {self.interval_ms}")
        if self.pue < 1.0:
            raise OlmoError(f"energy.pue must be ≥ 1.0 (facility/IT energy), got {self.pue}")
        if self.carbon_intensity_g_per_kwh < 0:
            raise OlmoError("energy.carbon_intensity_g_per_kwh must be ≥ 0")
        for key in ("sanity_window_s", "trace_interval_s", "write_interval_s"):
            if getattr(self, key) <= 0:
                raise OlmoError(f"energy.{key} must be > 0, got {getattr(self, key)}")
