"""Profiles, the sbatch renderer and the submitit parameters (no cluster needed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from olmo.errors import OlmoError
from olmo.launch.profile import cluster_dir, load_profile, repo_root
from olmo.launch.sbatch import JobSpec, render, write_references
from olmo.launch.submit import device_env, executor_params, executor_python
from olmo.slurm import walltime_minutes

LUMI_SITE = ["slurm.account=project_465000123", "container.image=/project/olmo.sif"]
A100_SITE = ["slurm.account=x", "container.image=/x.sif", "env.GLOO_SOCKET_IFNAME=ib0"]


def test_shipped_profiles_load():
    lumi = load_profile("lumi", LUMI_SITE)
    assert lumi.devices.kind == "rocm" and lumi.devices.per_node == 8
    assert lumi.slurm.cpus_per_task == 7 and lumi.slurm.cpu_bind.startswith("mask_cpu:")
    a100 = load_profile("a100", A100_SITE)
    assert a100.devices.kind == "cuda" and a100.container.gpu_flag == "--nv"
    local = load_profile("local")
    assert local.container.runtime == "none" and local.energy.pue == 1.1
    for p in (lumi, a100, local):
        assert p.energy.carbon_intensity_g_per_kwh >= 0


def test_site_value_must_be_set():
    with pytest.raises(OlmoError, match=r"'slurm.account' must be set for your site"):
        load_profile("lumi")


def test_unknown_and_missing_keys_fail_clearly(tmp_path: Path):
    with pytest.raises(
        OlmoError, match=r"unknown key 'slurm.acount'.*did you mean 'slurm.account'"
    ):
        load_profile("local", ["slurm.acount=x"])
    bad = tmp_path / "site.yaml"
    bad.write_text("name: site\nslurm: {time: '01:00:00'}\ndevices: {kind: cpu, per_node: 1}\n")
    with pytest.raises(OlmoError, match=r"site.yaml: missing required key 'slurm.partition'"):
        load_profile(str(bad))
    with pytest.raises(OlmoError, match=r"no profile .*known: a100, local, lumi"):
        load_profile("nosuch")
    with pytest.raises(OlmoError, match=r"container.image is required"):
        load_profile("local", ["container.runtime=apptainer"])


def test_site_profile_extends_a_shipped_one(tmp_path: Path):
    site = tmp_path / "mylumi.yaml"
    site.write_text(
        "base: lumi\nslurm: {account: project_465000999, nodes: 2}\n"
        "container: {image: /scratch/olmo.sif}\n"
    )
    p = load_profile(str(site))
    assert (p.slurm.account, p.slurm.nodes, p.slurm.partition) == (
        "project_465000999",
        2,
        "standard-g",
    )
    assert "/var/spool/slurmd" in p.container.binds


def test_slurm_dir_matches_renderer(tmp_path: Path):
    """slurm/*.sbatch are the renderer's output; re-render with `python -m olmo.launch.sbatch`."""
    for path in write_references(tmp_path):
        ref = repo_root() / "slurm" / path.name
        assert ref.read_text() == path.read_text(), (
            f"{ref} differs from the renderer; run `python -m olmo.launch.sbatch` and commit"
        )


def test_rendered_script_has_restart_options():
    text = render(load_profile("local"), JobSpec("configs/tiny.yaml", "runs/x", ["--a.b=1"]))
    for opt in ("--requeue", "--open-mode=append", "--signal=USR2@30", "--nodes=2"):
        assert f"#SBATCH {opt}\n" in text
    args = re.search(r"TRAIN_ARGS=\((.*)\)", text).group(1).split()
    assert args[0] == "--train.walltime_margin_s=30" and args[-1] == "--a.b=1"
    assert "--energy.pue=1.1" in args and "--energy.carbon_intensity_g_per_kwh=475.0" in args
    assert "OLMO=(srun --wait=60 --ntasks-per-node=1" in text
    assert "  python -m olmo)" in text  # no container on the local cluster
    assert "doctor --expect-devices=1 --kind=cpu --transport=sockets --size-mb=16" in text


def test_exclude_stragglers_reaches_the_trainer():
    """restart.exclude_stragglers exports the variable the trainer's straggler monitor reads."""
    from olmo.slurm import EXCLUDE_STRAGGLERS_ENV

    prof = load_profile("local")
    spec = JobSpec("configs/tiny.yaml", "runs/x", [])
    assert EXCLUDE_STRAGGLERS_ENV not in render(prof, spec)
    prof.restart.exclude_stragglers = True
    assert f"export {EXCLUDE_STRAGGLERS_ENV}=1\n" in render(prof, spec)


def test_container_lines():
    lumi = (repo_root() / "slurm" / "lumi.sbatch").read_text()
    assert (
        '  singularity exec -B "$PWD,/pfs,/scratch,/projappl,/project,/flash,/var/spool/slurmd,'
        '/opt/cray/,/usr/lib64/libcxi.so.1,/usr/lib64/libjansson.so.4,/usr/lib64/libjson-c.so.3" '
        "/project/project_465000000/olmo-rocm.sif olmo-entrypoint python -m olmo)"
    ) in lumi
    assert "--distribution=block:block '--cpu-bind=mask_cpu:fe000000000000," in lumi
    # The image's LD_LIBRARY_PATH (with the RCCL OFI plugin dir) is kept, never replaced.
    assert "ENV_LD_LIBRARY_PATH" not in lumi and "module load" not in lumi
    assert 'export OLMO_HOST_LD_LIBRARY_PATH="$OLMO_LIBFABRIC:/opt/cray/pe/lib64' in lumi
    assert "export NCCL_NET='AWS Libfabric'" in lumi and "--transport=ofi" in lumi
    a100 = (repo_root() / "slurm" / "a100.sbatch").read_text()
    assert (
        '  apptainer exec --nv -B "$PWD" "$HOME/olmo-cuda.sif" olmo-entrypoint python -m olmo)'
    ) in a100
    assert "export NCCL_NET=IB" in a100 and "--gpu-bind=closest" in a100
    assert "export TORCH_NCCL_TRACE_BUFFER_SIZE=2000" in a100
    bare = render(
        load_profile("a100", [*A100_SITE, "container.runtime=none"]),
        JobSpec("c.yaml", "runs/c"),
    )
    assert "  python -m olmo)" in bare and "apptainer" not in bare
    params = executor_params(load_profile("lumi", LUMI_SITE))
    assert "slurm_python" not in params  # a constructor argument of the executor
    python = executor_python(load_profile("lumi", LUMI_SITE))
    assert python.startswith('singularity exec -B "$PWD,/pfs,')
    assert python.endswith(" /project/olmo.sif olmo-entrypoint python")
    assert params["slurm_additional_parameters"]["requeue"] is True
    assert params["tasks_per_node"] == 8 and params["slurm_signal_delay_s"] == 300


@pytest.mark.parametrize("name", ["lumi", "a100"])
def test_container_profiles_build_a_submitit_executor(name: str, tmp_path: Path):
    """What `olmo launch` does before submitting (submitit 1.5 raised NameError for a
    container profile's python passed to update_parameters)."""
    import submitit

    prof = load_profile(name, LUMI_SITE if name == "lumi" else A100_SITE)
    ex = submitit.AutoExecutor(tmp_path, cluster="slurm", slurm_python=executor_python(prof))
    ex.update_parameters(name="x", **executor_params(prof))
    assert ex._executor.python == executor_python(prof)


def test_profile_env_keys_and_library_path(tmp_path: Path):
    with pytest.raises(OlmoError, match=r"env key 'A B' is not a valid variable name"):
        load_profile("local", ["env={'A B': x}"])
    with pytest.raises(OlmoError, match=r"SINGULARITYENV_LD_LIBRARY_PATH replaces the image's"):
        load_profile("local", ["env.SINGULARITYENV_LD_LIBRARY_PATH=/opt/x"])
    old = load_profile("local", ["doctor=false"])  # the old boolean form still works
    assert old.doctor.enabled is False
    assert "doctor" not in render(old, JobSpec("c.yaml", "runs/c")).split("OLMO=(")[1]


def test_device_env_per_task():
    assert device_env("rocm", 3) == {"ROCR_VISIBLE_DEVICES": "3"}
    assert device_env("cuda", 5) == {"CUDA_VISIBLE_DEVICES": "5"}
    assert device_env("cpu", 0) == {}
    times = ("48:00:00", "1-00:00:00", "10", "00:00:30", "1-12", "1-2:30", "5:30")
    assert [walltime_minutes(t) for t in times] == [2880, 1440, 10, 1, 2160, 1590, 6]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck_every_script():
    scripts = [
        *sorted((cluster_dir() / "local").glob("*.sh")),
        *sorted((repo_root() / "slurm").glob("*.sbatch")),
    ]
    assert len(scripts) >= 8
    proc = subprocess.run(["shellcheck", "-x", *map(str, scripts)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_restart_limit_messages():
    from olmo.launch.restart import check_restart_limit, restart_limit_message

    env = {"SLURM_JOB_ID": "7", "SLURM_RESTART_COUNT": "2", "OLMO_MAX_RESTARTS": "3"}
    assert restart_limit_message(75, env) is None
    check_restart_limit(env)
    env["SLURM_RESTART_COUNT"] = "3"
    msg = restart_limit_message(86, env)
    assert msg.startswith("restart limit reached: job 7 was restarted 3 times")
    assert "exited 86 again" in msg
    check_restart_limit(env)  # the attempt at the limit may still train
    env["SLURM_RESTART_COUNT"] = "4"
    with pytest.raises(OlmoError, match=r"restart 4 > OLMO_MAX_RESTARTS=3"):
        check_restart_limit(env)
    assert restart_limit_message(75, {"SLURM_RESTART_COUNT": "9"}) is None  # no launcher limit


def test_cli_dry_run_and_errors(capsys):
    from olmo.cli import main

    assert (
        main(
            [
                "launch",
                "--cluster",
                "lumi",
                "--set",
                "slurm.account=p",
                "--set",
                "container.image=/i.sif",
                "configs/tiny.yaml",
                "--nodes",
                "2",
                "--dry-run",
                "--train.max_steps=5",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["executor"]["nodes"] == 2 and out["task_devices"]["7"] == {
        "ROCR_VISIBLE_DEVICES": "7"
    }
    assert out["train"][-1] == "--train.max_steps=5"
    assert main(["sbatch", "--cluster", "lumi", "configs/tiny.yaml"]) == 2
    assert "'slurm.account' must be set" in capsys.readouterr().err
