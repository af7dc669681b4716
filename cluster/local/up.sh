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

# Run "$@" as user $1 (its own uid, gid and groups; no capabilities).
as_user() { setpriv --reuid="$1" --regid="$(id -g "$1")" --init-groups -- "${@:2}"; }

ensure_users() {
  local user
  for user in "$SLURM_USER" "$MUNGE_USER" "$DB_USER"; do
    getent passwd "$user" >/dev/null && continue
    note "creating system user $user"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$user"
  done
}

# The daemon users must reach their directories: every directory above ROOT searchable by all.
check_reachable() {
  local d m
  d="$(dirname "$ROOT")"
  while [[ "$d" != / ]]; do
    if [[ -e "$d" ]]; then
      m="$(stat -L -c %a -- "$d")"
      (( 8#$m & 8#001 )) \
        || die "--root $ROOT: $d above it (mode $m) keeps the $SLURM_USER, $MUNGE_USER and $DB_USER users out; use a root below directories all may enter (e.g. /var/lib/olmo-hpc/slurm)"
    fi
    d="$(dirname "$d")"
  done
}

# An existing munge key is reused only when it is munge's own with mode 600.
check_munge_key() {
  local key="$MUNGE_DIR/munge.key" o m
  [[ -e "$key" || -L "$key" ]] || return 0
  [[ -f "$key" && ! -L "$key" ]] || die "munge key $key is not a regular file: remove it to make a new key"
  read -r o m < <(stat -c "%U %a" -- "$key")
  [[ "$o" == "$MUNGE_USER" && "$m" == 600 ]] \
    || die "munge key $key is owned by $o with mode $m; it must be $MUNGE_USER's with mode 600: chown $MUNGE_USER: $key && chmod 600 $key (or remove it to make a new key)"
}

# Create the directories of tree() with their owners and modes; a directory root made for a
# daemon user (an earlier version of these scripts ran every daemon as root) is given to it.
make_tree() {
  local owner mode path
  while read -r owner mode path; do
    if [[ -d "$path" ]]; then
      if [[ "$(stat -c %U -- "$path")" != "$owner" ]]; then
        note "giving $path to $owner"
        chown -R -h -- "$owner:" "$path"
      fi
      chmod "$mode" -- "$path"
    else
      mkdir -p -- "$(dirname "$path")"
      mkdir -m "$mode" -- "$path"
      chown -- "$owner:" "$path"
    fi
  done < <(tree)
}

start_munge() {
  alive munged && return 0
  if [[ ! -f "$MUNGE_DIR/munge.key" ]]; then
    (umask 077 && as_user "$MUNGE_USER" mungekey -c -k "$MUNGE_DIR/munge.key")
  fi
  as_user "$MUNGE_USER" munged --key-file="$MUNGE_DIR/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$(pidfile munged)" --log-file="$MUNGE_DIR/munged.log" \
    --seed-file="$MUNGE_DIR/seed"
  wait_for munge -S "$MUNGE_SOCKET" -n
}

db() { mariadb --socket="$DB_DIR/mysqld.sock" -u root "$@"; }

start_mariadb() {
  alive mariadb && return 0
  if [[ ! -d "$DB_DIR/data/mysql" ]]; then
    as_user "$DB_USER" mariadb-install-db --datadir="$DB_DIR/data" --skip-test-db \
      --auth-root-authentication-method=socket --auth-root-socket-user=root \
      >"$LOG/mariadb-install.log" 2>&1
  fi
  as_user "$DB_USER" mariadbd --no-defaults --datadir="$DB_DIR/data" --bind-address=127.0.0.1 \
    --port="$DB_PORT" --socket="$DB_DIR/mysqld.sock" --pid-file="$(pidfile mariadb)" \
    --log-error="$DB_DIR/mariadb.log" --skip-name-resolve --innodb-buffer-pool-size=32M \
    >>"$LOG/mariadb.out" 2>&1 &
  disown
  wait_for db -e "select 1"
}

write_slurm_conf() {
  bash "$HERE/render-conf.sh" slurm >"$ETC/.slurm.conf.new"
  mv -f -- "$ETC/.slurm.conf.new" "$SLURM_CONF"
}

# slurmdbd's database password is made afresh each time slurmdbd starts; it exists only in the
# database and in slurmdbd.conf (mode 600 from its first byte, then given to the slurm user).
start_slurmdbd() {
  alive slurmdbd && return 0
  local pass
  pass="$(od -An -tx1 -N16 /dev/urandom | tr -d " \n")"
  db --batch <<SQL
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL
  rm -f -- "$ETC/.slurmdbd.conf.new"
  (umask 077 && DB_PASS="$pass" bash "$HERE/render-conf.sh" slurmdbd >"$ETC/.slurmdbd.conf.new")
  chown -- "$SLURM_USER:" "$ETC/.slurmdbd.conf.new"
  mv -f -- "$ETC/.slurmdbd.conf.new" "$ETC/slurmdbd.conf"
  as_user "$SLURM_USER" slurmdbd
  wait_for sacctmgr -n list cluster
  if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER_NAME"; then
    sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null
  fi
}

start_slurmctld() {
  alive slurmctld && return 0
  as_user "$SLURM_USER" slurmctld
  wait_for scontrol ping
}

start_slurmds() {
  local i
  for i in $(seq 1 "$NODES"); do
    mkdir -p "$ROOT/spool/n$i"
    # slurmd stays root: it starts every job step as the user who submitted the job.
    alive "slurmd-n$i" || slurmd -N "n$i"
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

[[ $(id -u) -eq 0 ]] \
  || die "olmo cluster up needs root: it starts slurmd as root, the other daemons as $SLURM_USER, $MUNGE_USER and $DB_USER"
umask 022
cd /
# Refusals first: nothing is created or started under a ROOT that fails a check.
check_tree
check_reachable
check_munge_key
mkdir -p -- "$(dirname "$ROOT")"
[[ -d "$ROOT" ]] || mkdir -m 711 -- "$ROOT"
[[ -d "$LOG" ]] || mkdir -m 755 -- "$LOG"
ensure_packages
ensure_users
make_tree
export ROOT NODES CLUSTER_NAME CTLD_PORT DBD_PORT DB_PORT SLURMD_PORT0 CPUS_PER_NODE RUN LOG \
  SLURM_DIR SLURM_USER MUNGE_SOCKET
start_munge
start_mariadb
write_slurm_conf
start_slurmdbd
start_slurmctld
start_slurmds
note "up: $NODES nodes, state under $ROOT"
echo "$SLURM_CONF"
