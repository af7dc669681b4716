"""Shared benchmark helpers: what ran where (device, versions, commit, load) and result files."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(os.environ.get("OLMO_BENCH_RESULTS") or REPO / "bench" / "results")
"""Where results go; $OLMO_BENCH_RESULTS redirects them (gpu_all.sh --cpu, tests)."""


def device_name(device: torch.device | None = None) -> str:
    """ "cpu (N cores)" (N = torch threads) or the accelerator's name."""
    device = device or torch.device("cpu")
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} cores)"


def git_commit() -> str:
    """Short commit of the working tree, with "+dirty" when tracked files differ from it.

    Where the tree is a copy without .git (a lent GPU machine), $OLMO_GIT_COMMIT (the commit
    the copy was made from, as `olmo env` also reads it), else "unknown".
    """
    if os.environ.get("OLMO_GIT_COMMIT") or not (REPO / ".git").exists():
        return os.environ.get("OLMO_GIT_COMMIT") or "unknown"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "diff", "--quiet", "HEAD", "--", "olmo", "bench", ":!bench/results"], cwd=REPO
        ).returncode
    except OSError:
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def environment(device: torch.device | None = None) -> dict[str, Any]:
    """Fields every result carries."""
    return {
        "device": device_name(device),
        "cpu": platform.machine(),
        "torch": torch.__version__,
        "git_commit": git_commit(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def append_result(name: str, record: dict[str, Any]) -> Path:
    """Append one JSON line to bench/results/NAME.jsonl."""
    path = RESULTS_DIR / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
    return path


def interleaved_windows(
    steps: dict[str, Callable[[], None]],
    windows: int,
    steps_per_window: int,
    warmup: int,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, list[float]]:
    """Seconds per step of each callable, per window; the order alternates between windows.

    Interleaving exposes every contender to the same background load, so per-window ratios
    stay meaningful on a shared machine. `sync` waits for queued device work (CUDA: every
    window starts and ends on an idle device).
    """
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    names = list(steps)
    out: dict[str, list[float]] = {n: [] for n in names}
    for w in range(windows):
        for name in names if w % 2 == 0 else reversed(names):
            sync()
            t0 = time.perf_counter()
            for _ in range(steps_per_window):
                steps[name]()
            sync()
            out[name].append((time.perf_counter() - t0) / steps_per_window)
    return out


GEMM_OPS = {"aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm"}


def gemm_seconds(step: Callable[[], None], steps: int = 2) -> dict[str, float]:
    """Profiled steps: seconds per step, and of those the seconds in GEMMs and in attention.

    The GEMM + attention time is the floor of any implementation running the same kernels;
    both shares come from the same steps, so their quotient is stable on a noisy machine.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        total = time.perf_counter() - t0
    gemm = attention = 0.0
    for ev in prof.key_averages():
        if ev.key in GEMM_OPS:
            gemm += ev.self_cpu_time_total / 1e6
        elif "scaled_dot_product" in ev.key:
            attention += ev.self_cpu_time_total / 1e6
    return {"step": total / steps, "gemm": gemm / steps, "attention": attention / steps}


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def make_step(model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
    """One training step as the loop does it (olmo.train.step): backward, clip at 1.0, fused AdamW."""
    from olmo.train.config import OptimConfig
    from olmo.train.optim import build_optimizer
    from olmo.train.step import clip_gradients, optimizer_step

    cfg = OptimConfig()
    optim = build_optimizer(model, cfg)

    def step() -> None:
        loss_fn().backward()
        optimizer_step(optim, clip_gradients(model, cfg.grad_clip), cfg.fused)

    return step


def compare_steps(
    name: str,
    losses: dict[str, Callable[[], torch.Tensor]],
    models: dict[str, torch.nn.Module],
    n_tokens: int,
    timing: tuple[int, int, int],
    check: dict[str, Callable[[], torch.Tensor]] | None = None,
    sync: Callable[[], None] = lambda: None,
) -> tuple[dict[str, Callable[[], None]], dict[str, Any]]:
    """Ours vs one other model: equal losses checked, interleaved windows timed.

    losses/models: {"ours": ..., OTHER: ...}; timing: (windows, steps per window, warm-up).
    check: the losses compared (default: `losses`; e.g. fp32 ones when the steps run in bf16).
    Returns the step callables and the record fields both benches share.
    """
    with torch.no_grad():
        ours_loss, other_loss = (fn().item() for fn in (check or losses).values())
    loss_diff = abs(ours_loss - other_loss)
    if loss_diff > 1e-4:
        raise SystemExit(f"{name}: losses differ by {loss_diff}; the models are not the same")
    steps = {k: make_step(models[k], fn) for k, fn in losses.items()}
    windows, steps_per_window, warmup = timing
    times = interleaved_windows(steps, windows, steps_per_window, warmup, sync)
    ours_t, other_t = times.values()
    ratios = [o2 / o1 for o1, o2 in zip(ours_t, other_t, strict=True)]
    fields = {f"{k}_tokens_per_s": round(n_tokens / median(v), 1) for k, v in times.items()} | {
        "ratio": round(median(ratios), 3),
        "ratio_min_max": [round(min(ratios), 3), round(max(ratios), 3)],
        "window_s": {k: [round(t, 4) for t in v] for k, v in times.items()},
        "windows": windows,
        "steps_per_window": steps_per_window,
        "initial_loss_diff": loss_diff,
    }
    return steps, fields


def comparison_main(
    description: str,
    configs: dict[str, Any],
    default: str,
    bench_config: Callable[..., dict[str, Any]],
    other: str,
    result_name: str,
    small: str,
    extra: Callable[[], dict[str, Any]] = dict,
    device_flags: bool = False,
) -> None:
    """CLI of an ours-vs-`other` step benchmark: one record per config, printed and appended.

    device_flags: also --device, --dtype, --batch and --seq-len, passed to bench_config as
    keywords (device, dtype, batch, seq_len; None = the config's own batch and length).
    """
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--configs", default=default, help="comma-separated: " + ",".join(configs))
    ap.add_argument("--windows", type=int, default=7)
    ap.add_argument(
        "--steps-per-window", type=int, default=None, help=f"default: {small} 3, else 1"
    )
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    if device_flags:
        ap.add_argument("--device", default="cpu", help="cpu or cuda")
        ap.add_argument(
            "--dtype", default="fp32", choices=["fp32", "bf16"], help="bf16: autocast, fp32 master"
        )
        ap.add_argument("--batch", type=int, help="instances per step (default: the config's)")
        ap.add_argument("--seq-len", type=int, help="tokens per instance (default: the config's)")
    ap.add_argument("--no-record", action="store_true", help="print only")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    key = other.lower().replace("-", "_")
    device = torch.device(args.device if device_flags else "cpu")
    kw = (
        {"device": device, "dtype": args.dtype, "batch": args.batch, "seq_len": args.seq_len}
        if device_flags
        else {}
    )
    for name in args.configs.split(","):
        spw = args.steps_per_window or (3 if name == small else 1)
        rec = bench_config(name, args.windows, spw, args.warmup, **kw)
        rec |= environment(device) | extra()
        print(
            f"{name}: ours {rec['ours_tokens_per_s']:.0f} tok/s, {other} "
            f"{rec[f'{key}_tokens_per_s']:.0f} tok/s, ratio {rec['ratio']} "
            f"(windows {rec['ratio_min_max']}), load {rec['load_avg']}, {rec['device']}"
        )
        if not args.no_record:
            print(f"results → {append_result(result_name, rec)}")


if __name__ == "__main__":
    # `python bench/common.py [cpu|cuda]`: the fields every result carries, as one JSON object
    # (bench/gpu_all.sh reads them once and stamps its per-part records with them).
    import sys

    print(json.dumps(environment(torch.device(sys.argv[1] if len(sys.argv) > 1 else "cpu"))))
