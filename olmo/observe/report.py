"""`olmo report RUN_DIR`: PNG plots and a markdown summary of a run (finished or still going)."""

from __future__ import annotations

import datetime
import statistics
from pathlib import Path
from typing import Any

from olmo.fsutil import atomic_write_json, atomic_write_text
from olmo.inputs import check_output
from olmo.logbook import LOGBOOK
from olmo.observe import logbook_report, plots
from olmo.observe.mfu import flops_per_token, mfu, model_config, peak_flops
from olmo.observe.rundata import RunData, is_number, load_run


def energy_total(run: RunData) -> tuple[float | None, str]:
    """Joules of the whole run: energy.json's total, else the sum of per-step `energy_j`."""
    totals = (run.energy or {}).get("totals") or {}
    if isinstance(totals.get("energy_j"), (int, float)):
        return float(totals["energy_j"]), "energy.json"
    steps, ej = run.series("energy_j")
    if steps:
        return float(sum(ej)), "sum of per-step energy_j"
    if run.energy is not None:
        return None, "not measured (see energy.json: unavailable)"
    return None, "no energy.json or per-step energy_j"


def world_size(run: RunData) -> int:
    return int(
        run.env.get("world_size")
        or (run.attempts[-1].get("world_size") if run.attempts else 1)
        or 1
    )


def _ranks_of(run: RunData, record: dict[str, Any], default: int) -> int:
    i = int(record.get("attempt", 0)) - 1
    ws = run.attempts[i].get("world_size") if 0 <= i < len(run.attempts) else None
    return int(ws) if isinstance(ws, int) and ws > 0 else default


def summarize(run: RunData) -> dict[str, Any]:
    """The numbers of the summary (also written as summary.json)."""
    recs, last = run.records, run.records[-1]
    train = run.config.get("train") or {}
    max_steps = train.get("max_steps")
    t0, t_last = run.first_time(), last.get("time")
    attempts = max([len(run.attempts)] + [int(r.get("attempt", 1)) for r in recs])
    evals = [r for r in recs if isinstance(r.get("eval_loss"), (int, float))]
    _, tps = run.series("tokens_per_s")
    energy_j, energy_src = energy_total(run)
    model = model_config(run.config)
    seq_len = (run.config.get("data") or {}).get("seq_len")
    fpt = flops_per_token(model, seq_len) if model is not None and seq_len else None
    peak, device = peak_flops(run.env)
    med_tps = statistics.median(tps) if tps else None
    return {
        "run_dir": str(run.run_dir),
        "steps": last["step"],
        "max_steps": max_steps,
        "complete": max_steps is not None and last["step"] >= max_steps,
        "tokens": last.get("tokens_seen"),
        "wall_time_s": t_last - t0 if t0 is not None and is_number(t_last) else None,
        "attempts": attempts,
        "restarts": attempts - 1,
        "final_train_loss": last.get("loss"),
        "final_eval_loss": evals[-1]["eval_loss"] if evals else None,
        "final_eval_step": evals[-1]["step"] if evals else None,
        "downstream": _last_downstream(recs),
        "energy_j": energy_j,
        "energy_source": energy_src,
        "median_tokens_per_s": med_tps,
        "params": model.num_params() if model is not None else None,
        "flops_per_token": fpt,
        "device": device,
        "world_size": world_size(run),
        "peak_flops_per_device": peak,
        "mfu": mfu(med_tps, fpt, world_size(run), peak) if med_tps and fpt else None,
        "skipped_lines": run.skipped_lines,
        **_logbook(run),
    }


def _logbook(run: RunData) -> dict[str, Any]:
    """goodput, the logbook's totals and its incidents (empty without a logbook)."""
    if not (run.run_dir / LOGBOOK).is_file():
        return {"goodput": None, "logbook": None, "incidents": []}
    book = logbook_report.summarize(run.run_dir)
    events = book.pop("events")
    return {"goodput": book["goodput"], "logbook": book, "incidents": incidents(events)}


