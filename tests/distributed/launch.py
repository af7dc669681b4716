"""Launch real multi-process training runs for the distributed and fault-tolerance tests.

Two launchers, both real: `torchrun` (with or without --max-restarts) and bare processes with the
environment `srun` gives one task per device (SLURM_PROCID, SLURM_NTASKS, ...), so the test
knows every rank's pid and exit code.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from olmo.checkpoint.io import load_model, parameter_digest
from tests.helpers import SMALL_MODEL

# A model that trains a step in ~0.1 s; every step logged (so superseded records are exercised),
# a checkpoint every 5 steps, the last 3 kept, no evaluation.
FT = [
    *SMALL_MODEL,
    "--train.log_interval=1",
    "--checkpoint.interval=5",
    "--checkpoint.keep_last=3",
    "--distributed.init_timeout_s=120",
]


def train_args(run: Path, *extra: str) -> list[str]:
    return ["-m", "olmo", "train", "configs/tiny.yaml", "--run-dir", str(run), *FT, *extra]


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OLMO_FAULT"))}
    env["OMP_NUM_THREADS"] = "1"
    env["WANDB_MODE"] = "disabled"  # these tests are about the loop; W&B start-up costs seconds
    env.update(extra or {})
    return env


def torchrun(
    nproc: int,
    args: list[str],
    env: dict[str, str] | None = None,
    max_restarts: int = 0,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={nproc}", f"--max-restarts={max_restarts}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(env))


def spawn_ranks(
    nproc: int, args: list[str], logs: Path, env: dict[str, str] | None = None
) -> list[subprocess.Popen]:
    """One process per rank with srun's task environment; stderr of rank r in logs/rankR.log."""
    logs.mkdir(parents=True, exist_ok=True)
    job = str(random.randrange(10**6, 10**7))
    procs = []
    for r in range(nproc):
        task = {
            "SLURM_JOB_ID": job,
            "SLURM_PROCID": str(r),
            "SLURM_LOCALID": str(r),
            "SLURM_NTASKS": str(nproc),
            "SLURM_NNODES": "1",
            "SLURM_JOB_NODELIST": "localhost",
        }
        with open(logs / f"rank{r}.log", "w") as err:
            procs.append(
                subprocess.Popen(
                    [sys.executable, *args],
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env=_env({**task, **(env or {})}),
                )
            )
    return procs


def wait_all(procs: list[subprocess.Popen], timeout: float = 300) -> list[int]:
    """Exit codes of all ranks; a rank still running after `timeout` is killed (code -9)."""
    end = time.monotonic() + timeout
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.01, end - time.monotonic()))
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    return [p.returncode for p in procs]


def metric_steps(run: Path, torn_tail: bool = False) -> list[int]:
    return [r["step"] for r in read_records(run, torn_tail)]


def read_records(run: Path, torn_tail: bool = False) -> list[dict]:
    """metrics.jsonl, strictly: every line a JSON object ending in a newline. With torn_tail the
    last line may be cut short (a writer killed mid-line, or one still writing while we poll);
    a bad line anywhere else fails the test."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    text = path.read_text()
    lines = text.split("\n")
    tail = lines.pop()  # "" when the file ends with a newline
    records = []
    for n, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"{path}:{n}: torn or invalid record {line[:120]!r}") from None
    if tail and not torn_tail:
        raise AssertionError(f"{path}:{len(lines) + 1}: last record cut short {tail[:120]!r}")
    return records


def digest(ckpt: Path) -> str:
    """Digest of every parameter of a (sharded, any world size) checkpoint."""
    return parameter_digest(load_model(ckpt))


def wait_for_step(run: Path, step: int, procs: list[subprocess.Popen], timeout: float = 120):
    """Block until metrics.jsonl holds `step` (fails if a rank exits first)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        steps = metric_steps(run, torn_tail=True)  # rank 0 may be writing a line
        if steps and steps[-1] >= step:
            return steps[-1]
        if any(p.poll() is not None for p in procs):
            raise AssertionError(f"a rank exited before step {step}: {[p.poll() for p in procs]}")
        time.sleep(0.02)
    raise AssertionError(f"step {step} not reached in {timeout}s")
