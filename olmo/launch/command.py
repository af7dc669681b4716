"""The command line every launcher runs per task: container wrapper + python -m olmo."""

from __future__ import annotations

import dataclasses

from olmo.launch.profile import Profile
from olmo.launch.shellsafe import Expand, shell_join, shell_word
from olmo.slurm import EXCLUDE_STRAGGLERS_ENV

__all__ = ["Expand", "shell_join", "shell_word"]


def container_prefix(prof: Profile) -> list[str]:
    """`apptainer exec --rocm -B ... IMAGE` (or nothing when the trainer runs on the host).

    Values stay unexpanded ($PWD, $SCRATCH): the batch shell expands them on the node.
    """
    c = prof.container
    if c.runtime == "none":
        return []
    cmd = [c.runtime, "exec"]
    if c.gpu_flag:
        cmd.append(c.gpu_flag)
    if c.binds:
        cmd += ["-B", Expand(",".join(c.binds))]
    assert c.image is not None  # checked when the profile loads
    return [*cmd, Expand(c.image), *([c.entrypoint] if c.entrypoint else [])]


# NCCL_NET names of the transports (NCCL/RCCL fail at init when the named net is missing
# instead of falling back to sockets; "AWS Libfabric" is the aws-ofi plugin's registered name).
NCCL_NET = {"ofi": "AWS Libfabric", "ib": "IB", "sockets": "Socket"}


def task_env(prof: Profile) -> dict[str, str]:
    """Environment exported in the batch script for srun, the container runtime and every task
    (values may use $VARS, expanded by the batch shell on the node)."""
    env = {"OMP_NUM_THREADS": Expand("$SLURM_CPUS_PER_TASK")}
    if prof.devices.kind != "cpu" and prof.doctor.transport in NCCL_NET:
        env["NCCL_NET"] = NCCL_NET[prof.doctor.transport]
    env.update({k: Expand(str(v)) for k, v in prof.env.items()})
    if prof.container.runtime != "none" and prof.container.host_libs:
        # Read by the image's entrypoint, which puts them before the image's own dirs.
        env["OLMO_HOST_LD_LIBRARY_PATH"] = Expand(":".join(prof.container.host_libs))
    env["OLMO_MAX_RESTARTS"] = str(prof.restart.max_restarts)
    if prof.restart.exclude_stragglers:
        env[EXCLUDE_STRAGGLERS_ENV] = "1"
    return env


def doctor_args(prof: Profile) -> list[str]:
    """`olmo doctor` options that check this profile's devices, transport and bandwidth."""
    d = prof.doctor
    args = [f"--expect-devices={prof.devices.per_node}", f"--kind={prof.devices.kind}"]
    args += [f"--transport={d.transport}", f"--size-mb={d.size_mb:g}"]
    args.append(f"--min-shm-gb={d.min_shm_gb:g}")
    if d.min_bus_gb_per_s > 0:
        args.append(f"--min-bus-gb-per-s={d.min_bus_gb_per_s:g}")
    return args


def olmo_command(prof: Profile) -> list[str]:
    return [*container_prefix(prof), prof.python, "-m", "olmo"]


def energy_overrides(prof: Profile) -> list[str]:
    """The site's energy facts as train overrides (only once the config has an energy section)."""
    from olmo.config.schema import Config

    if "energy" not in {f.name for f in dataclasses.fields(Config)}:
        return []
    e = prof.energy
    return [
        f"--energy.pue={e.pue}",
        f"--energy.carbon_intensity_g_per_kwh={e.carbon_intensity_g_per_kwh}",
    ]


def train_overrides(prof: Profile, job) -> list[str]:
    """What every launcher passes to `olmo train` after the config: the walltime margin, the
    site's energy facts, then the user's overrides (which win)."""
    margin = f"--train.walltime_margin_s={prof.slurm.signal_margin_s}"
    return [margin, *energy_overrides(prof), *job.overrides]
