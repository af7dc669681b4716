#!/bin/bash
# Report which daemons of the local SLURM cluster run, and the nodes' states. Exit 0 iff all run.
set -euo pipefail
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ok=0
for name in munged mariadb slurmdbd slurmctld; do
  if alive "$RUN/$name.pid"; then
    echo "$name running (pid $(cat "$RUN/$name.pid"))"
  else
    echo "$name stopped"; ok=1
  fi
done
for i in $(seq 1 "$NODES"); do
  if alive "$RUN/slurmd-n$i.pid"; then
    echo "slurmd n$i running (pid $(cat "$RUN/slurmd-n$i.pid"))"
  else
    echo "slurmd n$i stopped"; ok=1
  fi
done
if alive "$RUN/slurmctld.pid"; then
  sinfo -N -h -o "%N %T" || ok=1
fi
echo "SLURM_CONF=$SLURM_CONF"
exit "$ok"
