"""PNG plots of a run (matplotlib Figure objects rendered by Agg; no pyplot state, no display)."""

from __future__ import annotations

from itertools import accumulate
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from olmo.observe.rundata import RunData, is_number

_RESTART = {"color": "tab:red", "linestyle": "--", "linewidth": 1.0, "alpha": 0.7}
_INCIDENT = {"color": "tab:purple", "linestyle": ":", "linewidth": 1.0, "alpha": 0.8}


def _figure(rows: int = 1) -> tuple[Figure, list[Any]]:
    fig = Figure(figsize=(8, 3.2 * rows), layout="constrained")
    axes = [fig.add_subplot(rows, 1, i + 1) for i in range(rows)]
    return fig, axes


def _mark_restarts(ax: Any, run: RunData) -> None:
    """Dashed line at the first step of every attempt after the first (where it resumed)."""
    for i, (attempt, step) in enumerate(sorted(run.attempt_first_steps().items())):
        if i == 0:
            continue
        ax.axvline(step, **_RESTART, label="restart" if i == 1 else None)
        ax.annotate(f"attempt {attempt}", (step, 1), xycoords=("data", "axes fraction"),
                    xytext=(3, -12), textcoords="offset points", fontsize=7, color="tab:red")  # fmt: skip


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    return path


def plot_loss(run: RunData, out: Path) -> Path:
    fig, (ax,) = _figure()
    ax.plot(*run.series("loss"), label="train", linewidth=1)
    steps, ev = run.series("eval_loss")
    if steps:
        ax.plot(steps, ev, "o-", label="eval (held out)", markersize=4)
    _mark_restarts(ax, run)
    ax.set(xlabel="step", ylabel="loss (nats/token)", title="Loss")
    ax.legend()
    return _save(fig, out / "loss.png")


def plot_lr(run: RunData, out: Path) -> Path:
    fig, (ax,) = _figure()
    ax.plot(*run.series("lr"), linewidth=1)
    _mark_restarts(ax, run)
    ax.set(xlabel="step", ylabel="learning rate", title="Learning rate")
    return _save(fig, out / "lr.png")


def plot_throughput(run: RunData, mfu_per_step: list[float | None], out: Path) -> Path:
    fig, (ax, ax2) = _figure(2)
    steps, tps = run.series("tokens_per_s")
    ax.plot(steps, tps, linewidth=1)
    ax.set(ylabel="tokens/s (all ranks)", title="Throughput")
    pts = [(s, 100 * m) for s, m in zip(steps, mfu_per_step, strict=True) if m is not None]
    if pts:
        ax2.plot([s for s, _ in pts], [m for _, m in pts], linewidth=1, color="tab:green")
        ax2.set(ylabel="MFU (% of bf16 peak)")
    else:
        ax2.text(0.5, 0.5, "MFU n/a: no bf16 peak FLOP/s known for this device (CPU?)",
                 ha="center", va="center", transform=ax2.transAxes)  # fmt: skip
        ax2.set_axis_off()
    ax2.set(xlabel="step")
    for a in (ax, ax2) if pts else (ax,):  # no markers on the empty MFU panel
        _mark_restarts(a, run)
    return _save(fig, out / "throughput.png")


def power_keys(run: RunData) -> list[str]:
    keys = {k for r in run.records for k in r if k.startswith("power")}
    return sorted(k for k in keys if run.series(k)[0])


def plot_energy(run: RunData, out: Path) -> Path | None:
    """Power per step and cumulative energy (from per-step `energy_j`); None without such data."""
    pkeys, (esteps, ej) = power_keys(run), run.series("energy_j")
    if not pkeys and not esteps:
        return None
    fig, (ax, ax2) = _figure(2)
    for k in pkeys:
        ax.plot(*run.series(k), linewidth=1, label=k)
    if pkeys:
        ax.legend()
    ax.set(ylabel="power (W)", title="Power and energy")
    if esteps:
        ax2.plot(esteps, [j / 3.6e6 for j in accumulate(ej)], linewidth=1, color="tab:orange")
    ax2.set(xlabel="step", ylabel="cumulative energy (kWh)")
    for a in (ax, ax2):
        _mark_restarts(a, run)
    return _save(fig, out / "energy.png")


def _time_unit(span_s: float) -> tuple[float, str]:
    if span_s > 3 * 3600:
        return 3600.0, "h"
    return (60.0, "min") if span_s > 180 else (1.0, "s")


def timeline_points(run: RunData) -> tuple[float, dict[int, list[tuple[float, int, float]]]]:
    """(t0, attempt → [(seconds since t0, step, loss)]): every step at its own `time`."""
    t0 = run.first_time() or 0.0
    points: dict[int, list[tuple[float, int, float]]] = {}
    for r in run.records:
        if is_number(r.get("time")):
            loss = r["loss"] if is_number(r.get("loss")) else float("nan")
            points.setdefault(int(r.get("attempt", 1)), []).append(
                (r["time"] - t0, r["step"], loss)
            )
    return t0, points


def incident_marks(t0: float, incidents: list[dict[str, Any]]) -> list[tuple[float, str]]:
    """(seconds since t0, label) of each logbook incident, as marked on the timeline."""
    marks = []
    for ev in incidents:
        why = ev["detail"].get("reason") or ev["detail"].get("type")
        marks.append((ev["time"] - t0, ev["event"] + (f": {why}" if why else "")))
    return marks


def _mark_incidents(axes: list[Any], marks: list[tuple[float, str]], scale: float) -> None:
    for i, (t, label) in enumerate(marks):
        for a in axes:
            a.axvline(t / scale, **_INCIDENT, label="incident" if i == 0 and a is axes[0] else None)
        axes[0].annotate(label, (t / scale, 0), xycoords=("data", "axes fraction"), rotation=90,
                         xytext=(2, 3), textcoords="offset points", fontsize=6, color="tab:purple")  # fmt: skip


def plot_timeline(
    run: RunData, out: Path, incidents: list[dict[str, Any]] | None = None, title: str = ""
) -> Path:
    """Steps and loss against wall-clock time, each attempt its own segment, restarts marked,
    and the logbook's incidents (`incidents`: its events) as dotted lines with their names."""
    t0, points = timeline_points(run)
    starts = run.start_times()
    span = max((t for pts in points.values() for t, _, _ in pts), default=0.0)
    scale, unit = _time_unit(span)
    fig, (ax, ax2) = _figure(2)
    for attempt, pts in sorted(points.items()):
        t = [p[0] / scale for p in pts]
        ax.plot(t, [p[1] for p in pts], ".-", markersize=3, label=f"attempt {attempt}")
        ax2.plot(t, [p[2] for p in pts], linewidth=1)
    for i, s in enumerate(starts[1:]):
        for a in (ax, ax2):
            a.axvline((s - t0) / scale, **_RESTART, label="restart" if i == 0 and a is ax else None)
    _mark_incidents([ax, ax2], incident_marks(t0, incidents or []), scale)
    ax.set(ylabel="step", title="Progress over time (segments = attempts)" + title)
    ax.legend(fontsize=7)
    ax2.set(xlabel=f"wall-clock time since the first start ({unit})", ylabel="train loss")
    return _save(fig, out / "timeline.png")
