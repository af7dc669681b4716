#!/usr/bin/env bash
# Entrypoint of both images (installed as /usr/local/bin/olmo-entrypoint): sets per-job runtime
# state, then execs the command. Docker runs it as ENTRYPOINT; Apptainer runs it as %runscript, and
# `apptainer exec IMAGE olmo-entrypoint CMD...` runs it in front of any command.
set -euo pipefail

if [[ "${OLMO_IMAGE_VENDOR:-}" == rocm ]]; then
  # MIOpen's kernel database must be per job: a shared one on a parallel file system is corrupted
  # by concurrent writers, and $HOME is often not writable from compute nodes.
  job="${SLURM_JOB_ID:-pid$$}"
  user="${USER:-$(id -un 2>/dev/null || id -u)}"
  export MIOPEN_USER_DB_PATH="${MIOPEN_USER_DB_PATH:-${TMPDIR:-/tmp}/$user-miopen-cache-$job}"
  export MIOPEN_CUSTOM_CACHE_DIR="${MIOPEN_CUSTOM_CACHE_DIR:-$MIOPEN_USER_DB_PATH}"
  mkdir -p "$MIOPEN_USER_DB_PATH" "$MIOPEN_CUSTOM_CACHE_DIR"

  # Apptainer lets the host replace LD_LIBRARY_PATH (LUMI profiles put Cray libfabric there), so
  # the RCCL network plugin directory is added back here rather than trusted to the image ENV.
  plugin="${OLMO_RCCL_PLUGIN_DIR:-/opt/aws-ofi-rccl/lib}"
  if [[ -d "$plugin" && ":${LD_LIBRARY_PATH:-}:" != *":$plugin:"* ]]; then
    export LD_LIBRARY_PATH="$plugin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
fi

# Host library dirs named by the cluster profile (container.host_libs, e.g. Cray libfabric on
# LUMI) go before the image's own dirs, which stay: SINGULARITYENV_LD_LIBRARY_PATH would replace
# them. Empty entries are dropped (an empty entry means the current directory to ld.so).
if [[ -n "${OLMO_HOST_LD_LIBRARY_PATH:-}" ]]; then
  host=""
  IFS=: read -ra dirs <<<"$OLMO_HOST_LD_LIBRARY_PATH"
  for d in "${dirs[@]}"; do
    [[ -n "$d" ]] && host="${host:+$host:}$d"
  done
  [[ -z "$host" ]] || export LD_LIBRARY_PATH="$host${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

[[ $# -gt 0 ]] || set -- olmo env
exec "$@"
