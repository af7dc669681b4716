"""A stand-in for the upstream PyTorch base image, made from this machine (no registry needed).

The real bases (versions.env) cannot be pulled here. This one holds what the Dockerfiles' steps
use from a base: a Python with torch and the package's dependencies (this venv's, copied), pip and
setuptools, bash and the few tools the RUN steps call, and useradd/groupadd. Its `apt-get` only
writes its arguments to APT_LOG (nothing can be fetched here), so a test can check what the
Dockerfile installs. `podman import` turns the tree into a local image that `containers/build.sh
--base` builds FROM.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

PY = f"python{sys.version_info.major}.{sys.version_info.minor}"
PREFIX = Path("/opt/python")
TOOLS = ["sh", "bash", "mkdir", "rm", "chmod", "head", "dirname", "basename", "mktemp", "id"]
TOOLS += ["env", "useradd", "groupadd"]
PATH = f"{PREFIX}/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
APT_LOG = "/var/log/standin-apt-get.log"


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, symlinks=False, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        shutil.copy2(os.path.realpath(src), dst)


def _python(root: Path) -> list[str]:
    """The interpreter and its standard library; returns the ELF files whose libraries we need."""
    base = Path(sys.base_prefix)
    dst = root / PREFIX.relative_to("/")
    _copy(Path(os.path.realpath(base / "bin" / PY)), dst / "bin" / PY)
    (dst / "bin" / "python3").symlink_to(PY)
    (dst / "bin" / "python").symlink_to(PY)
    for lib in base.joinpath("lib").glob("libpython3*.so*"):
        _copy(lib, dst / "lib" / lib.name)
    skip = shutil.ignore_patterns(
        "site-packages", "dist-packages", "test", "__pycache__", "idlelib"
    )
    shutil.copytree(base / "lib" / PY, dst / "lib" / PY, ignore=skip)
    return [str(dst / "bin" / PY), *map(str, (dst / "lib" / PY / "lib-dynload").glob("*.so"))]


def _site_packages(root: Path) -> list[str]:
    """This venv's packages (torch, numpy, pip, setuptools, …) without olmo-hpc itself; returns
    their extension modules (their system libraries, e.g. libstdc++, go into the tree too)."""
    dst = root / PREFIX.relative_to("/") / "lib" / PY / "site-packages"
    dst.mkdir(parents=True)
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(("olmo", "__editable__", "_olmo")):
            _copy(entry, dst / entry.name)
    return [str(p) for p in dst.rglob("*.so*") if p.is_file()]


def _libraries(root: Path, elves: list[str]) -> None:
    libs: set[str] = set()
    env = {**os.environ, "LD_LIBRARY_PATH": str(root / PREFIX.relative_to("/") / "lib")}
    for elf in elves:
        out = subprocess.run(["ldd", elf], capture_output=True, text=True, env=env).stdout
        for line in out.splitlines():
            parts = line.split()
            path = parts[2] if "=>" in parts and len(parts) > 2 else (parts[0] if parts else "")
            if path.startswith("/") and not path.startswith((str(root), sys.prefix)):
                libs.add(path)
    for lib in libs:
        _copy(Path(lib), root / lib.lstrip("/"))


def build_rootfs(root: Path) -> None:
    elves = _python(root) + _site_packages(root)
    for tool in TOOLS:
        path = shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")
        assert path, f"{tool} is needed to build the stand-in base"
        _copy(Path(path), root / "usr/bin" / tool)
        elves.append(path)
    _libraries(root, elves)
    (root / "bin").symlink_to("usr/bin")
    for name in ("passwd", "group", "shadow", "gshadow"):
        line = {"passwd": "root:x:0:0:root:/root:/bin/bash", "group": "root:x:0:"}
        (root / "etc" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "etc" / name).write_text(
            line.get(name, "root:*::" if name == "gshadow" else "root:*:1::::::") + "\n"
        )
    shutil.copy2("/etc/login.defs", root / "etc" / "login.defs")
    (root / "etc/ld.so.conf").write_text(f"{PREFIX}/lib\n")
    subprocess.run(["ldconfig", "-r", str(root)], check=True)
    for d in ("tmp", "home", "root", "var/log"):
        (root / d).mkdir(parents=True, exist_ok=True)
    apt = root / "usr/bin/apt-get"
    apt.write_text(f'#!/bin/sh\necho "$*" >>{APT_LOG}\n')
    apt.chmod(0o755)
    os.chmod(root / "tmp", 0o1777)


def import_image(root: Path, ref: str) -> None:
    """`podman import` the tree as REF with a PATH that finds the copied Python."""
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(
        ["podman", "import", "--quiet", "--change", f"ENV PATH={PATH}", "-", ref],
        stdin=tar.stdout,
        check=True,
        capture_output=True,
    )
    assert tar.wait() == 0
