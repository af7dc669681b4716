"""`olmo sbatch`: render a standalone, requeue-aware sbatch script from a cluster profile."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from olmo.errors import OlmoError
from olmo.fsutil import atomic_write_text
from olmo.launch.command import (
    Expand,
    doctor_args,
    olmo_command,
    shell_join,
    shell_word,
    task_env,
    train_overrides,
)
from olmo.launch.profile import Profile


@dataclass
class JobSpec:
    """What to run: a training config, its overrides and where the run lives."""

    config: str
    run_dir: str
    overrides: list[str] = field(default_factory=list)
    job_name: str = "olmo"
    argv: list[str] = field(default_factory=list)
    """The olmo command line that produced the script (recorded in its header)."""


def sbatch_options(prof: Profile, job: JobSpec) -> list[str]:
    s = prof.slurm
    opts = [f"--job-name={job.job_name}"]
    if s.account:
        opts.append(f"--account={s.account}")
    if s.partition:
        opts.append(f"--partition={s.partition}")
    opts += [
        f"--nodes={s.nodes}",
        f"--ntasks-per-node={prof.devices.per_node}",
        f"--cpus-per-task={s.cpus_per_task}",
    ]
    if s.gpus_per_node:
        opts.append(f"--gpus-per-node={s.gpus_per_node}")
    if s.mem is not None:
        opts.append(f"--mem={s.mem}")
    opts.append(f"--time={s.time}")
    if s.time_min:
        opts.append(f"--time-min={s.time_min}")
    opts += [
        "--requeue",
        "--open-mode=append",
        f"--signal=USR2@{s.signal_margin_s}",
        f"--output={prof.log_dir}/%x-%j.out",
        *s.extra,
    ]
    return opts


def srun_words(prof: Profile) -> list[str]:
    s = prof.slurm
    words = [
        "srun",
        f"--wait={s.task_exit_wait_s}",
        f"--ntasks-per-node={prof.devices.per_node}",
        Expand("--cpus-per-task=$SLURM_CPUS_PER_TASK"),
    ]
    if s.distribution:
        words.append(f"--distribution={s.distribution}")
    if s.cpu_bind:
        words.append(f"--cpu-bind={s.cpu_bind}")
    if s.gpu_bind:
        words.append(f"--gpu-bind={s.gpu_bind}")
    return words


def render(prof: Profile, job: JobSpec) -> str:
    """The whole script; deterministic for given inputs (slurm/ holds reference renderings)."""
    lines = ["#!/bin/bash"]
    if job.argv:
        lines.append(f"# Rendered by: {shell_join(job.argv)}")
    lines += [
        "# Re-render instead of editing. Exit 75 from the trainer = checkpointed, requeue me."
    ]
    lines += [f"#SBATCH {o}" for o in sbatch_options(prof, job)]
    lines += ["set -uo pipefail", ""]
    if prof.setup:
        lines += ["# Site setup", *prof.setup, ""]
    lines += ["# Environment of every task"]
    lines += [f"export {k}={shell_word(v)}" for k, v in task_env(prof).items()]
    train = train_overrides(prof, job)
    lines += [
        "",
        f"RUN_DIR={shell_word(job.run_dir)}",
        'RUN_DIR="${OLMO_RUN_DIR:-$RUN_DIR}"',
        f"CONFIG={shell_word(job.config)}",
        f"REQUEUE_ON_CRASH={int(prof.restart.requeue_on_crash)}",
        f"OLMO=({shell_join(srun_words(prof))}",
        f"  {shell_join(olmo_command(prof))})",
        f"TRAIN_ARGS=({shell_join(train)})" if train else "TRAIN_ARGS=()",
        _BODY,
    ]
    if prof.doctor.enabled:
        lines.append(_DOCTOR.format(args=shell_join(doctor_args(prof))))
    lines.append(_TRAIN)
    return "\n".join(lines).replace("\n\n\n", "\n\n")


# The restart policy, the same for every cluster (shellcheck-clean; tests run shellcheck on it).
_BODY = r"""
RESTARTS="${SLURM_RESTART_COUNT:-0}"
mkdir -p "$RUN_DIR"
echo "olmo: job $SLURM_JOB_ID attempt $((RESTARTS + 1)) on $SLURM_JOB_NODELIST ($(date -Is))"

# The newest attempt the trainer recorded (null before the first).
newest_attempt() {
  if [[ -s "$RUN_DIR/attempts.jsonl" ]]; then echo "$(($(wc -l <"$RUN_DIR/attempts.jsonl")))"
  else echo null; fi
}
# One event in RUN_DIR/logbook.jsonl in olmo/logbook.py's format (one short append is one
# write), for what only this script sees. Args: EVENT DETAIL_JSON (node names and numbers
# need no JSON escaping).
logbook() {
  local fmt='{"attempt": %s, "detail": %s, "event": "%s", "host": "%s", "rank": null, '
  printf "$fmt"'"step": null, "time": %s}\n' "$(newest_attempt)" "$2" "$1" \
    "${SLURMD_NODENAME:-$(hostname)}" "$(date +%s.%N)" >>"$RUN_DIR/logbook.jsonl"
}
# Node names, one per line or comma-separated, as a JSON list.
json_nodes() {
  tr , '\n' | sed '/^$/d; s/.*/"&"/' | paste -sd, - | sed 's/^/[/; s/$/]/'
}

