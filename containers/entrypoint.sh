#!/usr/bin/env bash
# Entrypoint of both images (installed as /usr/local/bin/olmo-entrypoint): sets per-job runtime
# state, then execs the command. Docker runs it as ENTRYPOINT; Apptainer runs it as %runscript, and
# `apptainer exec IMAGE olmo-entrypoint CMD...` runs it in front of any command. It runs as whoever
# started the container (Singularity ignores the image's USER) and needs no root: it writes only
# under $TMPDIR (default /tmp).
set -euo pipefail

die() {
  echo "olmo-entrypoint: $*" >&2
  exit 2
}

# A directory MIOpen may use: ours, not a symlink, not writable by group or others. A path that
# does not exist yet is created private (mode 700); one that exists is checked, never trusted:
# /tmp is shared, and whoever creates a predictable name there first owns it.
private_dir() {
  local var="$1" dir="${!1}" owner mode
  if [[ ! -e "$dir" && ! -L "$dir" ]]; then
    mkdir -p -- "$(dirname -- "$dir")"
    mkdir -m 700 -- "$dir" 2>/dev/null || true # lost a race: the checks below decide
  fi
  [[ ! -L "$dir" ]] || die "$var=$dir is a symlink: refusing it"
  [[ -d "$dir" ]] || die "$var=$dir is not a directory"
  read -r owner mode < <(stat -c '%u %a' -- "$dir")
  [[ "$owner" == "$(id -u)" ]] || die "$var=$dir belongs to uid $owner, not to uid $(id -u): refusing it"
  (((8#$mode & 8#022) == 0)) || die "$var=$dir is writable by group or others (mode $mode): refusing it"
}

if [[ "${OLMO_IMAGE_VENDOR:-}" == rocm ]]; then
  # MIOpen's kernel database must be per job: a shared one on a parallel file system is corrupted
  # by concurrent writers, and $HOME is often not writable from compute nodes. The launcher makes
  # one per job (mktemp -d, removed when the job ends) and passes it in; without one, this process
  # gets a private directory of its own (unpredictable name, mode 700; left behind on exit).
  if [[ -z "${MIOPEN_USER_DB_PATH:-}" ]]; then
    MIOPEN_USER_DB_PATH="$(mktemp -d "${TMPDIR:-/tmp}/olmo-miopen-${SLURM_JOB_ID:-$$}-XXXXXXXX")" ||
      die "cannot create a private MIOpen cache directory under ${TMPDIR:-/tmp}"
  fi
  export MIOPEN_USER_DB_PATH
  export MIOPEN_CUSTOM_CACHE_DIR="${MIOPEN_CUSTOM_CACHE_DIR:-$MIOPEN_USER_DB_PATH}"
  private_dir MIOPEN_USER_DB_PATH
  [[ "$MIOPEN_CUSTOM_CACHE_DIR" == "$MIOPEN_USER_DB_PATH" ]] || private_dir MIOPEN_CUSTOM_CACHE_DIR

  # A host that still sets SINGULARITYENV_LD_LIBRARY_PATH (an old site profile) replaces the
  # image's value: add the RCCL network plugin directory back rather than trust the image ENV.
  plugin="${OLMO_RCCL_PLUGIN_DIR:-/opt/aws-ofi-rccl/lib}"
  if [[ -d "$plugin" && ":${LD_LIBRARY_PATH:-}:" != *":$plugin:"* ]]; then
    export LD_LIBRARY_PATH="$plugin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
fi

# Host library dirs named by the cluster profile (container.host_libs, e.g. Cray libfabric on
# LUMI) go before the image's own dirs, which stay. Empty entries are dropped: to ld.so an empty
# entry means the current directory.
if [[ -n "${OLMO_HOST_LD_LIBRARY_PATH:-}" ]]; then
  host=""
  IFS=: read -ra dirs <<<"$OLMO_HOST_LD_LIBRARY_PATH"
  for d in "${dirs[@]}"; do
    [[ -z "$d" ]] || host="${host:+$host:}$d"
  done
  [[ -z "$host" ]] || export LD_LIBRARY_PATH="$host${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

[[ $# -gt 0 ]] || set -- olmo env
exec "$@"
