#!/usr/bin/env bash
# Builds the olmo-hpc image for one vendor with the pins of containers/versions.env, and optionally
# pushes it and converts it to an Apptainer/Singularity .sif.
#
#   containers/build.sh {cuda|rocm} [--sif] [--push REF] [--engine docker|podman] [--tag NAME]
#                       [--base REF] [--worktree] [--dry-run] [-- ENGINE_BUILD_OPTIONS...]
#
#   --sif        also write containers/out/olmo-VENDOR.sif (needs apptainer or singularity)
#   --push REF   tag the image as REF and push it (log in with `ENGINE login` first; no credentials
#                are read or stored here)
#   --engine     docker or podman (default: $OLMO_CONTAINER_ENGINE, else whichever is installed)
#   --tag NAME   local image name (default olmo-hpc:VENDOR-COMMIT)
#   --base REF   build FROM REF instead of the pinned base (a site mirror of it; tests use a local
#                image); the base.name label records REF
#   --worktree   build the working tree (tracked + untracked, not ignored) instead of HEAD; the
#                commit label then ends in -dirty when there are uncommitted changes
#   --dry-run    print the commands instead of running them
# Anything after `--` goes to `ENGINE build` (e.g. `-- --target wheel --isolation chroot`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
out_dir="$here/out"

die() {
  echo "build.sh: $*" >&2
  exit 2
}

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; }

run() {
  if [[ "$dry_run" == 1 ]]; then
    printf '%q ' "$@"
    echo
  else
    "$@"
  fi
}

parse_args() {
  vendor="" sif=0 push_ref="" engine="${OLMO_CONTAINER_ENGINE:-}" tag="" base_override=""
  worktree=0 dry_run=0
  extra=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      cuda | rocm) vendor="$1" ;;
      --sif) sif=1 ;;
      --push) push_ref="${2:?--push needs an image reference}" && shift ;;
      --engine) engine="${2:?--engine needs docker or podman}" && shift ;;
      --tag) tag="${2:?--tag needs a name}" && shift ;;
      --base) base_override="${2:?--base needs an image reference}" && shift ;;
      --worktree) worktree=1 ;;
      --dry-run) dry_run=1 ;;
      -h | --help) usage && exit 0 ;;
      --) shift && extra=("$@") && break ;;
      *) die "unknown argument '$1' (see containers/build.sh --help)" ;;
    esac
    shift
  done
  [[ -n "$vendor" ]] || die "name the vendor: containers/build.sh {cuda|rocm} (see --help)"
}

pick_engine() {
  # The first engine that answers (a docker client without a daemon does not), else the first found.
  if [[ -z "$engine" ]]; then
    for candidate in docker podman; do
      command -v "$candidate" >/dev/null || continue
      [[ -n "$engine" ]] || engine="$candidate"
      "$candidate" info >/dev/null 2>&1 && engine="$candidate" && break
    done
  fi
  [[ "$engine" == docker || "$engine" == podman ]] ||
    die "no container engine: install docker or podman, or pass --engine"
  [[ "$dry_run" == 1 ]] || command -v "$engine" >/dev/null || die "$engine is not installed"
}

# Reads versions.env into BUILD_ARGS (--build-arg KEY=VALUE for every pin) and this vendor's base.
load_versions() {
  local file="$here/versions.env" key value
  [[ -f "$file" ]] || die "$file is missing"
  # The other vendor's pins, and the base image parts (BASE_REF carries them), are not arguments.
  local skip='^(CUDA_|[A-Z]+_BASE_)'
  [[ "$vendor" == rocm ]] || skip='^(ROCM_|AWS_OFI_RCCL_|LIBFABRIC_|[A-Z]+_BASE_)'
  build_args=()
  while IFS='=' read -r key value; do
    printf -v "$key" '%s' "$value"
    [[ "$key" =~ $skip ]] || build_args+=(--build-arg "$key=$value")
  done < <(grep -E '^[A-Z][A-Z0-9_]*=' "$file")
  local prefix="${vendor^^}"
  local image_var="${prefix}_BASE_IMAGE" tag_var="${prefix}_BASE_TAG" digest_var="${prefix}_BASE_DIGEST"
  [[ -n "${!image_var:-}" && -n "${!tag_var:-}" ]] || die "$file: set $image_var and $tag_var"
  base_ref="${!image_var}:${!tag_var}"
  base_digest="${!digest_var:-}"
  [[ -z "$base_digest" ]] || base_ref="$base_ref@$base_digest"
  if [[ -n "$base_override" ]]; then
    base_ref="$base_override" base_digest="(--base)"
  fi
}

