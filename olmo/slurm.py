"""Everything the kit reads from SLURM, and the exit-code contract with its launchers.

A leaf module: train and launch import it, it imports neither (only the kit's error type).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time

from olmo.errors import OlmoError

log = logging.getLogger(__name__)

REQUEUE_EXIT_CODE = 75
"""Exit code meaning "checkpointed, requeue me" (EX_TEMPFAIL); launchers requeue on it."""
WATCHDOG_EXIT_CODE = 86
"""Exit code after the watchdog found a hang and dumped stacks."""

ENV_KEYS = (
    "SLURM_JOB_ID",
    "SLURM_JOB_NODELIST",
    "SLURM_NNODES",
    "SLURM_NTASKS",
    "SLURM_RESTART_COUNT",
    "SLURM_CLUSTER_NAME",
)
"""The SLURM variables a run records (RUN_DIR/env.json)."""

# sbatch --time formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS (sbatch(1)).
_WALLTIME = re.compile(r"(?:(\d+)-(\d+)(?::(\d+)(?::(\d+))?)?|(\d+)(?::(\d+)(?::(\d+))?)?)")
WALLTIME_FORMS = "MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"


def walltime_seconds(value: str, key: str = "slurm.time") -> int:
    """Seconds of a SLURM walltime; a clean error naming `key` for anything else."""
    m = _WALLTIME.fullmatch(str(value).strip())
    if not m:
        raise OlmoError(f"{key} '{value}' is not a SLURM time ({WALLTIME_FORMS})")
    d, dh, dm, ds, a, b, c = (int(g) if g else 0 for g in m.groups())
    if m.group(1) is not None:  # D-HH[:MM[:SS]]
        secs = d * 86400 + dh * 3600 + dm * 60 + ds
    elif m.group(7) is not None:  # HH:MM:SS
        secs = a * 3600 + b * 60 + c
    else:  # MM or MM:SS
        secs = a * 60 + b
    if secs <= 0:
        raise OlmoError(f"{key} '{value}' must be longer than zero")
    return secs


def walltime_minutes(value: str, key: str = "slurm.time") -> int:
    """Minutes, rounded up (what submitit's timeout_min takes)."""
    return -(-walltime_seconds(value, key) // 60)


# ---- restart counts -------------------------------------------------------------------------
def restart_counts(env: dict[str, str] | None = None) -> tuple[int, int | None]:
    """(SLURM_RESTART_COUNT, OLMO_MAX_RESTARTS or None when no launcher set a limit)."""
    env = os.environ if env is None else env
    limit = env.get("OLMO_MAX_RESTARTS")
    return int(env.get("SLURM_RESTART_COUNT", "0") or 0), int(limit) if limit else None


def restart_limit_message(exit_code: int, env: dict[str, str] | None = None) -> str | None:
    """Why this attempt must not requeue again (None: it may)."""
    count, limit = restart_counts(env)
    if limit is None or count < limit:
        return None
    job = (env or os.environ).get("SLURM_JOB_ID", "?")
    return (
        f"restart limit reached: job {job} was restarted {count} times (OLMO_MAX_RESTARTS="
        f"{limit}, restart.max_restarts in the cluster profile) and exited {exit_code} again; "
        "not requeueing. Fix the cause (see the job log and attempts.jsonl), then resubmit"
    )


def check_restart_limit(env: dict[str, str] | None = None) -> None:
    """At attempt start: refuse to train when SLURM itself requeued past the limit (node failures)."""
    count, limit = restart_counts(env)
    if limit is not None and count > limit:
        job = (env or os.environ).get("SLURM_JOB_ID", "?")
        raise OlmoError(
            f"restart limit reached: job {job} is on restart {count} > OLMO_MAX_RESTARTS={limit} "
            "(restart.max_restarts in the cluster profile); not training. Check the failing "
            "nodes (sinfo -R) and attempts.jsonl, then resubmit"
        )


EXCLUDE_STRAGGLERS_ENV = "OLMO_EXCLUDE_STRAGGLERS"
"""`1` (set by the launchers from the profile's restart.exclude_stragglers): the trainer adds a
straggler's node to RUN_DIR/failed_nodes.txt, which the next requeue excludes."""


# ---- the job's end time ---------------------------------------------------------------------
WALLTIME_ENV = "OLMO_WALLTIME_END"
"""Overrides the job's end time (Unix seconds): for tests, and for launchers that know it."""


def job_end_time() -> float | None:
    """Unix time at which the job will be killed: $OLMO_WALLTIME_END, else SLURM's, else None."""
    override = os.environ.get(WALLTIME_ENV)
    if override:
        try:
            return float(override)
        except ValueError:
            raise OlmoError(f"{WALLTIME_ENV}={override!r}: expected Unix seconds") from None
    return slurm_end_time()


def slurm_end_time() -> float | None:
    """Unix time at which SLURM will kill this job, or None (not under SLURM / unlimited)."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    try:
        out = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%e"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        out = None
    if out is None or out.returncode != 0:
        log.warning("squeue failed: the job's end time is unknown, no walltime exit")
        return None
    return parse_squeue_time(out.stdout)


def parse_squeue_time(text: str) -> float | None:
    """squeue's `%e` (local time, e.g. 2026-11-23T12:00:00) as Unix time; None if unlimited."""
    text = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not text or text in ("N/A", "NONE", "UNLIMITED", "Unknown"):
        return None
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


# ---- nodes ----------------------------------------------------------------------------------
def _words(cmd: list[str]) -> list[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return out.stdout.split()


def down_nodes() -> list[str]:
    """Nodes SLURM reports down, drained, failed or not responding."""
    return _words(["sinfo", "-h", "-N", "-t", "down,drain,fail,no_respond", "-o", "%N"])


def hostnames(nodelist: str) -> list[str]:
    """A node list expanded ('n[1-3]' → n1 n2 n3)."""
    return _words(["scontrol", "show", "hostnames", nodelist])
