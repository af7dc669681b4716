"""Slow-node detection (#20.2): 3 ranks (gloo), each on its own node name (SLURMD_NODENAME, as
srun gives it); one slowed 3× with `slow@rank=2,factor=3` is named with its host within the
configured intervals and, with exclusion on, written to RUN_DIR/failed_nodes.txt (the file the
batch script's requeue excludes: tests/launch/test_restart.py drives that path on the local
cluster); the same run's undisturbed first steps name nobody (one launch: 3 ranks start slowly)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

from olmo.logbook import read_events
from olmo.train.straggler import slow_ranks
from tests.distributed.launch import read_records, train_args, wait_all

NPROC = 3


def test_slow_ranks_are_those_beyond_factor_times_the_median():
    assert slow_ranks([1.0, 1.1, 3.0], 1.5) == [2]
    assert slow_ranks([1.0, 1.4, 1.2], 1.5) == []
    assert slow_ranks([2.0, 0.5, 0.6], 1.5) == [0]  # the median, not the mean or the minimum


def _spawn(run: Path, extra: list[str], env: dict[str, str]) -> list[int]:
    """One process per rank with srun's task variables and its own node name."""
    job = str(random.randrange(10**6, 10**7))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "OLMO_FAULT"))}
    base |= {"OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", **env}
    procs = []
    for r in range(NPROC):
        task = {"SLURM_JOB_ID": job, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r)}
        task |= {"SLURM_NTASKS": str(NPROC), "SLURM_NNODES": "1"}
        task |= {"SLURM_JOB_NODELIST": "localhost", "SLURMD_NODENAME": f"node{r}"}
        args = train_args(
            run,
            "--train.max_steps=8",
            "--checkpoint.interval=0",
            "--checkpoint.save_final=false",
            "--train.global_batch_size=6",
            "--train.micro_batch_size=2",
            *extra,
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, *args],
                env={**base, **task},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE if r == 0 else subprocess.DEVNULL,
            )
        )
    codes = wait_all(procs, timeout=240)
    assert codes == [0] * NPROC, procs[0].stderr.read().decode()[-3000:]
    return codes


def test_slowed_rank_is_named_with_its_host_and_excluded_and_nobody_before(tmp_path: Path):
    """Steps 1-4 undisturbed (4 flushes: nobody named), rank 2 slowed 3× from step 5: named at
    step 6, its second slow interval in a row, once; its node goes into failed_nodes.txt."""
    run = tmp_path / "run"
    extra = ["--train.straggler.factor=1.5", "--train.straggler.intervals=2"]
    env = {"OLMO_FAULT_INJECT": "slow@rank=2,factor=3,from=5", "OLMO_EXCLUDE_STRAGGLERS": "1"}
    _spawn(run, extra, env)
    events = [e for e in read_events(run) if e["event"] == "straggler"]
    assert [(e["step"], e["detail"]["rank"], e["detail"]["host"]) for e in events] == [
        (6, 2, "node2")
    ]
    assert events[0]["detail"]["slowdown"] > 1.5 and events[0]["detail"]["excluded"]
    assert (run / "failed_nodes.txt").read_text().split() == ["node2"]
    recs = read_records(run)
    hosts = [r.get("stragglers", [{}])[0].get("host") for r in recs]
    assert hosts == [None] * 5 + ["node2"] * 3
    assert all(r["straggler_ratio"] > 1.5 for r in recs[4:])
