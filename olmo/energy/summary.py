"""RUN_DIR/energy.json: one segment per attempt, totals over all of them (kWh, J/token, CO2e)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from olmo.energy.store import read_attempts
from olmo.fsutil import atomic_write_json

J_PER_KWH = 3.6e6


def _device_count(node: dict[str, Any]) -> int:
    """Devices a node's measurement covers (an MI250X package counts as its two GCDs)."""
    return sum(d.get("units", 1) for d in (node.get("devices") or {}).values())


def segment(entry: dict[str, Any]) -> dict[str, Any]:
    """One attempt: its job record (steps, tokens) and every node's measurement."""
    job = entry["job"] or {}
    nodes, unavailable = {}, {}
    for name, n in entry["nodes"].items():
        if n.get("backend") == "unavailable":
            unavailable[name] = n.get("reasons", {})
        nodes[name] = {k: n.get(k) for k in ("backend", "energy_j", "duration_s", "mean_power_w",
                                             "peak_power_w", "samples", "devices")}  # fmt: skip
    measured = [n for n in nodes.values() if n["backend"] != "unavailable"]
    energy = sum(n["energy_j"] or 0.0 for n in measured) if measured else None
    duration = max([n["duration_s"] or 0.0 for n in nodes.values()], default=0.0)
    return {
        "attempt": entry["attempt"],
        "status": job.get("status", "unknown (rank 0 wrote no job record)"),
        "start_time": job.get("start_time"),
        "end_time": job.get("end_time"),
        "duration_s": duration,
        "first_step": job.get("first_step"),
        "last_step": job.get("last_step"),
        "tokens": job.get("tokens", 0),
        "world_size": job.get("world_size"),
        "energy_j": energy,
        "complete": bool(nodes) and not unavailable and len(nodes) == job.get("nodes", len(nodes)),
        "mean_power_w": energy / duration if energy is not None and duration > 0 else None,
        "device_hours": sum(_device_count(n) * (n["duration_s"] or 0) for n in measured) / 3600,
        "nodes": nodes,
        "unavailable": unavailable,
    }


def totals(segments: list[dict[str, Any]], pue: float, carbon_g_per_kwh: float) -> dict[str, Any]:
    measured = [s for s in segments if s["energy_j"] is not None]
    energy = sum(s["energy_j"] for s in measured) if measured else None
    tokens = sum(s["tokens"] for s in measured)  # J/token over the attempts that measured
    duration = sum(s["duration_s"] for s in measured)
    kwh = energy / J_PER_KWH if energy is not None else None
    node_peaks = [n["peak_power_w"] or 0 for s in measured for n in s["nodes"].values()]
    return {
        "energy_j": energy,
        "kwh": kwh,
        "facility_kwh": kwh * pue if kwh is not None else None,
        "co2e_kg": kwh * pue * carbon_g_per_kwh / 1000 if kwh is not None else None,
        "tokens": sum(s["tokens"] for s in segments),
        "measured_tokens": tokens,
        "j_per_token": energy / tokens if energy is not None and tokens else None,
        "duration_s": duration,
        "mean_power_w": energy / duration if energy is not None and duration > 0 else None,
        "peak_node_power_w": max(node_peaks, default=None),
        "device_hours": sum(s["device_hours"] for s in measured),
        "segments": len(segments),
        "complete": bool(segments) and all(s["complete"] for s in segments),
    }


def build(run_dir: Path) -> dict[str, Any]:
    """energy.json's content from RUN_DIR/energy/ (the newest attempt's PUE/intensity apply)."""
    entries = read_attempts(run_dir)
    segments = [segment(e) for e in entries]
    jobs = [e["job"] for e in entries if e["job"]]
    settings = jobs[-1].get("settings", {}) if jobs else {}
    pue = settings.get("pue", 1.1)
    carbon = settings.get("carbon_intensity_g_per_kwh", 475.0)
    backends = {n: s["nodes"][n]["backend"] for s in segments[-1:] for n in s["nodes"]}
    unavailable = {n: r for s in segments[-1:] for n, r in s["unavailable"].items()}
    return {
        "measured": any(s["energy_j"] is not None for s in segments),
        "backends": backends,
        "unavailable": unavailable,
        "pue": pue,
        "carbon_intensity_g_per_kwh": carbon,
        "settings": settings,
        "totals": totals(segments, pue, carbon),
        "segments": segments,
    }


def write_energy_json(run_dir: Path) -> dict[str, Any]:
    data = build(run_dir)
    atomic_write_json(Path(run_dir) / "energy.json", data)
    return data
