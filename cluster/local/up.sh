#!/bin/bash
# Bring up a real SLURM cluster on this machine: munge, MariaDB + slurmdbd (accounting), slurmctld
# and N slurmd "nodes" (n1..nN on localhost), all state under ROOT. Idempotent: running daemons
# are kept, missing ones started, DOWN nodes resumed. Prints the SLURM_CONF path on stdout.
set -euo pipefail
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

ensure_packages() {
  local missing=()
  command -v slurmctld >/dev/null || missing+=(slurmctld)
  command -v slurmd >/dev/null || missing+=(slurmd)
  command -v sbatch >/dev/null || missing+=(slurm-client)
  command -v munged >/dev/null || missing+=(munge)
  command -v slurmdbd >/dev/null || missing+=(slurmdbd)
  command -v mariadbd >/dev/null || missing+=(mariadb-server)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "error: missing ${missing[*]}; install them (needs root + apt-get)" >&2
    exit 3
  fi
  note "installing ${missing[*]}"
  apt-get install -y --no-install-recommends "${missing[@]}" >"$LOG/apt.log" 2>&1 \
    || { apt-get update >>"$LOG/apt.log" 2>&1 \
    && apt-get install -y --no-install-recommends "${missing[@]}" >>"$LOG/apt.log" 2>&1; } \
    || { echo "error: apt-get install ${missing[*]} failed; see $LOG/apt.log" >&2; exit 3; }
}

# Wait until command "$@" succeeds (up to 30 s).
wait_for() {
  local i
  for i in $(seq 1 150); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "error: timed out after ${i} tries waiting for: $*" >&2
  return 1
}

start_munge() {
  alive "$RUN/munged.pid" && return 0
  mkdir -p "$ROOT/munge"
  chmod 755 "$ROOT/munge"
  [[ -f "$ROOT/munge/munge.key" ]] || mungekey -c -k "$ROOT/munge/munge.key"
  chmod 600 "$ROOT/munge/munge.key"
  munged --key-file="$ROOT/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$RUN/munged.pid" --log-file="$LOG/munged.log" --seed-file="$ROOT/munge/seed" \
    --force
  wait_for munge -S "$MUNGE_SOCKET" -n
}

db() { mariadb --socket="$ROOT/db/mysqld.sock" -u root "$@"; }

start_mariadb() {
  alive "$RUN/mariadb.pid" && return 0
  if [[ ! -d "$ROOT/db/data/mysql" ]]; then
    mkdir -p "$ROOT/db/data"
    mariadb-install-db --user=root --datadir="$ROOT/db/data" \
      --auth-root-authentication-method=socket --skip-test-db >"$LOG/mariadb-install.log" 2>&1
  fi
  mariadbd --no-defaults --user=root --datadir="$ROOT/db/data" --bind-address=127.0.0.1 \
    --port="$DB_PORT" --socket="$ROOT/db/mysqld.sock" --pid-file="$RUN/mariadb.pid" \
    --log-error="$LOG/mariadb.log" --skip-name-resolve --innodb-buffer-pool-size=32M \
    2>>"$LOG/mariadb.log" &
  disown
  wait_for db -e "select 1"
  db -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
         GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
}

write_configs() {
  mkdir -p "$ETC" "$ROOT/state" "$ROOT/spool"
  ROOT="$ROOT" NODES="$NODES" CLUSTER_NAME="$CLUSTER_NAME" CTLD_PORT="$CTLD_PORT" \
    DBD_PORT="$DBD_PORT" DB_PORT="$DB_PORT" SLURMD_PORT0="$SLURMD_PORT0" \
    CPUS_PER_NODE="$CPUS_PER_NODE" MUNGE_SOCKET="$MUNGE_SOCKET" RUN="$RUN" LOG="$LOG" \
    bash "$HERE/render-conf.sh" "$ETC"
  chmod 600 "$ETC/slurmdbd.conf"
}

start_slurmdbd() {
  alive "$RUN/slurmdbd.pid" && return 0
  slurmdbd
  wait_for sacctmgr -n list cluster
  if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER_NAME"; then
    sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null
  fi
}

start_slurmctld() {
  alive "$RUN/slurmctld.pid" && return 0
  slurmctld
  wait_for scontrol ping
}

start_slurmds() {
  local i
  for i in $(seq 1 "$NODES"); do
    mkdir -p "$ROOT/spool/n$i"
    alive "$RUN/slurmd-n$i.pid" || slurmd -N "n$i"
  done
  # Nodes left DOWN by an earlier crash or teardown come back once their slurmd answers.
  sleep 1
  local down
  down="$(sinfo -h -N -t down,drain,fail -o %N | sort -u | paste -sd, -)"
  if [[ -n "$down" ]]; then
    scontrol update nodename="$down" state=resume 2>/dev/null || true
  fi
  wait_for all_idle
}

all_idle() {
  local states
  states="$(sinfo -h -N -o %T)"
  [[ "$(grep -c -E '^(idle|mixed|allocated)' <<<"$states")" -ge "$NODES" ]]
}

mkdir -p "$RUN" "$LOG"
ensure_packages
start_munge
start_mariadb
write_configs
start_slurmdbd
start_slurmctld
start_slurmds
note "up: $NODES nodes, state under $ROOT"
echo "$SLURM_CONF"
