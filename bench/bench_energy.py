"""Energy monitor overhead as a share of step time (goal < 0.5%).

Trains the tiny model (tests' SMALL shape) in-process and alternates windows of steps with and
without an EnergyMonitor (sampler thread at --interval-ms, per-step hooks, per-flush
interpolation), so both see the same background load. The A/B difference on a shared 2-core box
is noisy, so the monitor's own costs are also timed directly: the fraction of wall time the
sampler thread spends on CPU reading devices and folding samples (it holds the GIL for most
of that, so this is what it can take from the training thread), plus hook time per step. Without a real sensor the backend is
RAPL over a fake powercap tree of --devices zones (the same file reads as the kernel's files).

    python bench/bench_energy.py [--windows 8] [--steps-per-window 15] [--interval-ms 100]

Appends a JSON line to bench/results/energy_overhead.jsonl.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import append_result, environment

from olmo.config.schema import load_config
from olmo.energy.callback import EnergyMonitor
from olmo.energy.choose import select_backend
from olmo.train.setup import build_components
from olmo.train.trainer import Trainer

SMALL = ["--model.d_model=64", "--model.n_layers=2", "--model.n_heads=4", "--data.seq_len=32",
         "--train.global_batch_size=8", "--train.micro_batch_size=4", "--train.log_interval=5",
         "--checkpoint.interval=100000", "--checkpoint.save_final=false", "--wandb.mode=disabled",
         "--energy.enabled=false"]  # fmt: skip


def fake_powercap(root: Path, n: int) -> Path:
    for i in range(n):
        z = root / f"intel-rapl:{i}"
        z.mkdir(parents=True)
        (z / "name").write_text(f"package-{i}\n")
        (z / "energy_uj").write_text("123456789\n")
        (z / "max_energy_range_uj").write_text("262143328850\n")
    return root


class Timed:
    """Wraps a sampler's sample(): CPU seconds (thread_time: what the sampler consumed, not
    time spent waiting for a busy core) and wall seconds spent sampling."""

    def __init__(self, sampler):
        self.inner, self.cpu, self.wall = sampler.sample, 0.0, 0.0
        sampler.sample = self  # the thread looks it up per sample

    def __call__(self):
        c0, w0 = time.thread_time(), time.perf_counter()
        out = self.inner()
        self.cpu += time.thread_time() - c0
        self.wall += time.perf_counter() - w0
        return out


def window(trainer: Trainer, steps: int, monitor: EnergyMonitor | None) -> float:
    trainer.callbacks = [monitor] if monitor else []
    if monitor:
        monitor.on_train_start(trainer)
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
        if trainer.state.step % trainer.cfg.train.log_interval == 0:
            trainer._flush()
    trainer._flush()
    return (time.perf_counter() - t0) / steps


def make_monitor(cfg, parts, run_dir: Path, args) -> tuple[EnergyMonitor, Timed]:
    mon = EnergyMonitor(cfg.energy, run_dir, parts.env, 1, select_backend(args.backend, "cpu"))
    return mon, Timed(mon.sampler)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--windows", type=int, default=8)
    p.add_argument("--steps-per-window", type=int, default=15)
    p.add_argument("--interval-ms", type=int, default=100)
    p.add_argument("--devices", type=int, default=8, help="zones of the fake powercap tree")
    p.add_argument("--backend", default="rapl")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-energy-"))
    if args.backend == "rapl" and not Path("/sys/class/powercap").is_dir():
        os.environ["OLMO_POWERCAP_ROOT"] = str(fake_powercap(tmp / "powercap", args.devices))
    cfg = load_config("configs/tiny.yaml", [*SMALL, f"--energy.interval_ms={args.interval_ms}"])
    parts = build_components(cfg, tmp / "run")
    trainer = Trainer(cfg, parts, [])
    trainer._batches = iter(parts.loader)
    window(trainer, 5, None)  # warm-up
    off, on, cpu, busy, wall, hook = [], [], 0.0, 0.0, 0.0, []
    for w in range(args.windows):
        for mode in ("off", "on") if w % 2 == 0 else ("on", "off"):
            if mode == "off":
                off.append(window(trainer, args.steps_per_window, None))
                continue
            mon, timed = make_monitor(cfg, parts, tmp / "run", args)
            t0 = time.perf_counter()
            on.append(window(trainer, args.steps_per_window, mon))
            wall += time.perf_counter() - t0
            cpu, busy = cpu + timed.cpu, busy + timed.wall
            mon.sampler.stop()
            hook.append(hook_cost(mon, trainer))
    step_s = statistics.median(off)
    one_sample = sample_cost(args.backend)
    ratios = [a / b for a, b in zip(on, off, strict=True)]
    sampler_frac = cpu / wall
    hook_s = statistics.median(hook)
    est = 100 * (sampler_frac + hook_s / step_s)
    rec = {
        "bench": "energy_overhead", "backend": mon.backend.name, "devices": len(mon.backend.devices),
        "interval_ms": args.interval_ms, "step_s": step_s,
        "ab_overhead_pct_median": 100 * (statistics.median(ratios) - 1),
        "ab_overhead_pct_windows": [round(100 * (r - 1), 2) for r in ratios],
        "sampler_cpu_pct": 100 * sampler_frac, "sampler_wall_pct": 100 * busy / wall, "hook_s_per_step": hook_s,
        "sample_cpu_us": 1e6 * one_sample,
        "sampler_cpu_pct_isolated": 100 * one_sample / (args.interval_ms / 1000),
        "overhead_pct": est, "goal_pct": 0.5, **environment(),
    }  # fmt: skip
    print(rec)
    print(f"results → {append_result('energy_overhead', rec)}")
    parts.close()


def sample_cost(backend_name: str, n: int = 2000) -> float:
    """CPU seconds of one sample (read every device + fold) on an otherwise idle thread."""
    from olmo.energy.sampler import Sampler

    s = Sampler(select_backend(backend_name, "cpu"), 1.0, 0.5, 1.0)
    c0 = time.thread_time()
    for _ in range(n):
        s.sample()
    return (time.thread_time() - c0) / n


def hook_cost(mon: EnergyMonitor, trainer: Trainer, n: int = 200) -> float:
    """Seconds per step the hooks add: post_step + 1/log_interval of a flush (with a sample)."""
    li = trainer.cfg.train.log_interval
    t0 = time.perf_counter()
    for i in range(n):
        step = 10**6 + i
        mon.post_step(trainer, step)
        if (i + 1) % li == 0:
            recs = [{"step": 10**6 + i - k} for k in reversed(range(li))]
            mon.on_metrics(trainer, recs)
    return (time.perf_counter() - t0) / n


if __name__ == "__main__":
    main()
