"""`olmo energy report`: a table (per segment, per node, totals) and a power/energy plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from olmo.energy.store import read_attempts, read_trace
from olmo.energy.summary import build
from olmo.errors import OlmoError


def _f(x: Any, fmt: str = ".1f") -> str:
    return "-" if x is None else format(x, fmt)


def load(run_dir: Path) -> dict[str, Any]:
    """Rebuilt from RUN_DIR/energy/ (includes an attempt killed before it wrote energy.json)."""
    if not (run_dir / "energy").is_dir():
        raise OlmoError(
            f"{run_dir}: no energy/ directory; is this a run dir of a run with energy.enabled?"
        )
    return build(run_dir)


def table(data: dict[str, Any]) -> str:
    lines = [f"{'attempt':>7} {'status':<10} {'steps':>11} {'tokens':>12} {'time s':>9} "
             f"{'kWh':>10} {'mean W':>9} {'J/token':>10}"]  # fmt: skip
    for s in data["segments"]:
        steps = f"{s['first_step']}-{s['last_step']}" if s["last_step"] else "-"
        jpt = s["energy_j"] / s["tokens"] if s["energy_j"] is not None and s["tokens"] else None
        kwh = s["energy_j"] / 3.6e6 if s["energy_j"] is not None else None
        lines.append(f"{s['attempt']:>7} {s['status'][:10]:<10} {steps:>11} {s['tokens']:>12} "
                     f"{s['duration_s']:>9.1f} {_f(kwh, '.6f'):>10} {_f(s['mean_power_w']):>9} "
                     f"{_f(jpt, '.4g'):>10}")  # fmt: skip
        for name, n in s["nodes"].items():
            if n["backend"] == "unavailable":
                why = "; ".join(s["unavailable"].get(name, {}).values())
                lines.append(f"{'':>9}node {name}: unavailable ({why})")
                continue
            lines.append(f"{'':>9}node {name} [{n['backend']}]: {_f(n['energy_j'])} J, mean "
                         f"{_f(n['mean_power_w'])} W, peak {_f(n['peak_power_w'])} W")  # fmt: skip
            for dev, d in (n["devices"] or {}).items():
                lines.append(f"{'':>11}{dev}: {_f(d['energy_j'])} J, mean {_f(d['mean_power_w'])} "
                             f"W, peak {_f(d['peak_power_w'])} W ({d.get('source', '?')})")  # fmt: skip
    t = data["totals"]
    lines += [
        f"total: {_f(t['kwh'], '.6f')} kWh IT, {_f(t['facility_kwh'], '.6f')} kWh with PUE "
        f"{data['pue']}, {_f(t['co2e_kg'], '.4g')} kg CO2e at {data['carbon_intensity_g_per_kwh']} "
        f"g/kWh",
        f"       {t['tokens']} tokens, {_f(t['j_per_token'], '.4g')} J/token, mean "
        f"{_f(t['mean_power_w'])} W, peak node {_f(t['peak_node_power_w'])} W, "
        f"{t['device_hours']:.4f} device-hours, {t['segments']} segment(s)"
        + ("" if t["complete"] else " (incomplete: some node or attempt unmeasured)"),
    ]
    return "\n".join(lines)


def _step_energy(run_dir: Path) -> tuple[list[int], list[float]]:
    steps, joules = [], []
    path = run_dir / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        rec = json.loads(line)
        if "energy_j" in rec:
            steps.append(rec["step"])
            joules.append(rec["energy_j"])
    return steps, joules


def plot(run_dir: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_p, ax_e) = plt.subplots(2, 1, figsize=(9, 6.5))
    t_start = None
    for a in read_attempts(run_dir):
        for node, path in sorted(a["traces"].items()):
            rows = read_trace(path)
            if not rows:
                continue
            t_start = rows[0]["time"] if t_start is None else t_start
            ax_p.plot([r["time"] - t_start for r in rows], [sum(r["w"]) for r in rows],
                      label=f"attempt {a['attempt']} {node}")  # fmt: skip
    ax_p.set(xlabel="time since start (s)", ylabel="node power (W)", title="Power over time")
    if t_start is not None:
        ax_p.legend(fontsize=7)
    steps, joules = _step_energy(run_dir)
    ax_e.plot(steps, joules, ".", markersize=3)
    ax_e.set(xlabel="step", ylabel="energy (J, all nodes)", title="Energy per step")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
