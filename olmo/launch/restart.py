"""Restart limit: a job that keeps failing the same way stops instead of looping forever."""

from __future__ import annotations

import os
from pathlib import Path

from olmo.logbook import append_event, read_events
from olmo.slurm import (  # noqa: F401  (re-exported for the launchers)
    check_restart_limit,
    down_nodes,
    hostnames,
    restart_counts,
    restart_limit_message,
)


def note_attempt_nodes(run_dir: Path, env: dict[str, str] | None = None) -> list[str]:
    """At attempt start (rank 0): earlier nodes of this job that are now down count as failed
    (RUN_DIR/failed_nodes.txt); record this attempt's nodes. Returns all failed nodes so far.

    The same bookkeeping as the rendered sbatch scripts do in bash.
    """
    env = os.environ if env is None else env
    seen, failed = run_dir / "slurm_nodes.txt", run_dir / "failed_nodes.txt"
    run_dir.mkdir(parents=True, exist_ok=True)
    if int(env.get("SLURM_RESTART_COUNT", "0") or 0) > 0 and seen.exists():
        down = set(down_nodes())
        before = {h for nl in seen.read_text().split() for h in hostnames(nl)}
        known = set(failed.read_text().split()) if failed.exists() else set()
        new = sorted((down & before) - known)
        if new:
            with open(failed, "a") as f:
                f.write("".join(f"{n}\n" for n in new))
            log_nodes(run_dir, "node_failure", new)
    with open(seen, "a") as f:
        f.write(env.get("SLURM_JOB_NODELIST", "") + "\n")
    return sorted(set(failed.read_text().split())) if failed.exists() else []


def log_nodes(run_dir: Path, event: str, nodes: list[str]) -> None:
    """A `node_failure` or `excluded_nodes` logbook event, booked to the newest attempt."""
    events = read_events(run_dir, strict=False)
    starts = [e["attempt"] for e in events if e["event"] == "attempt_start"]
    attempt = starts[-1] if starts else None
    append_event(run_dir, event, attempt=attempt, detail={"nodes": nodes})


def requeue_job(job_id: str, exclude: list[str]) -> int:
    """Requeue; with nodes to avoid: hold, set ExcNodeList (allowed only while pending), release."""
    import subprocess

    if not exclude:
        return subprocess.run(["scontrol", "requeue", job_id], timeout=60).returncode
    rc = subprocess.run(["scontrol", "requeuehold", job_id], timeout=60).returncode
    subprocess.run(
        ["scontrol", "update", f"JobId={job_id}", f"ExcNodeList={','.join(exclude)}"], timeout=60
    )
    subprocess.run(["scontrol", "release", job_id], timeout=60)
    return rc
