#!/usr/bin/env bash
# Builds libfabric and the aws-ofi-rccl plugin (RCCL over libfabric: Slingshot/CXI on LUMI) against
# the ROCm of the image it runs in. Run by Dockerfile.rocm's first stage; the sources and versions
# come from containers/versions.env through build args:
#   LIBFABRIC_REPO LIBFABRIC_VERSION AWS_OFI_RCCL_REPO AWS_OFI_RCCL_COMMIT
# Usage: build-rccl-plugin.sh LIBFABRIC_PREFIX PLUGIN_PREFIX
set -euo pipefail

die() {
  echo "build-rccl-plugin.sh: $*" >&2
  exit 2
}

[[ $# -eq 2 ]] || die "usage: build-rccl-plugin.sh LIBFABRIC_PREFIX PLUGIN_PREFIX"
fabric_prefix="$1"
plugin_prefix="$2"
rocm="${ROCM_PATH:-/opt/rocm}"
for var in LIBFABRIC_REPO LIBFABRIC_VERSION AWS_OFI_RCCL_REPO AWS_OFI_RCCL_COMMIT; do
  [[ -n "${!var:-}" ]] || die "$var is not set: build with containers/build.sh (reads versions.env)"
done
[[ "$AWS_OFI_RCCL_COMMIT" =~ ^[0-9a-f]{40}$ ]] ||
  die "AWS_OFI_RCCL_COMMIT must be a full 40-hex commit, got '$AWS_OFI_RCCL_COMMIT'"
[[ -f "$rocm/include/rccl/rccl.h" ]] || die "$rocm/include/rccl/rccl.h not found: not a ROCm image"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
jobs="$(nproc)"

# libfabric: headers and a fallback library. The ABI is stable, so the plugin also runs against
# the host's (newer or equal) Cray libfabric that carries the CXI provider.
git clone --quiet --depth 1 --branch "v$LIBFABRIC_VERSION" "$LIBFABRIC_REPO" "$work/libfabric"
(
  cd "$work/libfabric"
  ./autogen.sh
  ./configure --prefix="$fabric_prefix" --disable-static --disable-verbs --disable-efa
  make -j "$jobs" install
)

# The plugin, at the pinned commit (a full clone: all branches, the pin is on `cxi`).
git clone --quiet "$AWS_OFI_RCCL_REPO" "$work/plugin"
(
  cd "$work/plugin"
  git checkout --quiet "$AWS_OFI_RCCL_COMMIT"
  [[ "$(git rev-parse HEAD)" == "$AWS_OFI_RCCL_COMMIT" ]] || die "checkout of $AWS_OFI_RCCL_COMMIT failed"
  ./autogen.sh
  # --disable-tests: the tests are MPI programs (configure.ac requires mpi.h for them).
  # The RUNPATH to this libfabric is the fallback when no host libfabric is on LD_LIBRARY_PATH
  # (which, being searched first, lets the host's Cray libfabric win on LUMI).
  CFLAGS="-I$rocm/include/rccl" LDFLAGS="-Wl,-rpath,$fabric_prefix/lib" ./configure \
    --prefix="$plugin_prefix" --disable-tests \
    --with-libfabric="$fabric_prefix" --with-hip="$rocm" --with-rccl="$rocm"
  make -j "$jobs" install
)

# RCCL loads the plugin by this name; fail the build here rather than silently at run time.
lib="$plugin_prefix/lib/librccl-net.so"
[[ -e "$lib" ]] || die "$lib was not built"
dynamic="$(readelf -d "$lib")"
grep -Eq "\((RUNPATH|RPATH)\).*$fabric_prefix/lib" <<<"$dynamic" ||
  die "$lib has no RUNPATH to $fabric_prefix/lib"
echo "build-rccl-plugin.sh: plugin $AWS_OFI_RCCL_COMMIT, libfabric $LIBFABRIC_VERSION in $plugin_prefix"
