#!/bin/bash
# Stop every daemon of the local SLURM cluster by its pid file (jobs are cancelled first).
set -euo pipefail
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Stop the named daemons: TERM, wait up to 10 s, then KILL. A pid file that does not name the
# daemon's own live process is left alone (see daemon_pid).
stop() {
  local name pids=() i pid
  for name in "$@"; do
    if pid="$(daemon_pid "$name")"; then pids+=("$pid"); fi
  done
  if [[ ${#pids[@]} -gt 0 ]]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for i in $(seq 1 50); do
      kill -0 "${pids[@]}" 2>/dev/null || break
      sleep 0.2
    done
    for pid in "${pids[@]}"; do
      if kill -0 "$pid" 2>/dev/null; then
        note "pid $pid did not stop ${i} tries after TERM; killing"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done
  fi
}

[[ -d "$ROOT" ]] || { note "nothing under $ROOT"; exit 0; }
check_tree
if [[ -f "$SLURM_CONF" ]] && alive slurmctld; then
  scancel --quiet "--user=$(id -un)" 2>/dev/null || true
  sleep 1
fi
shopt -s nullglob
slurmds=()
for f in "$RUN"/slurmd-*.pid; do slurmds+=("$(basename "$f" .pid)"); done
stop "${slurmds[@]}"
rm -f -- "$RUN"/slurmd-*.pid
stop slurmctld slurmdbd
stop mariadb munged
note "stopped (state kept under $ROOT)"
