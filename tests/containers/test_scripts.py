"""build.sh command lines, the entrypoint's per-job settings, and the lint tools on our files."""

from __future__ import annotations

import shlex
import shutil
import subprocess

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


def run_entrypoint(tmp_path, env: dict[str, str], *cmd: str) -> str:
    base = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "USER": "alice"}
    proc = subprocess.run(
        [ENTRYPOINT, *cmd], env={**base, **env}, capture_output=True, text=True, check=True
    )
    return proc.stdout


def test_rocm_entrypoint_sets_a_per_job_miopen_cache(tmp_path):
    show = ("sh", "-c", 'echo "$MIOPEN_USER_DB_PATH|$MIOPEN_CUSTOM_CACHE_DIR|$LD_LIBRARY_PATH"')
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    env = {"OLMO_IMAGE_VENDOR": "rocm", "SLURM_JOB_ID": "4242", "OLMO_RCCL_PLUGIN_DIR": str(plugin)}
    env["LD_LIBRARY_PATH"] = "/opt/cray/libfabric/lib64"
    db, custom, ld = run_entrypoint(tmp_path, env, *show).strip().split("|")
    assert db == custom == str(tmp_path / "alice-miopen-cache-4242")
    assert (tmp_path / "alice-miopen-cache-4242").is_dir()
    # The plugin goes in front of the host's libfabric, once.
    assert ld == f"{plugin}:/opt/cray/libfabric/lib64"
    env["LD_LIBRARY_PATH"] = ld
    assert run_entrypoint(tmp_path, env, *show).strip().split("|")[2] == ld
    # Another job gets another cache; a path the profile sets is kept.
    other = run_entrypoint(tmp_path, {**env, "SLURM_JOB_ID": "7"}, *show).split("|")[0]
    assert other.endswith("alice-miopen-cache-7")
    mine = str(tmp_path / "mine")
    kept = run_entrypoint(tmp_path, {**env, "MIOPEN_USER_DB_PATH": mine}, *show).split("|")[:2]
    assert kept == [mine, mine]


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
