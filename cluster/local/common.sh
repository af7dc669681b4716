#!/bin/bash
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file
# Shared settings of the local SLURM cluster scripts (sourced by up.sh, down.sh, status.sh).
# Usage of the scripts: SCRIPT [--root DIR] [--nodes N]
#
# Who runs what, and where each writes (everything under ROOT; `down.sh` stops each daemon by its
# pid file):
#   munged     as munge  ROOT/munge (0755: clients must reach the socket; key 0600)
#   mariadbd   as mysql  ROOT/db    (0700)
#   slurmdbd   as slurm  ROOT/slurm (0700: also slurmctld's state, i.e. every job's script)
#   slurmctld  as slurm  ROOT/slurm
#   slurmd     as root   ROOT/run, ROOT/log, ROOT/spool: it starts each job as the submitting user
# ROOT (0711) and ROOT/etc (0755, slurm.conf; slurmdbd.conf 0600 slurm's) are root's.

ROOT="${OLMO_SLURM_ROOT:-${OLMO_CACHE:+$OLMO_CACHE/slurm}}"
ROOT="${ROOT:-/var/lib/olmo-hpc/slurm}"
NODES="${OLMO_SLURM_NODES:-3}"
CLUSTER_NAME="${OLMO_SLURM_CLUSTER:-olmolocal}"
# Ports: slurmctld, slurmdbd, MariaDB, and the first slurmd (node i listens on SLURMD_PORT0 + i).
CTLD_PORT="${OLMO_SLURM_CTLD_PORT:-16817}"
DBD_PORT="${OLMO_SLURM_DBD_PORT:-16819}"
DB_PORT="${OLMO_SLURM_DB_PORT:-16306}"
SLURMD_PORT0="${OLMO_SLURMD_PORT0:-17000}"
CPUS_PER_NODE="${OLMO_SLURM_CPUS_PER_NODE:-2}"
SLURM_USER=slurm
MUNGE_USER=munge
DB_USER=mysql

# One line on stderr, exit 2: a refusal the user fixes (`olmo cluster` shows just this line).
die() { echo "error: $*" >&2; exit 2; }
note() { echo "olmo-cluster: $*" >&2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --root) ROOT="$2"; shift 2 ;;
    --root=*) ROOT="${1#--root=}"; shift ;;
    --nodes) NODES="$2"; shift 2 ;;
    --nodes=*) NODES="${1#--nodes=}"; shift ;;
    *) die "unknown argument '$1' (use --root DIR, --nodes N)" ;;
  esac
done
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a positive integer, got '$NODES'"
ROOT="$(realpath -m -- "$ROOT")"
# A unix socket path must stay below 108 bytes.
[[ ${#ROOT} -le 80 ]] || die "--root '$ROOT' is too long for the munge socket path; use a shorter directory"
ETC="$ROOT/etc"
RUN="$ROOT/run"
LOG="$ROOT/log"
MUNGE_DIR="$ROOT/munge"
DB_DIR="$ROOT/db"
SLURM_DIR="$ROOT/slurm"
MUNGE_SOCKET="$MUNGE_DIR/munge.sock"
export SLURM_CONF="$ETC/slurm.conf"

# Every directory under ROOT as "OWNER MODE PATH" (ROOT first; spool/nI come with their slurmd).
tree() {
  local dir
  echo "root 711 $ROOT"
  for dir in "$ETC" "$RUN" "$LOG" "$ROOT/spool"; do echo "root 755 $dir"; done
  echo "$MUNGE_USER 755 $MUNGE_DIR"
  echo "$DB_USER 700 $DB_DIR"
  echo "$SLURM_USER 700 $SLURM_DIR"
  echo "$SLURM_USER 700 $SLURM_DIR/state"
}

# Refuse ROOT, or a directory under it, that a user other than root and its daemon's user could
# change: a different owner, group/world-writable, or not a directory. A directory above ROOT must
# be root's and not writable by others unless sticky (like /tmp). Read-only: run before anything.
check_tree() {
  local owner mode path d o m
  d="$(dirname "$ROOT")"
  while true; do
    if [[ -e "$d" ]]; then
      read -r o m < <(stat -L -c "%U %a" -- "$d")
      [[ "$o" == root ]] \
        || die "--root $ROOT: $d above it is owned by $o, who could replace it; use a root below root's directories (e.g. /var/lib/olmo-hpc/slurm)"
      (( (8#$m & 8#1000) || !(8#$m & 8#022) )) \
        || die "--root $ROOT: $d above it is group/world-writable (mode $m); use a root below directories only root can write"
    fi
    [[ "$d" == / ]] && break
    d="$(dirname "$d")"
  done
  while read -r owner mode path; do
    if [[ -L "$path" ]]; then
      die "$path is a symbolic link: refusing to use it (remove it, or use another --root)"
    fi
    [[ -e "$path" ]] || continue
    [[ -d "$path" ]] || die "$path is not a directory (remove it, or use another --root)"
    read -r o m < <(stat -c "%U %a" -- "$path")
    [[ "$o" == root || "$o" == "$owner" ]] \
      || die "$path is owned by $o, not $owner: refusing to use it (remove it, or use another --root)"
    (( !(8#$m & 8#022) )) \
      || die "$path is group/world-writable (mode $m): refusing to use it (chmod go-w it, or use another --root)"
  done < <(tree)
}

# The pid file and the user of daemon $1 (munged, mariadb, slurmdbd, slurmctld, slurmd-nI).
pidfile() {
  case "$1" in
    munged) echo "$MUNGE_DIR/munged.pid" ;;
    mariadb) echo "$DB_DIR/mariadb.pid" ;;
    slurmdbd | slurmctld) echo "$SLURM_DIR/$1.pid" ;;
    *) echo "$RUN/$1.pid" ;;
  esac
}
daemon_user() {
  case "$1" in
    munged) echo "$MUNGE_USER" ;;
    mariadb) echo "$DB_USER" ;;
    slurmdbd | slurmctld) echo "$SLURM_USER" ;;
    *) echo root ;;
  esac
}

# The pid of daemon $1 when it runs: its pid file names a live process of the daemon's program
# and user (a pid file is writable by that user, so it could name anyone else's process).
daemon_pid() {
  local file pid comm uid
  file="$(pidfile "$1")"
  [[ -f "$file" ]] || return 1
  pid="$(head -c 20 "$file" | tr -d '[:space:]')"
  [[ "$pid" =~ ^[1-9][0-9]*$ ]] || return 1
  comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
  [[ "$comm" == "${1%-n*}" || ("$1" == mariadb && "$comm" == mariadbd) ]] || return 1
  uid="$(awk '/^Uid:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" || return 1
  [[ "$uid" == "$(id -u "$(daemon_user "$1")" 2>/dev/null)" ]] || return 1
  [[ "$(cut -d" " -f3 "/proc/$pid/stat" 2>/dev/null)" != Z ]] || return 1
  echo "$pid"
}
alive() { daemon_pid "$1" >/dev/null; }
