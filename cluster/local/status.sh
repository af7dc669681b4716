#!/bin/bash
# Report which daemons of the local SLURM cluster run, and the nodes' states. Exit 0 iff all run.
set -euo pipefail
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ ! -d "$ROOT" ]] || check_tree
ok=0
for name in munged mariadb slurmdbd slurmctld; do
  if pid="$(daemon_pid "$name")"; then
    echo "$name running (pid $pid, user $(daemon_user "$name"))"
  else
    echo "$name stopped"; ok=1
  fi
done
for i in $(seq 1 "$NODES"); do
  if pid="$(daemon_pid "slurmd-n$i")"; then
    echo "slurmd n$i running (pid $pid, user root)"
  else
    echo "slurmd n$i stopped"; ok=1
  fi
done
if alive slurmctld; then
  sinfo -N -h -o "%N %T" || ok=1
fi
echo "SLURM_CONF=$SLURM_CONF"
exit "$ok"
