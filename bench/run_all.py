"""`make bench`: the CPU benchmarks, one after another, then the README table they feed.

Each runs as its own process and appends its records to bench/results/*.jsonl (device, torch,
commit, load average); a failing one is reported and the rest still run (exit 1 at the end).
OLMo-core's comparison runs when `olmo_core` is importable (`pip install '.[bench]'` with torch
pinned), else it is reported skipped. Not here: the GPU parts (bench/gpu_all.sh), the local-SLURM
restart timing (bench/slurm_restart.py, needs root) and the parity runs (bench/parity_cpu.sh).

    python bench/run_all.py [--only NAME,...] [--list]     (each bench's docstring gives its size)

Afterwards `python bench/table.py --write` puts the new numbers into README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
# name → command (from the repo root)
BENCHES: dict[str, list[str]] = {
    "data": [PY, "bench/bench_data.py"],
    "checkpoint": [PY, "bench/bench_checkpoint.py"],
    "energy": [PY, "bench/bench_energy.py"],
    "throughput": [PY, "-m", "olmo", "bench", "configs/tiny.yaml",
                   "--out", "bench/results/throughput.jsonl"],
    "model_vs_hf": [PY, "bench/bench_model_vs_hf.py", "--configs", "tiny,100m"],
    "olmo_core": [PY, "bench/bench_olmo_core.py", "--configs", "olmo2-30m"],
}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated: " + ",".join(BENCHES))
    ap.add_argument("--list", action="store_true", help="print the commands and stop")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHES)}")
    if args.list:
        for n in names:
            print(f"{n}: {' '.join(BENCHES[n])}")
        return 0
    outcome: dict[str, str] = {}
    for name in names:
        if name == "olmo_core" and importlib.util.find_spec("olmo_core") is None:
            outcome[name] = "skipped: olmo_core not installed (pip install '.[bench]')"
            continue
        print(f"== {name}: {' '.join(BENCHES[name])}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.call(BENCHES[name], cwd=REPO)
        outcome[name] = (
            f"{'ok' if rc == 0 else f'FAILED (exit {rc})'} in {time.monotonic() - t0:.0f} s"
        )
    print("\n".join(f"{n:12} {o}" for n, o in outcome.items()))
    subprocess.call([PY, "bench/table.py"], cwd=REPO)
    return 1 if any("FAILED" in o for o in outcome.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
