"""Shared test helpers: run the real `olmo` CLI in a subprocess, small fast configs, metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Overrides that shrink configs/tiny.yaml to a model that trains a step in ~0.1 s on 2 CPU cores
# (the real tokenizer's 50k vocabulary stays, so the head still dominates).
SMALL_MODEL = [
    "--model.d_model=64",
    "--model.n_layers=2",
    "--model.n_heads=4",
    "--data.seq_len=32",
    "--train.global_batch_size=8",
    "--train.micro_batch_size=4",
    "--optim.lr=1e-2",
    "--scheduler.warmup_steps=5",
]
# ... with logging every 5 steps, a checkpoint and a held-out eval every 10.
SMALL = [
    *SMALL_MODEL,
    "--train.log_interval=5",
    "--checkpoint.interval=10",
    "--train.eval_holdout_instances=32",
    "--train.eval_interval=10",
    "--train.eval_batches=2",
]


def olmo(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m olmo ARGS`; on failure (when check) raise with the stderr tail."""
    proc = subprocess.run(
        [sys.executable, "-m", "olmo", *args], capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"olmo {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return proc


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
