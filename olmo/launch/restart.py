"""Restart limit: a job that keeps failing the same way stops instead of looping forever."""

from __future__ import annotations

import os

from olmo.errors import OlmoError


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