def incidents(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events worth a mark: failures, refusals, spikes... and attempts that did not complete."""
    marked = [
        e
        for e in events
        if e["event"] in logbook_report.INCIDENTS
        or (e["event"] == "attempt_end" and e["detail"].get("reason") != "completed")
    ]
    return sorted(marked, key=lambda e: e["time"])


def _last_downstream(recs: list[dict[str, Any]]) -> dict[str, float]:
    for r in reversed(recs):
        found = {k: v for k, v in r.items() if k.startswith("downstream/")}
        if found:
            return found
    return {}


def _num(v: Any, fmt: str = ",.0f", unit: str = "") -> str:
    return "n/a" if v is None else f"{v:{fmt}}{unit}"


def _duration(s: float | None) -> str:
    return "n/a" if s is None else str(datetime.timedelta(seconds=round(s)))


def render_markdown(run: RunData, s: dict[str, Any], images: list[Path]) -> str:
    status = "complete" if s["complete"] else "in progress (or stopped early)"
    energy = f"n/a ({s['energy_source']})"
    if s["energy_j"] is not None:
        energy = f"{s['energy_j']:,.1f} J = {s['energy_j'] / 3.6e6:.4f} kWh ({s['energy_source']})"
        totals = (run.energy or {}).get("totals") or {}
        if totals.get("co2e_kg") is not None:
            energy += f", {totals['co2e_kg']:.4g} kg CO2e"
    if s["mfu"] is not None:
        mfu_text = f"{100 * s['mfu']:.1f}% of {s['peak_flops_per_device'] / 1e12:g} TFLOP/s bf16 per device"
    else:
        cpu = (run.env.get("devices") or [{}])[0].get("type") == "cpu"
        mfu_text = "n/a (CPU)" if cpu else f"n/a (no bf16 peak known for '{s['device']}')"
    ev = (
        "n/a"
        if s["final_eval_loss"] is None
        else f"{s['final_eval_loss']:.4f} (step {s['final_eval_step']})"
    )
    rows = [
        ("status", status),
        ("steps", f"{s['steps']:,} of {_num(s['max_steps'], ',')}"),
        ("tokens", _num(s["tokens"], ",")),
        ("wall time", f"{_duration(s['wall_time_s'])} (first start to last record)"),
        ("restarts", f"{s['restarts']} ({s['attempts']} attempts)"),
        ("goodput", _goodput_text(s)),
        ("energy", energy),
        ("final train loss", _num(s["final_train_loss"], ".4f") + f" (step {s['steps']})"),
        ("final eval loss", ev),
        ("tokens/s (median)", _num(s["median_tokens_per_s"], ",.1f")),
        ("MFU", mfu_text),
        (
            "model",
            f"{_num(s['params'], ',')} params, {_num(s['flops_per_token'], '.4g')} FLOPs/token, "
            f"{s['world_size']} × {s['device']}",
        ),  # fmt: skip
    ]
    rows += [(k, f"{v:.3f}") for k, v in sorted(s["downstream"].items())]
    lines = [f"# Run report: {run.run_dir.name}", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += ["", "## Attempts", "", "| attempt | started (UTC) | host | ranks | first step | last step |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    lines += _attempt_rows(run)
    lines += _incident_rows(s["incidents"])
    if s["skipped_lines"]:
        lines += ["", f"{s['skipped_lines']} incomplete line(s) of metrics.jsonl skipped."]
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in images]
    return "\n".join(lines) + "\n"


def _goodput_text(s: dict[str, Any]) -> str:
    book = s["logbook"]
    if book is None or s["goodput"] is None:
        return "n/a (no logbook.jsonl)" if book is None else "n/a"
    return (
        f"{100 * s['goodput']:.1f}% (kept steps {_duration(book['productive_s'])} of "
        f"{_duration(book['wall_s'])} in attempts; queue {_duration(book['queue_s'])}; "
        "`olmo logbook` for the causes)"
    )


def _incident_rows(events: list[dict[str, Any]]) -> list[str]:
    if not events:
        return []
    rows = ["", "## Incidents (logbook.jsonl)", "",
            "| time (UTC) | attempt | step | host | event | details |", "|---|---|---|---|---|---|"]  # fmt: skip
    for e in events:
        when = logbook_report.utc(e["time"], "%Y-%m-%d %H:%M:%S")
        details = logbook_report.details_text(e).replace("|", "/")
        step = "-" if e.get("step") is None else e["step"]
        attempt = "-" if e.get("attempt") is None else e["attempt"]
        rows.append(f"| {when} | {attempt} | {step} | {e.get('host')} | {e['event']} | {details} |")
    return rows


def _attempt_rows(run: RunData) -> list[str]:
    steps: dict[int, list[int]] = {}
    for r in run.records:
        steps.setdefault(int(r.get("attempt", 1)), []).append(r["step"])
    rows = []
    for i, a in enumerate(run.attempts, start=1):
        t = a.get("time")
        when = (
            datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            if t
            else "?"
        )
        got = steps.get(i)
        first, last = (min(got), max(got)) if got else ("-", "- (superseded or none)")
        rows.append(
            f"| {i} | {when} | {a.get('host', '?')} | {a.get('world_size', '?')} | {first} | {last} |"
        )
    return rows


def write_report(run_dir: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Write the plots, summary.md and summary.json to OUT (default RUN_DIR/report)."""
    run = load_run(run_dir)
    out = check_output(out or run.run_dir / "report", "--out", is_dir=True)
    out.mkdir(parents=True, exist_ok=True)
    s = summarize(run)
    fpt, peak = s["flops_per_token"], s["peak_flops_per_device"]
    per_step = [  # each attempt ran on its own number of ranks
        mfu(r["tokens_per_s"], fpt, _ranks_of(run, r, s["world_size"]), peak) if fpt else None
        for r in run.records
        if isinstance(r.get("tokens_per_s"), (int, float))
    ]
    images = [plots.plot_loss(run, out), plots.plot_lr(run, out),
              plots.plot_throughput(run, per_step, out), plots.plot_energy(run, out),
              plots.plot_timeline(run, out, s["incidents"], _goodput_title(s))]  # fmt: skip
    images = [p for p in images if p is not None]
    s["plots"] = [p.name for p in images]
    atomic_write_text(out / "summary.md", render_markdown(run, s, images))
    atomic_write_json(out / "summary.json", s)
    return s


def _goodput_title(s: dict[str, Any]) -> str:
    return "" if s["goodput"] is None else f"; goodput {100 * s['goodput']:.1f}%"


def _main(args) -> int:
    s = write_report(args.run_dir, args.out)
    out = Path(args.out) if args.out else Path(args.run_dir) / "report"
    print(
        f"{out / 'summary.md'}: step {s['steps']}, {s['restarts']} restart(s), plots: {', '.join(s['plots'])}"
    )
    return 0


def add_cli(subparsers) -> None:
    """Register `olmo report`."""
    p = subparsers.add_parser(
        "report",
        help="plots (loss, LR, tokens/s, MFU, power/energy, restarts) and a markdown summary of a run",
        description="Reads RUN_DIR (finished or still running) and writes PNG plots, summary.md "
        "and summary.json to --out (default RUN_DIR/report).",
    )
    p.add_argument("run_dir", help="run directory written by `olmo train`")
    p.add_argument("--out", help="output directory (default RUN_DIR/report)")
    p.set_defaults(func=_main)
