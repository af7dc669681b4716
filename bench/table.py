"""The README's benchmark table, generated from bench/results/*.jsonl (newest record per row).

    python bench/table.py           # print the table
    python bench/table.py --write   # replace the table between README's bench-table markers

tests/bench/test_table.py keeps README equal to this script's output.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
BEGIN, END = "<!-- bench-table:begin -->", "<!-- bench-table:end -->"
Row = tuple[str, str, str]  # what, result, goal


def _model_vs(other: str, key: str) -> Callable[[dict[str, Any]], Row]:
    def row(r: dict[str, Any]) -> Row:
        m, (b, t) = r["model"], r["batch"]
        what = f"train step vs {other}, `{r['config']}` ({m['params'] / 1e6:.0f}M, batch {b}×{t}"
        what += ")" if r.get("precision", "fp32") == "fp32" else f", {r['precision']})"
        res = f"{r['ours_tokens_per_s']:g} vs {r[key]:g} tok/s: **{r['ratio']}×**"
        res += f" (windows {r['ratio_min_max'][0]}–{r['ratio_min_max'][1]})"
        if "ratio_ceiling" in r:
            res += f"; ceiling at our GEMM time {r['ratio_ceiling']}×"
        return what, res, f"≥ {r['goal_ratio']}×"

    return row


def _throughput(r: dict[str, Any]) -> Row:
    m = r["model"]
    what = (
        f"`olmo bench {r['config']}` ({m['params'] / 1e6:.0f}M, seq {r['seq_len']}, "
        f"{r['precision']}, {r['world_size']} rank(s){', compiled' if r['compile'] else ''})"
    )
    res = f"{r['tokens_per_s_per_device']:,.0f} tok/s/device, MFU {100 * r['mfu']:.1f}% "
    res += f"({r['peak_source']}), peak mem {r['peak_memory']['gib']:.1f} GiB"
    return what, res, "GPU OLMo-1B: ≥ 65,000 tok/s" if "cpu" not in r["device"] else "—"


def _checkpoint(r: dict[str, Any]) -> Row:
    what = f"checkpoint save / load / async-blocking, {r['params'] / 1e6:.0f}M params"
    res = f"{r['save_s']} / {r['load_s']} / {r['async_blocking_s']} s"
    if "disk_write_GB_per_s" not in r:  # records before the disk was measured beside them
        return what, res, "—"
    what += f" ({r['checkpoint_bytes'] / 1e9:.2f} GB)"
    res += (
        f"; blocking **{r['async_blocking_s_per_GB']} s/GB** (first save "
        f"{r['async_first_blocking_s']} s); sync {r['save_MB_per_s'] / 1e3:.2f} GB/s = "
        f"**{100 * r['sync_fraction_of_disk']:.0f}%** of dd's {r['disk_write_GB_per_s']} GB/s"
    )
    goal = f"async ≤ {r['goal_async_s_per_GB']} s/GB; sync ≥ {100 * r['goal_sync_fraction']:.0f}% of dd"
    return what, res, goal


def _data(r: dict[str, Any]) -> Row:
    if r["bench"] == "prepare_data":
        return f"tokenize + pack ({r['corpus']})", f"{r['tokens_per_s']:,.0f} tok/s", "—"
    b, t = r["global_batch"]
    what = (
        f"data loader, global batches {b}×{t} from a {r['dataset_tokens'] / 1e6:.0f}M-token memmap"
    )
    goal = f"≥ {r['goal_tokens_per_s'] / 1e6:.0f}M tok/s"
    return what, f"{r['tokens_per_s'] / 1e6:.0f}M tok/s", goal


def _energy(r: dict[str, Any]) -> Row:
    """The monitor's own measured cost (sampler CPU + hooks) is an estimate of what it takes from
    training; the A/B median (with and without it) is shown beside it with its window spread."""
    what = f"energy monitor overhead ({r['backend']}, {r['devices']} zones, {r['interval_ms']} ms)"
    result = f"{r['overhead_pct']:.2f}% of step time (estimate: sampler CPU + hooks)"
    if r.get("ab_overhead_pct_windows"):
        w = r["ab_overhead_pct_windows"]
        result += f"; A/B median {r['ab_overhead_pct_median']:+.1f}% (windows {min(w):+.1f}…{max(w):+.1f}%)"
    return what, result, f"< {r['goal_pct']}%"


def _energy_check(r: dict[str, Any]) -> Row:
    what = f"energy.json vs independent NVML counter read ({r['steps']} steps, {r['gpus']} GPU(s))"
    if str(r.get("nvml", "")).startswith("fake"):
        what += ", fake NVML: plumbing only"
    res = f"{r['reported_j']:,.0f} vs {r['reference_j']:,.0f} J: {r['rel_error_pct']:+.2f}%"
    return what, res, f"within {r['goal_pct']:g}%"


def _resume(r: dict[str, Any]) -> Row:
    what = (
        f"SIGKILL at step {r['killed_after_step']} + resume vs uninterrupted "
        f"({r['steps']} steps, {r['backend']}, 1 rank)"
    )
    if not r["passed"] or "bitwise" not in r:
        return what, f"**FAILED** (exit codes {r['exit_codes']})", "bitwise"
    if r["bitwise"]:
        return what, "bitwise equal (losses, weights)", "bitwise"
    res = f"loss max rel {r['loss_max_rel_diff']:.1e}, weights {r['weights_max_rel_l2_diff']:.1e}"
    return what, res + f" (nondeterministic: {', '.join(r['nondeterministic_ops'])})", "bitwise"


def _restart(r: dict[str, Any]) -> Row:
    what = f"SLURM node hard-kill → first resumed step ({r['nodes']} nodes, local cluster)"
    result = f"{r['kill_to_first_resumed_step_s']} s"
    parts = r.get("resume_breakdown_s")
    if parts:  # the requeued attempt's own start-up account (logbook `resume`)
        shown = ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v}" for k, v in parts.items())
        result += f"; its process start → first step {r['seconds_to_first_step']} s ({shown})"
    return what, result, f"< {r['goal_s']} s"


# file → (row key fields, formatter)
FORMATS: dict[str, tuple[tuple[str, ...], Callable[[dict[str, Any]], Row]]] = {
    "throughput": (("config", "overrides", "device", "world_size"), _throughput),
    "model_vs_hf": (("config",), _model_vs("transformers OlmoForCausalLM", "hf_tokens_per_s")),
    "olmo_core": (("config",), _model_vs("OLMo-core", "olmo_core_tokens_per_s")),
    "data_loader": (("bench",), _data),
    "checkpoint": (("size",), _checkpoint),
    "energy_overhead": (("backend",), _energy),
    "energy_nvml_check": (("device", "nvml"), _energy_check),
    "gpu_resume": (("device", "backend"), _resume),
    "slurm_restart": ((), _restart),
}


def _where(r: dict[str, Any]) -> str:
    load = r.get("load_avg")
    date = str(r.get("date") or r.get("time") or "")[:10]
    return (
        f"{r.get('device') or r.get('machine', '?')}"
        + (f", load {load[0]}" if load else "")
        + (
            f", {r['git_commit'][:7]}{'+dirty' if 'dirty' in r['git_commit'] else ''}"
            if r.get("git_commit")
            else ""
        )
        + (f", {date}" if date else "")
    )


def rows() -> list[list[str]]:
    out = []
    for name, (key, fmt) in FORMATS.items():
        path = RESULTS / f"{name}.jsonl"
        if not path.exists():
            continue
        newest: dict[str, dict[str, Any]] = {}
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            newest[json.dumps([rec.get(k) for k in key])] = rec  # later lines win
        for rec in newest.values():
            out.append([*fmt(rec), _where(rec)])
    return out


def render() -> str:
    lines = ["| benchmark | result | goal | measured on |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows()]
    return "\n".join(lines)


def readme_with_table(readme: str) -> str:
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{render()}\n{END}{tail}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="update README.md in place")
    args = ap.parse_args()
    if not args.write:
        print(render())
        return
    readme = REPO / "README.md"
    text = readme_with_table(readme.read_text())
    tmp = readme.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(readme)


if __name__ == "__main__":
    main()
