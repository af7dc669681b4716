"""Checkpoint save / load / async-blocking time vs model size, through the real `Checkpointer`.

For each size: the OLMo Transformer and AdamW (state filled by one step on random gradients),
then on a 1-rank gloo group (as `olmo train` runs on one CPU process):
- disk_write_GB_per_s: the disk's sequential write bandwidth in the same run, `dd` of as many
  bytes as the checkpoint into the same directory with `conv=fdatasync`;
- save_s: synchronous `Checkpointer.save` (DCP write + fsync, crc32 of every file, marker,
  rename); sync_fraction_of_disk: its throughput ÷ the dd bandwidth (goal ≥ 0.6);
- verify_s / load_s: `find_resume_point` (checksums) and `Checkpointer.load` (DCP read + set);
- async_blocking_s: how long an async `save` keeps training waiting at a run's later saves (the
  copy into the host buffer the first save allocated; goal ≤ 0.5 s per GB of checkpoint),
  async_first_blocking_s: the first save's (allocation + copy), async_total_s: blocking + the
  background write until `wait()` sees it committed.
Each figure is the best of `--repeats`; the machine is shared, so load averages are recorded.

    python bench/bench_checkpoint.py [--sizes small,medium,large] [--repeats 2] [--dir DIR]

Results are printed and appended as JSON lines to bench/results/checkpoint.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
from common import RESULTS_DIR, environment

from olmo.checkpoint.checkpointer import Checkpointer
from olmo.checkpoint.config import CheckpointConfig
from olmo.model import ModelConfig, build_model

RESULTS = RESULTS_DIR / "checkpoint.jsonl"
SIZES = {  # vocab 50,280 → 50,304 rows; tied embeddings
    "small": dict(d_model=192, n_layers=2, n_heads=3),  # ~10.6M
    "medium": dict(d_model=768, n_layers=8, n_heads=12),  # ~95M
    "large": dict(d_model=1024, n_layers=20, n_heads=16),  # ~303M
}


def _model_and_optim(size: str):
    cfg = ModelConfig(vocab_size=50280, max_seq_len=2048, **SIZES[size])
    model = build_model(cfg, seed=0)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    optim.step()
    optim.zero_grad(set_to_none=True)
    return cfg, model, optim


def _time_save(ckpt: Checkpointer, step: int, model, optim) -> tuple[float, float]:
    """(seconds save() blocked, seconds until committed) for one save of `step`."""
    t0 = time.perf_counter()
    ckpt.save(step, model, optim, {"train_state": {"step": step}, "loader": {}})
    blocked = time.perf_counter() - t0
    ckpt.wait()
    return blocked, time.perf_counter() - t0


def _checkpointer(root: Path, async_save: bool) -> Checkpointer:
    shutil.rmtree(root, ignore_errors=True)
    return Checkpointer(root, CheckpointConfig(async_save=async_save, keep_last=1), 0, 1, {})


def _dd_seconds(workdir: Path, nbytes: int) -> float:
    """Seconds for dd to write `nbytes` (in 16 MiB blocks) to a new file and fdatasync it."""
    out = workdir / "dd.bin"
    t0 = time.perf_counter()
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={out}", "bs=16M", f"count={max(1, nbytes >> 24)}"]
        + ["conv=fdatasync"],
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - t0
    out.unlink()
    return seconds


def _time_load(root: Path, model, optim) -> tuple[float, float]:
    ckpt = Checkpointer(root, CheckpointConfig(), 0, 1, {})
    t0 = time.perf_counter()
    path = ckpt.find_resume_point()
    verified = time.perf_counter() - t0
    assert path is not None and path.name == "step1", path
    ckpt.load(path, model, optim)
    return verified, time.perf_counter() - t0


def bench_size(size: str, repeats: int, workdir: Path) -> dict:
    cfg, model, optim = _model_and_optim(size)
    root = workdir / size
    saves, asyncs, loads, dds = [], [], [], []
    # one async Checkpointer for the run, as in training: its first save allocates the buffer
    runs = _checkpointer(workdir / f"{size}-async", async_save=True)
    first = _time_save(runs, 1, model, optim)
    for r in range(repeats):
        asyncs.append(_time_save(runs, r + 2, model, optim))
        saves.append(_time_save(_checkpointer(root, async_save=False), 1, model, optim))
        loads.append(_time_load(root, model, optim))
        nbytes = sum(f.stat().st_size for f in (root / "step1").iterdir())
        dds.append(_dd_seconds(workdir, nbytes))
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(workdir / f"{size}-async", ignore_errors=True)
    gb, save_s, dd_s = nbytes / 1e9, min(s[1] for s in saves), min(dds)
    dd_bytes = max(1, nbytes >> 24) << 24
    blocking = min(b for b, _ in asyncs)
    return {
        "size": size,
        "params": cfg.num_params(),
        "model": SIZES[size],
        "checkpoint_bytes": nbytes,
        "save_s": round(save_s, 3),
        "verify_s": round(min(v for v, _ in loads), 3),
        "load_s": round(min(tot for _, tot in loads), 3),
        "async_blocking_s": round(blocking, 3),
        "async_blocking_s_per_GB": round(blocking / gb, 3),
        "async_first_blocking_s": round(first[0], 3),
        "async_total_s": round(min(t for _, t in asyncs), 3),
        "save_MB_per_s": round(nbytes / 1e6 / save_s, 1),
        "disk_write_GB_per_s": round(dd_bytes / 1e9 / dd_s, 3),
        "sync_fraction_of_disk": round((nbytes / save_s) / (dd_bytes / dd_s), 3),
        "goal_async_s_per_GB": 0.5,
        "goal_sync_fraction": 0.6,
        "repeats": repeats,
        "world_size": 1,
    }


def _init_group() -> None:
    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29531")
        dist.init_process_group("gloo", rank=0, world_size=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="small,medium,large", help=f"from {', '.join(SIZES)}")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--dir", help="where checkpoints are written (default: a temp dir)")
    p.add_argument("--no-record", action="store_true", help="print only, do not append results")
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    _init_group()
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="bench-ckpt-"))
    try:
        for size in args.sizes.split(","):
            rec = {
                "bench": "checkpoint",
                **bench_size(size, args.repeats, workdir),
                **environment(),
            }
            print(json.dumps(rec))
            if not args.no_record:
                RESULTS.parent.mkdir(parents=True, exist_ok=True)
                with open(RESULTS, "a") as f:
                    f.write(json.dumps(rec) + "\n")
    finally:
        if not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
