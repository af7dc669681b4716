#!/usr/bin/env bash
# Builds the olmo-hpc wheel and installs it, non-editable, into the image's Python. Both Dockerfiles
# run exactly this script, and tests/containers runs it in a throwaway venv.
#
#   install.sh wheel SRC_DIR OUT_DIR        build olmo_hpc-*.whl (no deps) from a source tree
#   install.sh install WHEEL_DIR [EXTRAS]   install it with its deps, keeping the base's torch
#
# Environment: PYTHON (default python3), TORCH_VERSION (from containers/versions.env: the build
# fails if the base image ships another torch), ROCM_PATH (default /opt/rocm).
set -euo pipefail

PYTHON="${PYTHON:-python3}"
# Image builds run as root into the image's own Python; pip's warning about that is noise there.
export PIP_ROOT_USER_ACTION=ignore

die() {
  echo "install.sh: $*" >&2
  exit 2
}

build_wheel() {
  local src out
  [[ -f "$1/pyproject.toml" ]] || die "$1/pyproject.toml not found: pass the repository root"
  # Absolute paths: pip reads a bare relative name ("src") as a package to download.
  src="$(cd "$1" && pwd)"
  mkdir -p "$2"
  out="$(cd "$2" && pwd)"
  # The base image's setuptools builds it when it is recent enough (nothing fetched); otherwise
  # pip's build isolation fetches what pyproject.toml's build-system asks for.
  local isolation=(--no-build-isolation)
  "$PYTHON" -c 'import setuptools as s, sys; sys.exit(int(s.__version__.split(".")[0]) < 68)' \
    2>/dev/null || isolation=()
  "$PYTHON" -m pip wheel --no-deps "${isolation[@]}" --no-cache-dir --wheel-dir "$out" "$src"
  compgen -G "$out/olmo_hpc-*.whl" >/dev/null || die "no olmo_hpc-*.whl was written to $out"
}

# The torch the base image ships, as pip sees it (with its local tag, e.g. +cu126); exits 2 if none.
base_torch() {
  "$PYTHON" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null ||
    die "torch is not installed for $PYTHON: the base image must provide it (see versions.env)"
}

install_wheel() {
  local dir="$1" extras="${2:-}" whl have constraints
  whl="$(compgen -G "$dir/olmo_hpc-*.whl" | head -n 1)" || true
  [[ -n "$whl" ]] || die "no olmo_hpc-*.whl in $dir: run 'install.sh wheel' first"
  whl="$(cd "$(dirname "$whl")" && pwd)/$(basename "$whl")"
  have="$(base_torch)"
  if [[ -n "${TORCH_VERSION:-}" && "${have%%+*}" != "$TORCH_VERSION" ]]; then
    die "the base image has torch $have but versions.env pins TORCH_VERSION=$TORCH_VERSION"
  fi
  # Pin torch to the installed vendor build: a resolver upgrade would replace the CUDA/ROCm torch
  # of the base image with a generic wheel.
  constraints="$(mktemp)"
  echo "torch==$have" >"$constraints"
  # Ubuntu-based images mark the system Python as externally managed; this image is its only user.
  PIP_BREAK_SYSTEM_PACKAGES=1 "$PYTHON" -m pip install --no-cache-dir \
    --constraint "$constraints" "$whl${extras:+[$extras]}"
  rm -f "$constraints"
  install_amdsmi
  verify
}

# ROCm ships the amdsmi Python bindings matching its library; the PyPI wheel may not match it.
install_amdsmi() {
  local src="${ROCM_PATH:-/opt/rocm}/share/amd_smi"
  [[ -d "$src" ]] || return 0
  "$PYTHON" -c 'import amdsmi' 2>/dev/null && return 0
  PIP_BREAK_SYSTEM_PACKAGES=1 "$PYTHON" -m pip install --no-cache-dir "$src"
}

# Fails the build unless the package is a regular (non-editable) install that can run.
verify() {
  "$PYTHON" - <<'PY'
import importlib.metadata as md
import json
import sys

dist = md.distribution("olmo-hpc")
direct = json.loads(dist.read_text("direct_url.json") or "{}")
if direct.get("dir_info", {}).get("editable"):
    sys.exit("install.sh: olmo-hpc is installed in editable mode")
import olmo.cli  # noqa: E402,F401  (imports torch and every subcommand)

print(f"install.sh: olmo-hpc {dist.version} installed in {dist.locate_file('')}")
PY
  "$PYTHON" -m olmo env --json >/dev/null
}

case "${1:-}" in
  wheel)
    [[ $# -eq 3 ]] || die "usage: install.sh wheel SRC_DIR OUT_DIR"
    build_wheel "$2" "$3"
    ;;
  install)
    [[ $# -ge 2 && $# -le 3 ]] || die "usage: install.sh install WHEEL_DIR [EXTRAS]"
    install_wheel "$2" "${3:-}"
    ;;
  *) die "usage: install.sh {wheel SRC_DIR OUT_DIR | install WHEEL_DIR [EXTRAS]}" ;;
esac
