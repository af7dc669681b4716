"""NVML check on a real NVIDIA GPU: a short training run's reported energy vs an independent read.

Reads `nvmlDeviceGetTotalEnergyConsumption` (mJ) of every GPU on the node directly with pynvml
immediately before the EnergyMonitor starts its sampler and immediately after it stops (in the
same process, so both windows are the same to within milliseconds), trains on CUDA in between,
and compares the sum with energy.json's total. Goal: within 2%. The monitor's per-step sum and
its power-integration fallback are reported too.

    python bench/energy_nvml_check.py [--config configs/tiny.yaml] [--steps 300] [KEY=VALUE ...]
    python bench/energy_nvml_check.py --fake-nvml --steps 20 train.global_batch_size=4 ...

Needs CUDA and NVML (one process; NVML sees every GPU of the node, the monitor measures them all).
`--fake-nvml` (gpu_all.sh --cpu) trains on the CPU against a stand-in pynvml whose one device
draws a constant 150 W: it checks the plumbing (monitor, energy.json, this comparison), not a
counter, and its record says so (`nvml: "fake ..."`).
Appends a JSON line to bench/results/energy_nvml_check.jsonl ($OLMO_BENCH_RESULTS redirects).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import append_result, environment

from olmo.config.schema import load_config
from olmo.energy.callback import EnergyMonitor
from olmo.energy.nvml import NvmlBackend
from olmo.run import default_callbacks  # noqa: E402
from olmo.train.callbacks import Callback
from olmo.train.setup import build_components
from olmo.train.trainer import Trainer

NVML: Any = None  # the pynvml module, or FakeNvml


class FakeNvml:
    """pynvml's calls for one device that draws FAKE_W watts from the moment it is created."""

    FAKE_W = 150.0

    def __init__(self):
        self.t0 = time.monotonic()

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return "fake NVML device (CPU fallback)"

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        return int(self.FAKE_W * 1000 * (time.monotonic() - self.t0))  # mJ

    def nvmlDeviceGetPowerUsage(self, h):
        return int(self.FAKE_W * 1000)  # mW


def total_mj() -> int:
    return sum(
        NVML.nvmlDeviceGetTotalEnergyConsumption(NVML.nvmlDeviceGetHandleByIndex(i))
        for i in range(NVML.nvmlDeviceGetCount())
    )


class ReadAfter(Callback):
    """Placed right after the monitor: reads the reference once the sampler has stopped."""

    def __init__(self):
        self.mj = None

    def on_train_end(self, trainer, status):
        self.mj = total_mj()


def run(args: argparse.Namespace, run_dir: Path) -> dict:
    overrides = [f"--train.max_steps={args.steps}", "--energy.backend=nvml",
                 "--energy.enabled=false",  # the default monitor is replaced by ours below
                 "--wandb.mode=disabled", *[f"--{o.removeprefix('--')}" for o in args.overrides]]  # fmt: skip
    cfg = load_config(args.config, overrides)
    parts = build_components(cfg, run_dir)
    try:
        cbs = default_callbacks(cfg, parts)
        before = total_mj()
        cfg.energy.enabled = True
        backend = NvmlBackend(api=NVML) if args.fake_nvml else None
        mon = EnergyMonitor(cfg.energy, run_dir, parts.env, parts.attempt, backend)
        after = ReadAfter()
        cbs[:0] = [mon, after]
        Trainer(cfg, parts, cbs).fit()
    finally:
        parts.close()
    energy = json.loads((run_dir / "energy.json").read_text())
    ref_j = (after.mj - before) / 1000.0
    ours = energy["totals"]["energy_j"]
    steps = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    (node,) = energy["segments"][-1]["nodes"].values()
    return {
        "bench": "energy_nvml_check", "config": args.config, "steps": args.steps,
        "overrides": args.overrides,
        "nvml": f"fake: one {FakeNvml.FAKE_W:g} W device (plumbing only)" if args.fake_nvml
        else "pynvml", "gpus": NVML.nvmlDeviceGetCount(), "reference_j": ref_j, "reported_j": ours,
        "rel_error_pct": 100 * (ours - ref_j) / ref_j, "goal_pct": 2.0,
        "passed": abs(ours - ref_j) <= 0.02 * ref_j,
        "per_step_sum_j": sum(r.get("energy_j", 0.0) for r in steps),
        "duration_s": node["duration_s"], "mean_power_w": node["mean_power_w"],
        "devices": {k: {f: v.get(f) for f in ("energy_j", "source", "sanity")}
                    for k, v in node["devices"].items()},
        **environment(torch.device("cpu" if args.fake_nvml else "cuda")),
    }  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/tiny.yaml")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--run-dir", help="default: a temporary directory")
    p.add_argument("--fake-nvml", action="store_true", help="CPU: a stand-in NVML (plumbing only)")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. train.global_batch_size=64")
    args = p.parse_args()
    global NVML
    if args.fake_nvml:
        NVML = FakeNvml()
    else:
        if not torch.cuda.is_available():
            print("needs a CUDA GPU (and NVML); --fake-nvml checks the plumbing", file=sys.stderr)
            return 2
        import pynvml

        NVML = pynvml
    NVML.nvmlInit()
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="nvml-check-")) / "run"
    rec = run(args, run_dir)
    print(json.dumps(rec, indent=1))
    print(f"results → {append_result('energy_nvml_check', rec)}")
    return 0 if rec["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
