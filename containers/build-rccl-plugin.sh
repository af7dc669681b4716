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

# The plugin, at the pinned commit (a full clone: the commit may be abbreviated).
git clone --quiet "$AWS_OFI_RCCL_REPO" "$work/plugin"
(
  cd "$work/plugin"
  git checkout --quiet "$AWS_OFI_RCCL_COMMIT"
  ./autogen.sh
  CFLAGS="-I$rocm/include/rccl" ./configure --prefix="$plugin_prefix" \
    --with-libfabric="$fabric_prefix" --with-hip="$rocm" --with-rccl="$rocm"
  make -j "$jobs" install
)

# RCCL loads the plugin by this name; fail the build here rather than silently at run time.
[[ -e "$plugin_prefix/lib/librccl-net.so" ]] || die "$plugin_prefix/lib/librccl-net.so was not built"
echo "build-rccl-plugin.sh: plugin $AWS_OFI_RCCL_COMMIT, libfabric $LIBFABRIC_VERSION in $plugin_prefix"
