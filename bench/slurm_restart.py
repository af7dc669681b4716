"""Time from a hard node crash to the first resumed training step, on the local SLURM cluster.

Runs tests/launch/test_restart.py::test_node_failure_requeues_resumes_and_matches (which brings a
3-node cluster up, crashes the node running rank 0 after a checkpoint, and checks the resumed run
ends bitwise equal) and appends its measurement to bench/results/slurm_restart.jsonl. Goal < 60 s.
The floor is SLURM's failure detection (SlurmdTimeout=5 s → node DOWN after 11-27 s here), the
requeue delay (cred_expire=10 s) and process start-up (torch import, data, model).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    out = ROOT / "bench" / "results" / "slurm_restart.jsonl"
    test = "tests/launch/test_restart.py::test_node_failure_requeues_resumes_and_matches"
    env = {**os.environ, "OLMO_BENCH_OUT": str(out)}
    sys.exit(subprocess.call([sys.executable, "-m", "pytest", "-q", "-s", test], cwd=ROOT, env=env))
