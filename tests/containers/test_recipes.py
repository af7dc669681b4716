"""What the Dockerfiles promise without being built: the ROCm image's plugin directory and
LD_LIBRARY_PATH as plain ENV lines (the launcher's tests read the image's environment from them),
the CUDA image's InfiniBand verbs pinned in versions.env, and a non-root user in both."""

from __future__ import annotations

import re

import pytest

from .common import CONTAINERS, final_stage, image_env

PLUGIN_DIR = "/opt/aws-ofi-rccl/lib"


def test_rocm_image_env_names_the_plugin_dir_first_on_ld_library_path():
    lines = re.findall(r"(?m)^ENV\s+(.+)$", final_stage("rocm"))
    assert f"OLMO_RCCL_PLUGIN_DIR={PLUGIN_DIR}" in lines
    assert f'LD_LIBRARY_PATH="{PLUGIN_DIR}${{LD_LIBRARY_PATH:+:${{LD_LIBRARY_PATH}}}}"' in lines
    base = {"LD_LIBRARY_PATH": "/opt/ompi/lib:/opt/rocm/lib:/usr/local/lib"}
    env = image_env("rocm", base)
    assert env["OLMO_RCCL_PLUGIN_DIR"] == PLUGIN_DIR
    assert env["LD_LIBRARY_PATH"] == f"{PLUGIN_DIR}:{base['LD_LIBRARY_PATH']}"
    assert image_env("rocm", {})["LD_LIBRARY_PATH"] == PLUGIN_DIR  # no empty entry


def test_plugin_dir_is_where_the_build_puts_it_and_the_entrypoint_looks():
    dockerfile = (CONTAINERS / "Dockerfile.rocm").read_text()
    prefix = PLUGIN_DIR.removesuffix("/lib")
    assert re.search(rf"build-rccl-plugin\.sh /opt/libfabric {prefix}$", dockerfile, re.M)
    assert f"COPY --from=rccl-plugin {prefix} {prefix}" in dockerfile
    assert '"$OLMO_RCCL_PLUGIN_DIR/librccl-net.so"' in dockerfile  # the build checks it is there
    assert f"${{OLMO_RCCL_PLUGIN_DIR:-{PLUGIN_DIR}}}" in (CONTAINERS / "entrypoint.sh").read_text()
    assert f"${{OLMO_RCCL_PLUGIN_DIR:-{PLUGIN_DIR}}}" in (CONTAINERS / "olmo-rocm.def").read_text()


def test_cuda_image_installs_the_verbs_library_and_mlx5_provider_pinned():
    stage = final_stage("cuda")
    assert re.search(r"(?m)^ARG CUDA_RDMA_CORE_VERSION$", stage)
    [install] = re.findall(r"(?m)^RUN apt-get update .*$", stage)
    packages = re.findall(r'"([\w.+-]+)=\$\{CUDA_RDMA_CORE_VERSION\}"', install)
    assert {"libibverbs1", "ibverbs-providers"} <= set(packages), install
    assert "--no-install-recommends" in install and "rm -rf /var/lib/apt/lists/*" in install
    assert "/etc/libibverbs.d/mlx5.driver" in (CONTAINERS / "olmo-cuda.def").read_text()  # .sif


@pytest.mark.parametrize("vendor", ["cuda", "rocm"])
def test_image_runs_as_the_unprivileged_user(vendor):
    """USER is the last word on the user in the final stage; nothing runs as root after it.
    (Singularity ignores USER and runs as the caller: nothing may need root at run time.)"""
    stage = final_stage(vendor)
    users = re.findall(r"(?m)^USER\s+(\S+)$", stage)
    assert users == ["10001:10001"]
    after = stage.split("USER 10001:10001", 1)[1]
    assert not re.search(r"(?m)^RUN\s", after)
    assert re.search(r"useradd .*--uid 10001 --gid 10001 olmo", stage)
