"""containers/install.sh, the step both Dockerfiles run, in a throwaway venv standing in for the
base image: the base's packages (torch …) are visible to it, the olmo-hpc checkout is not."""

from __future__ import annotations

import json
import shutil
import sys
import sysconfig
from pathlib import Path

import pytest

from .common import CONTAINERS, ROOT, sh

INSTALL = CONTAINERS / "install.sh"
OFFLINE = {"PIP_NO_INDEX": "1"}  # everything must come from the "base image"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    """A venv whose site-packages sees this venv's packages (minus olmo-hpc) through a .pth."""
    tmp = tmp_path_factory.mktemp("image")
    deps = tmp / "base-site-packages"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(("olmo", "__editable__", "_olmo")):
            (deps / entry.name).symlink_to(entry)
    venv = tmp / "venv"
    sh(Path(sys.base_prefix) / "bin" / "python3", "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = sh(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    (Path(site.stdout.strip()) / "base.pth").write_text(f"{deps}\n")
    return {"tmp": tmp, "python": python, "site": Path(site.stdout.strip())}


@pytest.fixture(scope="module")
def installed(base) -> dict:
    """What the Dockerfiles do: wheel stage (COPY pyproject.toml README.md olmo) then install."""
    src = base["tmp"] / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "olmo", src / "olmo", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**OFFLINE, "PYTHON": str(base["python"])}
    sh("bash", INSTALL, "wheel", src, base["tmp"] / "wheels", env=env)
    torch = sh(base["python"], "-c", "import torch; print(torch.__version__.split('+')[0])")
    env["TORCH_VERSION"] = torch.stdout.strip()
    proc = sh("bash", INSTALL, "install", base["tmp"] / "wheels", "wandb", env=env)
    return {**base, "log": proc.stdout + proc.stderr}


def test_wheel_installs_non_editable(installed):
    assert "installed in" in installed["log"]
    code = (
        "import importlib.metadata as m, json, olmo; d = m.distribution('olmo-hpc');"
        "print(json.dumps([olmo.__file__, d.read_text('direct_url.json')]))"
    )
    out = sh(installed["python"], "-c", code, cwd=installed["tmp"]).stdout
    path, direct = json.loads(out)
    assert Path(path).is_relative_to(installed["site"]), path
    assert not json.loads(direct).get("dir_info", {}).get("editable")
    assert not (installed["site"] / "__editable__.olmo_hpc-0.1.0.pth").exists()


def test_package_data_is_in_the_wheel(installed):
    code = (
        "from importlib.resources import files; from olmo.tokenizer import load_tokenizer;"
        "print(load_tokenizer('olmo').eos_id, (files('olmo.data') / 'corpus').is_dir())"
    )
    out = sh(installed["python"], "-c", code, cwd=installed["tmp"]).stdout.split()
    assert out == ["50279", "True"]


def test_olmo_env_reports_the_image(installed):
    image = {
        "OLMO_IMAGE": "registry.example.org/olmo:rocm-abc",
        "OLMO_IMAGE_DIGEST": "sha256:" + "ab" * 32,
        "OLMO_GIT_COMMIT": "0123456789abcdef0123456789abcdef01234567",
    }
    olmo = installed["python"].parent / "olmo"
    fp = json.loads(sh(olmo, "env", "--json", env=image, cwd=installed["tmp"]).stdout)
    assert fp["container"]["image"] == image["OLMO_IMAGE"]
    assert fp["container"]["image_digest"] == image["OLMO_IMAGE_DIGEST"]
    assert fp["git_commit"] == image["OLMO_GIT_COMMIT"]


def test_a_base_with_another_torch_fails_the_build(installed):
    env = {**OFFLINE, "PYTHON": str(installed["python"]), "TORCH_VERSION": "0.0.1"}
    proc = sh("bash", INSTALL, "install", installed["tmp"] / "wheels", env=env, check=False)
    assert proc.returncode == 2
    assert "versions.env pins TORCH_VERSION=0.0.1" in proc.stderr


def test_a_base_without_torch_fails_the_build(tmp_path):
    venv = tmp_path / "bare"
    sh(Path(sys.base_prefix) / "bin" / "python3", "-m", "venv", "--without-pip", venv)
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "olmo_hpc-0.1.0-py3-none-any.whl").write_bytes(b"")
    env = {**OFFLINE, "PYTHON": str(venv / "bin" / "python")}
    proc = sh("bash", INSTALL, "install", tmp_path / "w", env=env, check=False)
    assert proc.returncode == 2 and "torch is not installed" in proc.stderr


def test_usage_errors(tmp_path):
    proc = sh("bash", INSTALL, "wheel", tmp_path, tmp_path / "out", check=False)
    assert proc.returncode == 2 and "pyproject.toml not found" in proc.stderr
    proc = sh("bash", INSTALL, "install", tmp_path, check=False)
    assert proc.returncode == 2 and "no olmo_hpc-*.whl" in proc.stderr
