"""build.sh command lines, the entrypoint's per-job settings, and the lint tools on our files."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from .common import CONTAINERS, ROOT, head_commit, sh, versions

BUILD = CONTAINERS / "build.sh"
ENTRYPOINT = CONTAINERS / "entrypoint.sh"


def dry_run(*args: str) -> list[list[str]]:
    out = sh(BUILD, "--dry-run", "--engine", "docker", *args).stdout
    return [shlex.split(line) for line in out.splitlines()]


def build_args(cmd: list[str]) -> dict[str, str]:
    return dict(cmd[i + 1].split("=", 1) for i, a in enumerate(cmd) if a == "--build-arg")


@pytest.mark.parametrize("vendor", ["cuda", "rocm"])
def test_build_passes_every_pin_of_its_vendor(vendor):
    before = head_commit()  # other work may commit meanwhile
    [cmd] = dry_run(vendor)
    assert cmd[:2] == ["docker", "build"]
    assert cmd[cmd.index("-f") + 1].endswith(f"containers/Dockerfile.{vendor}")
    args, pins, prefix = build_args(cmd), versions(), vendor.upper()
    assert args["BASE_REF"] == f"{pins[prefix + '_BASE_IMAGE']}:{pins[prefix + '_BASE_TAG']}" + (
        f"@{pins[prefix + '_BASE_DIGEST']}" if pins[prefix + "_BASE_DIGEST"] else ""
    )
    assert args["GIT_COMMIT"] in (before, head_commit())
    assert args["TORCH_VERSION"] == pins["TORCH_VERSION"]
    assert args[f"{prefix}_VERSION"] == pins[f"{prefix}_VERSION"]
    mine = {k for k in pins if k.startswith(f"{prefix}_") and not k.startswith(f"{prefix}_BASE_")}
    assert {k: args.get(k) for k in mine} == {k: pins[k] for k in mine}
    plugin = {"AWS_OFI_RCCL_COMMIT", "AWS_OFI_RCCL_REPO", "LIBFABRIC_VERSION", "LIBFABRIC_REPO"}
    assert plugin <= set(args) if vendor == "rocm" else not plugin & set(args)
    other = "ROCM" if vendor == "cuda" else "CUDA"
    assert not [k for k in args if k.startswith(other)]


def test_push_and_sif_commands():
    before = head_commit()
    cmds = dry_run("rocm", "--sif", "--push", "registry.example.org/team/olmo:rocm")
    build, tag, push, save, sif = cmds
    image = build[build.index("-t") + 1]
    assert build_args(build)["IMAGE_REF"] == "registry.example.org/team/olmo:rocm"
    assert tag == ["docker", "tag", image, "registry.example.org/team/olmo:rocm"]
    assert push == ["docker", "push", "registry.example.org/team/olmo:rocm"]
    assert save[:3] == ["docker", "save", "-o"] and save[-1] == image
    assert sif[:3] == ["apptainer", "build", "--force"]
    args = build_args(sif)
    assert args["ARCHIVE"] == save[3] and args["GIT_COMMIT"] in (before, head_commit())
    assert sif[-2:] == [
        str(CONTAINERS / "out" / "olmo-rocm.sif"),
        str(CONTAINERS / "olmo-rocm.def"),
    ]


def test_extra_engine_options_and_base_override_reach_the_build():
    [cmd] = dry_run("cuda", "--base", "mirror.site/pytorch:x", "--", "--target", "wheel")
    assert build_args(cmd)["BASE_REF"] == "mirror.site/pytorch:x"
    assert cmd[-3:-1] == ["--target", "wheel"]


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "name the vendor"),
        (["cuda", "--bogus"], "unknown argument '--bogus'"),
        (["rocm", "--engine", "lxc"], "no container engine"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, message):
    proc = sh(BUILD, "--dry-run", *args, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def entrypoint(tmp_path, env: dict[str, str], *cmd: str) -> subprocess.CompletedProcess:
    """containers/entrypoint.sh under bash, with a scratch TMPDIR and nothing else inherited."""
    base = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "USER": "alice"}
    return subprocess.run(
        ["bash", ENTRYPOINT, *cmd], env={**base, **env}, capture_output=True, text=True
    )


def run_entrypoint(tmp_path, env: dict[str, str], *cmd: str) -> str:
    proc = entrypoint(tmp_path, env, *cmd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


SHOW = ("sh", "-c", 'echo "$MIOPEN_USER_DB_PATH|$MIOPEN_CUSTOM_CACHE_DIR|$LD_LIBRARY_PATH"')
ROCM = {"OLMO_IMAGE_VENDOR": "rocm", "SLURM_JOB_ID": "4242"}


def test_rocm_entrypoint_keeps_the_plugin_on_ld_library_path(tmp_path):
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    env = {**ROCM, "OLMO_RCCL_PLUGIN_DIR": str(plugin)}
    env["LD_LIBRARY_PATH"] = "/opt/cray/libfabric/lib64"
    ld = run_entrypoint(tmp_path, env, *SHOW).strip().split("|")[2]
    # The plugin goes in front of the host's libfabric, once.
    assert ld == f"{plugin}:/opt/cray/libfabric/lib64"
    env["LD_LIBRARY_PATH"] = ld
    assert run_entrypoint(tmp_path, env, *SHOW).strip().split("|")[2] == ld


def test_rocm_entrypoint_without_a_cache_makes_a_private_one(tmp_path):
    """No MIOPEN_USER_DB_PATH: a fresh mktemp -d directory (mode 700, unpredictable name) under
    $TMPDIR for each run, used for both MIOpen variables; never /tmp/$USER-miopen-cache-$JOB."""
    runs = [run_entrypoint(tmp_path, ROCM, *SHOW).split("|")[:2] for _ in range(2)]
    (db, custom), (db2, _) = runs
    assert db == custom and db != db2
    for path in (Path(db), Path(db2)):
        assert path.parent == tmp_path and path.is_dir()
        assert re.fullmatch(r"olmo-miopen-4242-\w{8}", path.name), path.name
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
        assert path.stat().st_uid == os.getuid()
    assert not (tmp_path / "alice-miopen-cache-4242").exists()


def test_rocm_entrypoint_takes_the_launchers_cache(tmp_path):
    made = tmp_path / "olmo-miopen-4242-0123456789abcdef"  # as the job script's mktemp -d makes it
    made.mkdir(mode=0o700)
    env = {**ROCM, "MIOPEN_USER_DB_PATH": str(made)}
    assert run_entrypoint(tmp_path, env, *SHOW).split("|")[:2] == [str(made), str(made)]
    # On the job's other nodes the path does not exist yet: it is created private.
    elsewhere = tmp_path / "node2" / "olmo-miopen-4242-0123456789abcdef"
    env = {**ROCM, "MIOPEN_USER_DB_PATH": str(elsewhere)}
    assert run_entrypoint(tmp_path, env, *SHOW).split("|")[:2] == [str(elsewhere)] * 2
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o700
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node2", made.name]  # nothing else


def refused(tmp_path, env: dict[str, str], why: str) -> None:
    marker = tmp_path / "ran"
    proc = entrypoint(tmp_path, {**ROCM, **env}, "touch", str(marker))
    assert proc.returncode == 2, proc.stderr
    assert why in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("olmo-entrypoint: ")
    assert not marker.exists(), "the command ran with a cache directory others can write"


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o770, 0o702])
def test_rocm_entrypoint_refuses_a_cache_others_can_write(tmp_path, mode):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    refused(tmp_path, {"MIOPEN_USER_DB_PATH": str(shared)}, "writable by group or others")
    # The same check guards a separately set custom cache directory.
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    env = {"MIOPEN_USER_DB_PATH": str(mine), "MIOPEN_CUSTOM_CACHE_DIR": str(shared)}
    refused(tmp_path, env, f"MIOPEN_CUSTOM_CACHE_DIR={shared} is writable by group or others")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a directory another user owns")
def test_rocm_entrypoint_refuses_a_cache_another_user_made_first(tmp_path):
    squatted = tmp_path / "olmo-miopen-4242-guessed"
    squatted.mkdir(mode=0o700)
    os.chown(squatted, 12345, 12345)
    refused(tmp_path, {"MIOPEN_USER_DB_PATH": str(squatted)}, "belongs to uid 12345, not to uid 0")


def test_rocm_entrypoint_refuses_a_symlink_or_a_file(tmp_path):
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(target)
    refused(tmp_path, {"MIOPEN_USER_DB_PATH": str(tmp_path / "link")}, "is a symlink")
    (tmp_path / "file").write_text("")
    refused(tmp_path, {"MIOPEN_USER_DB_PATH": str(tmp_path / "file")}, "is not a directory")


@pytest.mark.parametrize("vendor", ["rocm", "cuda"])
def test_entrypoint_puts_the_profiles_host_libs_first_without_empty_entries(tmp_path, vendor):
    """container.host_libs arrive as OLMO_HOST_LD_LIBRARY_PATH (an unset $OLMO_LIBFABRIC leaves
    an empty entry, which ld.so would read as the current directory)."""
    env = {**ROCM, "OLMO_IMAGE_VENDOR": vendor, "OLMO_RCCL_PLUGIN_DIR": str(tmp_path / "none")}
    env.update(OLMO_HOST_LD_LIBRARY_PATH=":/opt/cray/pe/lib64::/usr/lib64:", LD_LIBRARY_PATH="/img")
    show = ("sh", "-c", 'echo "$LD_LIBRARY_PATH"')
    assert run_entrypoint(tmp_path, env, *show).strip() == "/opt/cray/pe/lib64:/usr/lib64:/img"
    env["OLMO_HOST_LD_LIBRARY_PATH"] = ":"
    assert run_entrypoint(tmp_path, env, *show).strip() == "/img"


def test_cuda_entrypoint_only_execs(tmp_path):
    out = run_entrypoint(tmp_path, {"OLMO_IMAGE_VENDOR": "cuda"}, "sh", "-c", "env")
    assert "MIOPEN" not in out and "LD_LIBRARY_PATH" not in out
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("tool", ["hadolint", "shellcheck"])
def test_lint_tools_pass_on_the_recipes(tool):
    exe = shutil.which(tool) or shutil.which(tool, path=str(ROOT / ".venv" / "bin"))
    if exe is None:
        pytest.skip(f"{tool} not installed (make setup installs it; `make test` lints regardless)")
    files = (
        sorted(CONTAINERS.glob("Dockerfile.*"))
        if tool == "hadolint"
        else sorted(CONTAINERS.glob("*.sh"))
    )
    proc = sh(exe, *files, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