# The build context is exactly one commit (or the working tree with --worktree), so the commit
# label describes what is inside the image.
make_context() {
  git -C "$root" rev-parse --git-dir >/dev/null 2>&1 || die "$root is not a git checkout"
  git_commit="$(git -C "$root" rev-parse HEAD)"
  context="$(mktemp -d)"
  trap 'rm -rf "$context"' EXIT
  if [[ "$worktree" == 1 ]]; then
    [[ -z "$(git -C "$root" status --porcelain)" ]] || git_commit="$git_commit-dirty"
    (cd "$root" && git ls-files -z -co --exclude-standard | xargs -0 tar -cf - --no-recursion) |
      tar -xf - -C "$context"
  else
    if [[ -n "$(git -C "$root" status --porcelain -- olmo pyproject.toml README.md containers)" ]]; then
      echo "build.sh: uncommitted changes are NOT in the image (it is built from HEAD; see --worktree)" >&2
    fi
    git -C "$root" archive HEAD | tar -xf - -C "$context"
  fi
}

build_image() {
  image="${tag:-olmo-hpc:$vendor-${git_commit:0:12}}"
  echo "build.sh: building $image from commit $git_commit on $base_ref" >&2
  run "$engine" build -f "$context/containers/Dockerfile.$vendor" -t "$image" \
    "${build_args[@]}" --build-arg "BASE_REF=$base_ref" --build-arg "GIT_COMMIT=$git_commit" \
    --build-arg "IMAGE_REF=${push_ref:-$image}" "${extra[@]}" "$context"
  if [[ -z "$base_digest" && "$dry_run" == 0 ]]; then
    local pinned
    pinned="$("$engine" image inspect --format '{{index .RepoDigests 0}}' "$base_ref" 2>/dev/null)" || true
    echo "build.sh: base not pinned by digest; pin ${vendor^^}_BASE_DIGEST=${pinned#*@} in containers/versions.env" >&2
  fi
}

push_image() {
  [[ -n "$push_ref" ]] || return 0
  run "$engine" tag "$image" "$push_ref"
  run "$engine" push "$push_ref"
}

# The digest the SIF records: the registry's manifest digest once pushed, else the local image id.
image_digest() {
  [[ "$dry_run" == 0 ]] || { echo "sha256:DRY-RUN" && return; }
  local ref
  if [[ -n "$push_ref" ]]; then
    ref="$("$engine" image inspect --format '{{index .RepoDigests 0}}' "$push_ref")"
    echo "${ref#*@}"
  else
    ref="$("$engine" image inspect --format '{{.Id}}' "$image")"
    echo "sha256:${ref#sha256:}"
  fi
}

build_sif() {
  [[ "$sif" == 1 ]] || return 0
  local apptainer
  apptainer="$(command -v apptainer || command -v singularity || true)"
  [[ -n "$apptainer" || "$dry_run" == 1 ]] ||
    die "--sif needs apptainer or singularity; or copy containers/out/olmo-$vendor.tar to a machine with it"
  mkdir -p "$out_dir"
  local archive="$out_dir/olmo-$vendor.tar"
  run "$engine" save -o "$archive" "$image"
  run "${apptainer:-apptainer}" build --force --build-arg "ARCHIVE=$archive" \
    --build-arg "IMAGE_REF=${push_ref:-$image}" --build-arg "IMAGE_DIGEST=$(image_digest)" \
    --build-arg "GIT_COMMIT=$git_commit" "$out_dir/olmo-$vendor.sif" "$here/olmo-$vendor.def"
}

parse_args "$@"
pick_engine
load_versions
make_context
build_image
push_image
build_sif
