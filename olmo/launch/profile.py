"""Cluster profiles (`cluster/NAME.yaml`): typed, with per-site overrides.

A profile names the site facts a launcher needs: SLURM resources, devices per node and their
binding, the container (or none) and its bind mounts, the environment, the restart policy and the
energy facts (PUE, grid carbon intensity). A site file may extend a shipped one with `base: lumi`;
`--set slurm.account=...` overrides single keys. A value written as `REQUIRED` must be overridden.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from olmo.config.loader import deep_merge, from_dict, parse_overrides, read_yaml
from olmo.errors import OlmoError
from olmo.launch.shellsafe import check_expandable, check_literal
from olmo.slurm import walltime_seconds

REQUIRED = "REQUIRED"
"""Placeholder in a shipped profile for a value every site must set (e.g. the account)."""


def repo_root() -> Path:
    """The checkout holding `cluster/` (override with OLMO_HOME for an installed package)."""
    return Path(os.environ.get("OLMO_HOME", Path(__file__).resolve().parents[2]))


def cluster_dir() -> Path:
    return repo_root() / "cluster"


@dataclass
class SlurmSection:
    partition: str | None
    """Partition (None = the cluster's default)."""
    time: str
    """Walltime per attempt, e.g. 48:00:00 (the run continues in the next attempt)."""
    account: str | None = None
    """Account/project to charge (None = your default)."""
    nodes: int = 1
    """Nodes per attempt."""
    cpus_per_task: int = 1
    """CPU cores per task (one task per device)."""
    mem: str | None = None
    """Memory per node (0 = all of it; None = the partition default)."""
    gpus_per_node: int | None = None
    """Generic resources requested as --gpus-per-node (None = none requested)."""
    time_min: str | None = None
    """Accept a shorter walltime down to this (backfill); the trainer checkpoints before the end."""
    signal_margin_s: int = 300
    """Send USR2 this many seconds before the walltime: checkpoint and requeue."""
    distribution: str | None = None
    """srun --distribution (LUMI: block:block)."""
    cpu_bind: str | None = None
    """srun --cpu-bind value (LUMI: GCD↔CCD masks; A100: ldoms, each task on its NUMA domain)."""
    gpu_bind: str | None = None
    """srun --gpu-bind value (A100: closest, each task the GPU of its NUMA domain). When set,
    SLURM chooses each task's device and the launchers do not set *_VISIBLE_DEVICES."""
    task_exit_wait_s: int = 60
    """srun --wait: once one task ends, the others get this long before being killed. Not
    --kill-on-bad-exit: a rank exiting 75 (checkpointed) would kill rank 0 still finishing up."""
    extra: list[str] = field(default_factory=list)
    """Further sbatch options, e.g. ['--exclusive', '--qos=high']."""


@dataclass
class DevicesSection:
    kind: Literal["rocm", "cuda", "cpu"]
    """Accelerator runtime: rocm (AMD), cuda (NVIDIA) or cpu."""
    per_node: int
    """Devices per node; one task (rank) per device."""


@dataclass
class ContainerSection:
    runtime: Literal["none", "apptainer", "singularity"] = "none"
    """How the trainer runs: directly on the host, or inside an Apptainer/Singularity image."""
    image: str | None = None
    """Path of the .sif image (required unless runtime is none)."""
    binds: list[str] = field(default_factory=list)
    """Host paths bound into the container (src[:dst]), e.g. Cray libfabric on LUMI."""
    gpu_flag: str | None = None
    """Runtime flag exposing the devices (--rocm / --nv)."""
    host_libs: list[str] = field(default_factory=list)
    """Host library dirs (bound in at the same path) put in front of the image's own
    LD_LIBRARY_PATH by the image's entrypoint, e.g. Cray libfabric on LUMI. Not through
    SINGULARITYENV_/APPTAINERENV_LD_LIBRARY_PATH: that replaces the image's value and drops its
    library dirs (the RCCL OFI plugin), so the profile loader refuses it."""
    entrypoint: str | None = "olmo-entrypoint"
    """Command of the image run in front of python (sets per-job state, library path); None for
    an image without it."""


@dataclass
class RestartSection:
    max_restarts: int = 10
    """Stop after this many restarts of one job (SLURM_RESTART_COUNT), to end crash loops."""
    requeue_on_crash: bool = True
    """Requeue after a crash (not after bad input, exit 2); node failures always requeue."""
    exclude_stragglers: bool = False
    """A node the trainer names a straggler (train.straggler.*) goes into RUN_DIR/failed_nodes.txt
    and is excluded at the next requeue, like a failed node."""


TRANSPORTS = ("ofi", "ib", "sockets", "any")


@dataclass
class DoctorSection:
    enabled: bool = True
    """Run `olmo doctor` across the allocation before training (`doctor: false` also works)."""
    transport: Literal["ofi", "ib", "sockets", "any"] = "any"
    """Collective transport the job must use: ofi (RCCL/NCCL over the aws-ofi plugin,
    Slingshot), ib (NCCL over InfiniBand), sockets (TCP), any (no check). On GPUs the launchers
    also set NCCL_NET from it, so NCCL/RCCL fail instead of falling back to sockets."""
    min_bus_gb_per_s: float = 0.0
    """Bus bandwidth floor (GB/s) of every pair of neighbouring nodes (0 = no floor; not applied
    to a one-node job)."""
    size_mb: float = 64.0
    """All-reduce message size (MiB) for the bandwidth test: large enough to reach the link's
    bandwidth, not its latency."""
    min_shm_gb: float = 0.5
    """Free /dev/shm needed on every node (GiB)."""


@dataclass
class EnergySection:
    pue: float
    """Power usage effectiveness of the data centre (facility energy / IT energy)."""
    carbon_intensity_g_per_kwh: float
    """Grid carbon intensity at the site, gCO2eq per kWh."""


@dataclass
class Profile:
    name: str
    """Profile name (what --cluster takes)."""
    slurm: SlurmSection
    """SLURM resources and signalling."""
    devices: DevicesSection
    """Devices per node (one rank each)."""
    energy: EnergySection
    """Site facts for the energy report."""
    description: str = ""
    """One line about the cluster."""
    container: ContainerSection = field(default_factory=ContainerSection)
    """Container runtime, image and binds."""
    restart: RestartSection = field(default_factory=RestartSection)
    """Requeue policy."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment for every task (values may use $SLURM_* variables)."""
    setup: list[str] = field(default_factory=list)
    """Shell lines run first in the batch script (e.g. module load ...)."""
    python: str = "python"
    """Python interpreter (inside the container when there is one)."""
    doctor: DoctorSection = field(default_factory=DoctorSection)
    """Pre-flight check: devices, /dev/shm, all-reduce result, transport and bandwidth."""
    log_dir: str = "logs"
    """Where SLURM writes the job logs (relative to the submit directory)."""


def _missing(cls: type, data: dict[str, Any], prefix: str) -> str | None:
    """First required key (no default) absent from `data`, searching nested sections."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.name not in data:
            if required:
                return prefix + f.name
            continue
        if dataclasses.is_dataclass(hints[f.name]) and isinstance(data[f.name], dict):
            sub = _missing(hints[f.name], data[f.name], f"{prefix}{f.name}.")
            if sub:
                return sub
    return None


def _placeholder(data: Any, prefix: str = "") -> str | None:
    if isinstance(data, dict):
        for k, v in data.items():
            found = _placeholder(v, f"{prefix}{k}.")
            if found:
                return found
    elif data == REQUIRED:
        return prefix.rstrip(".")
    return None


def read_profile_data(name_or_path: str, seen: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    """A profile's raw data with its `base:` chain merged, and where it came from (unchecked:
    `olmo energy estimate` needs only its energy facts)."""
    path = Path(name_or_path)
    if not name_or_path.endswith((".yaml", ".yml")):
        path = cluster_dir() / f"{name_or_path}.yaml"
        if not path.exists():
            names = sorted(p.stem for p in cluster_dir().glob("*.yaml"))
            raise OlmoError(
                f"--cluster {name_or_path}: no profile {path}; known: {', '.join(names)} "
                "(or give a path to a YAML profile)"
            )
    data = read_yaml(path)
    base = data.pop("base", None)
    if base is not None:
        if str(base) in seen:
            raise OlmoError(f"{path}: 'base: {base}' loops back to itself")
        parent, _ = read_profile_data(str(base), (*seen, str(base)))
        data = deep_merge(parent, data)
    return data, str(path)


def load_profile(
    name_or_path: str, overrides: list[str] | None = None, exact: dict | None = None
) -> Profile:
    """Load a profile by name (cluster/NAME.yaml) or path, apply `key=value` overrides (values
    parsed as YAML) and `exact` values (taken as they are, e.g. --time), check it."""
    data, source = read_profile_data(name_or_path)
    if overrides:
        data = deep_merge(data, parse_overrides(overrides))
        source += " + --set"
    if exact:
        data = deep_merge(data, exact)
        source += " + options"
    data.setdefault("name", Path(name_or_path).stem)
    missing = _missing(Profile, data, "")
    if missing:
        raise OlmoError(f"{source}: missing required key '{missing}'")
    box = data.get("container")
    if isinstance(box, dict) and box.get("runtime") == "none" and box.get("image") == REQUIRED:
        box["image"] = None  # no container, no image to name
    unset = _placeholder(data)
    if unset:
        raise OlmoError(
            f"{source}: '{unset}' must be set for your site: --set {unset}=VALUE, or a site "
            f"profile with 'base: {data['name']}' that sets it"
        )
    if isinstance(data.get("doctor"), bool):  # the old `doctor: false`
        data["doctor"] = {"enabled": data["doctor"]}
    check_env(data.get("env"), source)
    prof = from_dict(Profile, data, "", source)
    if prof.container.runtime != "none" and not prof.container.image:
        raise OlmoError(f"{source}: container.image is required when container.runtime is set")
    if prof.devices.per_node < 1 or prof.slurm.nodes < 1:
        raise OlmoError(f"{source}: devices.per_node and slurm.nodes must be ≥ 1")
    check_values(prof, source)
    return prof


def check_values(prof: Profile, source: str) -> None:
    """Every value that reaches a batch script: `$VAR` expansion only where it is documented
    (env values, binds, image, host_libs), literal text without control characters elsewhere;
    walltimes in a format SLURM takes."""
    c, s = prof.container, prof.slurm
    expandable = [(f"env.{k}", str(v)) for k, v in prof.env.items()]
    expandable += [("container.binds", b) for b in c.binds]
    expandable += [("container.host_libs", d) for d in c.host_libs]
    expandable += [("container.image", c.image)]
    literal = [("python", prof.python), ("log_dir", prof.log_dir), ("slurm.extra", s.extra)]
    literal += [("container.gpu_flag", c.gpu_flag), ("container.entrypoint", c.entrypoint)]
    for k in ("partition", "account", "mem", "distribution", "cpu_bind", "gpu_bind"):
        literal.append((f"slurm.{k}", getattr(s, k)))
    for key, value in expandable:
        if value is not None:
            check_expandable(value, f"{source}: {key}")
    for key, value in literal:
        for v in value if isinstance(value, list) else [value]:
            if v is not None:
                check_literal(str(v), f"{source}: {key}")
    walltime_seconds(s.time, f"{source}: slurm.time")
    if s.time_min:
        walltime_seconds(s.time_min, f"{source}: slurm.time_min")


_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_env(env: Any, source: str) -> None:
    """Env keys must be shell identifiers; the image's LD_LIBRARY_PATH must not be replaced."""
    if not isinstance(env, dict):
        return
    for key in env:
        if not isinstance(key, str) or not _ENV_KEY.fullmatch(key):
            raise OlmoError(f"{source}: env key {key!r} is not a valid variable name")
        if key.endswith("ENV_LD_LIBRARY_PATH"):
            raise OlmoError(
                f"{source}: env.{key} replaces the image's LD_LIBRARY_PATH (dropping its own "
                "library dirs, e.g. the RCCL network plugin); list host dirs in "
                "container.host_libs instead"
            )
