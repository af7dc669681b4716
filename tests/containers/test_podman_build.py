"""The real Dockerfile.cuda, built with podman by containers/build.sh against a stand-in base.

Everything of the image build runs here except pulling the upstream base: the wheel stage, the
install step with its torch guard, the non-root user, labels and ENV. The built image is then
opened and `olmo env` run inside it as the image's user (`podman run` itself cannot start
containers on this machine, so the image's root file system is entered with chroot).
Needs root and podman (`apt-get install podman`); skipped otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from .common import CONTAINERS, ROOT, sh, versions
from .standin_base import APT_LOG, build_rootfs, import_image

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("podman") is None or os.geteuid() != 0,
        reason="needs podman and root (apt-get install podman)",
    ),
]

TAG = f"localhost/olmo-hpc-test:cuda-{os.getpid()}"
BASE = f"localhost/olmo-standin:{os.getpid()}"


def build(*extra: str) -> subprocess.CompletedProcess:
    return sh(
        CONTAINERS / "build.sh", "cuda", "--worktree", "--engine", "podman", "--base", BASE,
        "--tag", TAG, "--", "--isolation", "chroot", "--layers=false", *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    if subprocess.run(["podman", "info"], capture_output=True).returncode != 0:
        pytest.skip("podman is installed but does not work here")
    root = tmp_path_factory.mktemp("standin") / "rootfs"
    build_rootfs(root)
    try:
        import_image(root, BASE)
        shutil.rmtree(root)
        # The stand-in carries this machine's torch, not the pinned one: say so explicitly.
        log = build("--build-arg", f"TORCH_VERSION={torch.__version__.split('+')[0]}")
        config = json.loads(sh("podman", "image", "inspect", TAG).stdout)[0]["Config"]
        # The commit build.sh announced (HEAD may move while the build runs).
        commit = re.search(r"from commit (\S+) on ", log.stderr).group(1)
        yield {"config": config, "commit": commit}
    finally:
        subprocess.run(["podman", "rmi", "-f", TAG, BASE], capture_output=True)


def test_built_from_this_checkout(image):
    commit = image["commit"].removesuffix("-dirty")
    assert re.fullmatch(r"[0-9a-f]{40}", commit), image["commit"]
    sh("git", "-C", ROOT, "merge-base", "--is-ancestor", commit, "HEAD")  # raises if not


def test_labels_env_and_user(image):
    cfg = image["config"]
    assert cfg["User"] == "10001:10001"
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["OLMO_IMAGE"] == TAG
    assert env["OLMO_GIT_COMMIT"] == image["commit"]
    labels = cfg["Labels"]
    assert labels["org.opencontainers.image.revision"] == image["commit"]
    assert labels["org.opencontainers.image.base.name"] == BASE
    assert labels["org.olmo-hpc.cuda"] == versions()["CUDA_VERSION"]
    assert cfg["Entrypoint"] == ["/usr/local/bin/olmo-entrypoint"]
    # No credentials or index settings in the image's environment.
    assert not [k for k in env if any(s in k for s in ("TOKEN", "KEY", "PASSWORD", "PIP_"))]


@pytest.fixture(scope="module")
def rootfs(image):
    """A writable container of the image, its root file system mounted on this machine."""
    ctr = sh("podman", "create", TAG).stdout.strip()
    try:
        yield sh("podman", "mount", ctr).stdout.strip()
    finally:
        subprocess.run(["podman", "umount", ctr], capture_output=True)
        subprocess.run(["podman", "rm", "-f", ctr], capture_output=True)


def test_wheel_installed_without_source_tree(rootfs):
    [site] = Path(rootfs, "opt/python/lib").glob("python3*/site-packages")
    assert (site / "olmo" / "cli.py").is_file()
    assert not list(site.glob("__editable__*"))
    for gone in ("src", "tmp/wheels", "root/.netrc", "root/.git-credentials"):
        assert not os.path.exists(f"{rootfs}/{gone}"), gone


def test_runtime_stage_installs_infiniband_verbs_pinned(rootfs):
    """The stand-in's apt-get records what Dockerfile.cuda asks for: the verbs library and the
    mlx5 provider at the rdma-core version of versions.env."""
    log = Path(rootfs, APT_LOG.lstrip("/")).read_text().splitlines()
    pin = versions()["CUDA_RDMA_CORE_VERSION"]
    [install] = [line.split() for line in log if line.startswith("install ")]
    assert {f"libibverbs1={pin}", f"ibverbs-providers={pin}"} <= set(install), install
    assert "--no-install-recommends" in install and "update" in log


def test_olmo_env_inside_the_image_as_its_user(image, rootfs):
    cfg = image["config"]
    for d in ("dev", "proc"):
        os.makedirs(f"{rootfs}/{d}", exist_ok=True)
    inner = ["chroot", f"--userspec={cfg['User']}", rootfs, "/usr/bin/env", "-i", *cfg["Env"]]
    inner += [*cfg["Entrypoint"], "olmo", "env", "--json"]
    script = 'mount --rbind /dev "$1/dev" && mount -t proc proc "$1/proc" && shift && exec "$@"'
    proc = sh("unshare", "--mount", "sh", "-c", script, "sh", rootfs, *inner)
    fp = json.loads(proc.stdout)
    assert fp["container"]["image"] == TAG
    assert fp["git_commit"] == image["commit"]
