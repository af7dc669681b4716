"""containers/versions.env is the only place the container stack's versions appear."""

from __future__ import annotations

import re
import shutil
import sys

import pytest

from .common import CONTAINERS, ROOT, sh, versions

CHECK = CONTAINERS / "check_versions.py"


def test_versions_file_pins_everything_the_build_needs():
    pins = versions()
    for key in ("CUDA_BASE_IMAGE", "CUDA_BASE_TAG", "ROCM_BASE_IMAGE", "ROCM_BASE_TAG"):
        assert pins[key], f"{key} is empty"
    for key in ("TORCH_VERSION", "CUDA_VERSION", "ROCM_VERSION", "AWS_OFI_RCCL_COMMIT"):
        assert pins[key], f"{key} is empty"
    # Both images ship the pinned torch (install.sh enforces it): the tags must say the same.
    assert pins["TORCH_VERSION"] in pins["CUDA_BASE_TAG"]
    assert pins["TORCH_VERSION"] in pins["ROCM_BASE_TAG"]
    assert f"cuda{pins['CUDA_VERSION']}" in pins["CUDA_BASE_TAG"]
    assert f"rocm{pins['ROCM_VERSION']}" in pins["ROCM_BASE_TAG"]
    # A full commit (an abbreviation can become ambiguous); build-rccl-plugin.sh checks it too.
    assert re.fullmatch(r"[0-9a-f]{40}", pins["AWS_OFI_RCCL_COMMIT"]), pins["AWS_OFI_RCCL_COMMIT"]
    assert pins["CUDA_RDMA_CORE_VERSION"], "the CUDA image's libibverbs1 version is not pinned"


def test_repository_passes():
    proc = sh(sys.executable, CHECK, "--root", ROOT, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def fake_repo(tmp_path):
    """A non-git copy of the recipes with a README, where literals can be planted."""
    shutil.copytree(CONTAINERS, tmp_path / "containers", ignore=shutil.ignore_patterns("out"))
    (tmp_path / "README.md").write_text("# x\n\n## Containers\n\nsee versions.env\n")
    assert sh(sys.executable, CHECK, "--root", tmp_path, check=False).returncode == 0
    return tmp_path


def _findings(root) -> str:
    proc = sh(sys.executable, CHECK, "--root", root, check=False)
    assert proc.returncode == 1, "the check passed a planted version"
    return proc.stderr


def test_pinned_tag_elsewhere_fails(fake_repo):
    tag = versions()["ROCM_BASE_TAG"]
    (fake_repo / "cluster").mkdir()
    (fake_repo / "cluster" / "site.yaml").write_text(f"image: rocm/pytorch:{tag}\n")
    assert f"cluster/site.yaml:1: {tag!r} is pinned as ROCM_BASE_TAG" in _findings(fake_repo)


def test_torch_version_in_readme_section_fails(fake_repo):
    torch = versions()["TORCH_VERSION"]
    readme = fake_repo / "README.md"
    readme.write_text(readme.read_text() + f"The images ship torch {torch}.\n## Other\n")
    assert f"README.md:6: {torch!r} is pinned as TORCH_VERSION" in _findings(fake_repo)


def test_numbers_outside_recipes_are_not_versions(fake_repo):
    # A bare number elsewhere (a benchmark result, another tool's version) is not a pin.
    (fake_repo / "bench.jsonl").write_text(f'{{"tokens_per_s": {versions()["CUDA_VERSION"]}}}\n')
    assert sh(sys.executable, CHECK, "--root", fake_repo, check=False).returncode == 0


@pytest.mark.parametrize(
    "line, why",
    [
        ("FROM docker.io/library/ubuntu:24.04 AS tools", "FROM docker.io/library/ubuntu:24.04"),
        ("ARG PLUGIN_VERSION=1.2.3", "ARG PLUGIN_VERSION has a default"),
        ("RUN pip install --no-cache-dir numpy==2.0.1", "version literal"),
    ],
)
def test_hard_coded_versions_in_a_dockerfile_fail(fake_repo, line, why):
    dockerfile = fake_repo / "containers" / "Dockerfile.cuda"
    dockerfile.write_text(dockerfile.read_text() + line + "\n")
    n = dockerfile.read_text().count("\n")
    assert f"containers/Dockerfile.cuda:{n}: {why}" in _findings(fake_repo)


def test_version_in_a_script_fails_but_comments_and_stages_pass(fake_repo):
    script = fake_repo / "containers" / "install.sh"
    script.write_text(script.read_text() + "# mentions 9.9.9 in a comment only\n")
    dockerfile = fake_repo / "containers" / "Dockerfile.rocm"
    assert "FROM ${BASE_REF} AS wheel" in dockerfile.read_text()  # stages may be reused
    assert sh(sys.executable, CHECK, "--root", fake_repo, check=False).returncode == 0
    script.write_text(script.read_text() + 'git checkout "v9.9.9"\n')
    assert "containers/install.sh:" in _findings(fake_repo)
