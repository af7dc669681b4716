#!/bin/bash
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file
# Shared settings of the local SLURM cluster scripts (sourced by up.sh, down.sh, status.sh).
# Usage of the scripts: SCRIPT [--root DIR] [--nodes N]
# Every daemon keeps its state, logs and pid file under ROOT, so `down.sh` can stop each by its pid.

ROOT="${OLMO_SLURM_ROOT:-${OLMO_CACHE:-$HOME/.cache/olmo-hpc}/slurm}"
NODES="${OLMO_SLURM_NODES:-3}"
CLUSTER_NAME="${OLMO_SLURM_CLUSTER:-olmolocal}"
# Ports: slurmctld, slurmdbd, MariaDB, and the first slurmd (node i listens on SLURMD_PORT0 + i).
CTLD_PORT="${OLMO_SLURM_CTLD_PORT:-16817}"
DBD_PORT="${OLMO_SLURM_DBD_PORT:-16819}"
DB_PORT="${OLMO_SLURM_DB_PORT:-16306}"
SLURMD_PORT0="${OLMO_SLURMD_PORT0:-17000}"
CPUS_PER_NODE="${OLMO_SLURM_CPUS_PER_NODE:-2}"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --root) ROOT="$2"; shift 2 ;;
    --root=*) ROOT="${1#--root=}"; shift ;;
    --nodes) NODES="$2"; shift 2 ;;
    --nodes=*) NODES="${1#--nodes=}"; shift ;;
    *) echo "error: unknown argument '$1' (use --root DIR, --nodes N)" >&2; exit 2 ;;
  esac
done
if ! [[ "$NODES" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: --nodes must be a positive integer, got '$NODES'" >&2
  exit 2
fi
mkdir -p "$ROOT"
ROOT="$(cd "$ROOT" && pwd)"
# A unix socket path must stay below 108 bytes.
if [[ ${#ROOT} -gt 80 ]]; then
  echo "error: --root '$ROOT' is too long for the munge socket path; use a shorter directory" >&2
  exit 2
fi
ETC="$ROOT/etc"
RUN="$ROOT/run"
LOG="$ROOT/log"
MUNGE_SOCKET="$ROOT/munge/munge.sock"
export SLURM_CONF="$ETC/slurm.conf"

# True when the pid in file $1 belongs to a live process.
alive() {
  local pid
  [[ -f "$1" ]] || return 1
  pid="$(cat "$1")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && [[ "$(cut -d" " -f3 "/proc/$pid/stat" 2>/dev/null)" != Z ]]
}

note() { echo "olmo-cluster: $*" >&2; }
