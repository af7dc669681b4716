"""One place that turns the launcher's environment (torchrun or bare srun) into a process group."""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from olmo.errors import OlmoError


@dataclass
class DistEnv:
    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def first_host(nodelist: str) -> str:
    """First host of a SLURM node list: 'nid[001234-001240,001300]' → 'nid001234'."""
    m = re.match(r"([^,\[]+)(\[([^\]]+)\])?", nodelist.strip())
    if not m:
        raise OlmoError(f"SLURM_JOB_NODELIST '{nodelist}' is not a node list")
    prefix, _, ranges = m.groups()
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def slurm_port(job_id: str) -> int:
    """A port derived from the job id, so every rank of a job agrees without talking."""
    return 20000 + int(hashlib.sha256(job_id.encode()).hexdigest(), 16) % 20000


def fill_env_from_slurm(env: dict[str, str] | None = None) -> dict[str, str]:
    """Under a bare `srun` (no torchrun), derive torch's variables from SLURM's.

    LOCAL_WORLD_SIZE matters: OLMo issue 641 (resume broke under srun without it).
    """
    env = os.environ if env is None else env
    if "RANK" in env or "SLURM_PROCID" not in env or int(env.get("SLURM_NTASKS", "1")) <= 1:
        return env
    env["RANK"] = env["SLURM_PROCID"]
    env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
    env["WORLD_SIZE"] = env["SLURM_NTASKS"]
    per_node = env.get("SLURM_NTASKS_PER_NODE", "").split("(")[0]
    if not per_node:
        per_node = str(int(env["SLURM_NTASKS"]) // int(env.get("SLURM_NNODES", "1")))
    env["LOCAL_WORLD_SIZE"] = per_node
    env.setdefault("MASTER_ADDR", first_host(env.get("SLURM_JOB_NODELIST", "localhost")))
    env.setdefault("MASTER_PORT", str(slurm_port(env.get("SLURM_JOB_ID", "0"))))
    return env


def select_device(local_rank: int) -> torch.device:
    """Local device for this rank. CUDA_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES are honoured by the
    runtime: torch sees only the visible devices, so index by local rank modulo their count."""
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        idx = local_rank % torch.cuda.device_count()
        torch.cuda.set_device(idx)
        return torch.device("cuda", idx)
    return torch.device("cpu")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_backend(backend: str) -> str:
    """The backend string handed to init_process_group.

    NCCL/RCCL groups cannot reduce CPU tensors, yet the loop's control flags (stop/checkpoint
    agreement), eval sums, energy totals and DCP's object collectives are CPU tensors: give
    the default group a gloo side for CPU and keep NCCL for CUDA tensors.
    """
    return "cpu:gloo,cuda:nccl" if backend == "nccl" else backend


def init_distributed(backend: str = "auto", timeout_s: float = 600.0) -> DistEnv:
    """Initialise the default process group (a 1-rank group when launched without torchrun/srun)."""
    fill_env_from_slurm()
    env = os.environ
    rank = int(env.get("RANK", "0"))
    world = int(env.get("WORLD_SIZE", "1"))
    local_rank = int(env.get("LOCAL_RANK", "0"))
    local_world = int(env.get("LOCAL_WORLD_SIZE", str(world)))
    device = select_device(local_rank)
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=timeout_s)
        if "MASTER_ADDR" not in env or "MASTER_PORT" not in env:
            # A one-task job (e.g. one SLURM task) may have MASTER_ADDR from the profile and
            # no port: a private local group needs neither.
            if world != 1:
                missing = "MASTER_ADDR" if "MASTER_ADDR" not in env else "MASTER_PORT"
                raise OlmoError(
                    f"WORLD_SIZE > 1 but {missing} is unset; launch with torchrun or srun"
                )
            init = f"tcp://127.0.0.1:{_free_port()}"
            dist.init_process_group(
                group_backend(backend), init_method=init, rank=0, world_size=1, timeout=timeout
            )
        else:
            kwargs: dict = {"device_id": device} if device.type == "cuda" else {}
            store = elastic_store(rank, world, timeout)
            if store is not None:
                kwargs["store"] = store
            dist.init_process_group(
                group_backend(backend), rank=rank, world_size=world, timeout=timeout, **kwargs
            )
    return DistEnv(rank, local_rank, world, local_world, device, backend)


def elastic_store(rank: int, world: int, timeout: datetime.timedelta) -> dist.Store | None:
    """Under torchrun, the store of this restart attempt; None elsewhere (env:// as usual).

    torchrun keeps one TCPStore for all attempts, so workers restarted by --max-restarts read
    the previous attempt's gloo addresses and fail in init ("connectFullMesh failed ...
    Connection refused"). A prefix per TORCHELASTIC_RESTART_COUNT gives each attempt fresh keys.
    """
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if restart is None:
        return None
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world,
        is_master=not agent_store and rank == 0,
        timeout=timeout,
        multi_tenant=True,
    )
    return dist.PrefixStore(f"olmo/attempt{restart}/", store)


def set_collective_timeout(seconds: float) -> None:
    """Shorten the default group's timeout once training runs (first step may legitimately be slow)."""
    setter = getattr(dist.distributed_c10d, "_set_pg_timeout", None)
    if setter is not None and dist.is_initialized():
        setter(datetime.timedelta(seconds=seconds), None)


def destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