# Requeue this job, keeping it off the nodes that failed it (a pending job's ExcNodeList can
# be changed, a running one's cannot: hold, update, release, ignoring SLURM's TERM meanwhile).
requeue() {
  local bad
  bad="$(sort -u "$RUN_DIR/failed_nodes.txt" 2>/dev/null | paste -sd, -)"
  if [[ -z "$bad" ]]; then
    scontrol requeue "$SLURM_JOB_ID"
    exit 0
  fi
  trap '' TERM
  echo "olmo: requeueing job $SLURM_JOB_ID excluding nodes that failed it: $bad"
  logbook excluded_nodes "{\"nodes\": $(json_nodes <<<"$bad")}"
  scontrol requeuehold "$SLURM_JOB_ID"
  scontrol update JobId="$SLURM_JOB_ID" ExcNodeList="$bad"
  scontrol release "$SLURM_JOB_ID"
  exit 0
}

# Nodes this job ran on before that are now down failed it: remember them (and log the new).
if [[ "$RESTARTS" -gt 0 && -f "$RUN_DIR/slurm_nodes.txt" ]]; then
  new="$(comm -23 <(comm -12 <(sinfo -h -N -t down,drain,fail,no_respond -o %N | sort -u) \
    <(xargs -n1 scontrol show hostnames <"$RUN_DIR/slurm_nodes.txt" | sort -u)) \
    <(sort -u "$RUN_DIR/failed_nodes.txt" 2>/dev/null))"
  if [[ -n "$new" ]]; then
    echo "$new" >>"$RUN_DIR/failed_nodes.txt"
    logbook node_failure "{\"nodes\": $(json_nodes <<<"$new")}"
  fi
  if [[ -s "$RUN_DIR/failed_nodes.txt" ]] && scontrol show hostnames "$SLURM_JOB_NODELIST" \
    | grep -qxFf "$RUN_DIR/failed_nodes.txt"; then
    echo "olmo: allocated a node that failed this job before; requeueing without it"
    requeue
  fi
fi
echo "$SLURM_JOB_NODELIST" >>"$RUN_DIR/slurm_nodes.txt"
"""

_DOCTOR = """
if ! "${{OLMO[@]}}" doctor {args} --run-dir "$RUN_DIR"; then
  echo "olmo: pre-flight check failed (the node is named above); not training"
  exit 1
fi"""

_TRAIN = r"""
"${OLMO[@]}" train "$CONFIG" --run-dir "$RUN_DIR" "${TRAIN_ARGS[@]}"
rc=$?
echo "olmo: trainer exited with $rc"
if [[ "$rc" -eq 86 && "$(newest_attempt)" != null ]] && ! grep -q "^{\"attempt\": $(newest_attempt), .*\"event\": \"attempt_end\"" \
  "$RUN_DIR/logbook.jsonl" 2>/dev/null; then  # the watchdog exits at once, without a word
  logbook attempt_end '{"reason": "hang", "exit_code": 86}'
fi
case "$rc" in
  0) exit 0 ;;
  2) echo "olmo: bad input; not requeueing"; exit 2 ;;
  75) ;;
  140 | 143) echo "olmo: killed by USR2/TERM before it could checkpoint (start-up)" ;;
  *) [[ "$REQUEUE_ON_CRASH" -eq 1 ]] || exit "$rc" ;;
esac
if [[ "$RESTARTS" -ge "$OLMO_MAX_RESTARTS" ]]; then
  echo "olmo: restart limit reached: job $SLURM_JOB_ID restarted $RESTARTS times" \
    "(OLMO_MAX_RESTARTS=$OLMO_MAX_RESTARTS) and exited $rc again; not requeueing." \
    "Fix the cause (see this log and $RUN_DIR/attempts.jsonl), then resubmit."
  exit "$rc"
fi
requeue
"""


def write_or_submit(text: str, out: str | None, submit: bool, log_dir: str) -> int:
    if out:
        atomic_write_text(out, text)
        Path(out).chmod(0o755)
        print(f"wrote {out}", file=sys.stderr)
    if not submit:
        if not out:
            sys.stdout.write(text)
        return 0
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["sbatch", "--parsable"], input=text, capture_output=True, text=True)
    if proc.returncode != 0:
        raise OlmoError(f"sbatch failed: {proc.stderr.strip()}")
    print(proc.stdout.strip())
    return 0


# The scripts in slurm/ are these renderings (tests/launch/test_sbatch.py keeps them identical).
_SMOKE = ["--model.d_model=64", "--model.n_layers=2", "--model.n_heads=4", "--data.seq_len=32"]
REFERENCES: dict[str, list[str]] = {
    "lumi": [
        "--cluster=lumi",
        "--set=slurm.account=project_465000000",
        "--set=container.image=/project/project_465000000/olmo-rocm.sif",
        "configs/olmo-7b.yaml",
    ],
    "a100": [
        "--cluster=a100",
        "--set=slurm.account=my_account",
        "--set=container.image=$HOME/olmo-cuda.sif",
        "--set=env.GLOO_SOCKET_IFNAME=ib0",
        "configs/olmo-1b.yaml",
    ],
    "local": [
        "--cluster=local",
        "--run-dir=runs/local-smoke",
        "configs/tiny.yaml",
        *_SMOKE,
        "--train.global_batch_size=8",
        "--train.micro_batch_size=4",
        "--train.max_steps=20",
        "--checkpoint.interval=10",
        "--train.log_interval=5",
    ],
}


def write_references(out_dir: Path) -> list[Path]:
    """Re-render slurm/NAME.sbatch for every reference (run after changing the renderer)."""
    from olmo.cli import main

    paths = []
    for name, args in REFERENCES.items():
        path = out_dir / f"{name}.sbatch"
        if main(["sbatch", *args, "-o", str(path)]) != 0:
            raise OlmoError(f"rendering {path} failed")
        paths.append(path)
    return paths


if __name__ == "__main__":
    from olmo.launch.profile import repo_root

    write_references(repo_root() / "slurm")
