"""NVML check on a real NVIDIA GPU: a short training run's reported energy vs an independent read.

Reads `nvmlDeviceGetTotalEnergyConsumption` (mJ) of every GPU on the node directly with pynvml
immediately before the EnergyMonitor starts its sampler and immediately after it stops (in the
same process, so both windows are the same to within milliseconds), trains on CUDA in between,
and compares the sum with energy.json's total. Goal: within 2%. The monitor's per-step sum and
its power-integration fallback are reported too.

    python bench/energy_nvml_check.py [--config configs/tiny.yaml] [--steps 300] [KEY=VALUE ...]

Needs CUDA and NVML (one process; NVML sees every GPU of the node, the monitor measures them all).
Appends a JSON line to bench/results/energy_nvml_check.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pynvml
import torch
from common import append_result, environment

from olmo.config.schema import load_config
from olmo.energy.callback import EnergyMonitor
from olmo.train.callbacks import Callback
from olmo.train.setup import build_components, default_callbacks
from olmo.train.trainer import Trainer


def total_mj() -> int:
    return sum(
        pynvml.nvmlDeviceGetTotalEnergyConsumption(pynvml.nvmlDeviceGetHandleByIndex(i))
        for i in range(pynvml.nvmlDeviceGetCount())
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
        mon = EnergyMonitor(cfg.energy, run_dir, parts.env, parts.attempt)
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
        "gpus": pynvml.nvmlDeviceGetCount(), "reference_j": ref_j, "reported_j": ours,
        "rel_error_pct": 100 * (ours - ref_j) / ref_j, "goal_pct": 2.0,
        "passed": abs(ours - ref_j) <= 0.02 * ref_j,
        "per_step_sum_j": sum(r.get("energy_j", 0.0) for r in steps),
        "duration_s": node["duration_s"], "mean_power_w": node["mean_power_w"],
        "devices": {k: {f: v.get(f) for f in ("energy_j", "source", "sanity")}
                    for k, v in node["devices"].items()},
        **environment(torch.device("cuda")),
    }  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/tiny.yaml")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--run-dir", help="default: a temporary directory")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. train.global_batch_size=64")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("needs a CUDA GPU (and NVML)", file=sys.stderr)
        return 2
    pynvml.nvmlInit()
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="nvml-check-")) / "run"
    rec = run(args, run_dir)
    print(json.dumps(rec, indent=1))
    print(f"results → {append_result('energy_nvml_check', rec)}")
    return 0 if rec["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
