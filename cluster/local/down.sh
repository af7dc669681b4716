#!/bin/bash
# Stop every daemon of the local SLURM cluster by its pid file (jobs are cancelled first).
set -euo pipefail
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Stop the processes whose pids are in the given files: TERM, wait up to 10 s, then KILL.
stop() {
  local pidfile pids=() i
  for pidfile in "$@"; do
    if alive "$pidfile"; then pids+=("$(cat "$pidfile")"); fi
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
  rm -f "$@"
}

if [[ -f "$SLURM_CONF" ]] && alive "$RUN/slurmctld.pid"; then
  scancel --quiet "--user=$(id -un)" 2>/dev/null || true
  sleep 1
fi
shopt -s nullglob
stop "$RUN"/slurmd-*.pid
stop "$RUN/slurmctld.pid" "$RUN/slurmdbd.pid"
stop "$RUN/mariadb.pid" "$RUN/munged.pid"
note "stopped (state kept under $ROOT)"
