"""Builds everything the loop needs from a Config: process group, run dir, data, model, optimizer."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from olmo.checkpoint.checkpointer import Checkpointer
from olmo.config.loader import save_yaml
from olmo.config.schema import Config, config_to_dict
from olmo.data.loader import DataLoader
from olmo.data.split import InstanceRange, build_train_data
from olmo.distributed.env import DistEnv, destroy, init_distributed, set_collective_timeout
from olmo.distributed.parallelize import parallelize_model
from olmo.envinfo import environment_fingerprint
from olmo.errors import OlmoError
from olmo.fsutil import atomic_write_text
from olmo.logbook import (
    LogbookError,
    append_event,
    close_open_attempts,
    node_name,
    process_start_time,
)
from olmo.model import Transformer, build_model
from olmo.slurm import ENV_KEYS as SLURM_ENV_KEYS
from olmo.train.optim import build_optimizer

log = logging.getLogger("olmo.train")


@dataclass
class Components:
    cfg: Config
    env: DistEnv
    run_dir: Path
    model: Transformer
    optim: torch.optim.Optimizer
    loader: DataLoader
    eval_data: InstanceRange | None
    checkpointer: Checkpointer
    bf16: bool
    attempt: int
    tokenizer: Any = None
    """The run's tokenizer (built once; callbacks such as downstream eval reuse it)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Start-up marks for the logbook's resume breakdown: `setup_begin` (Unix time),
    `process_group_s`, `checkpoint_load_s`, `data_fast_forward_s`."""
    recorded: bool = False
    """This start counts as an attempt (record_attempt ran): failures from here are crashes."""

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast_context(self.bf16, self.cfg.distributed.fsdp, self.env.device)

    def record_attempt(self, parent: dict[str, Any] | None = None) -> None:
        record_attempt(self.run_dir, self.cfg, self.env, self.attempt, parent)
        self.recorded = True

    def after_first_step(self) -> None:
        set_collective_timeout(self.cfg.distributed.collective_timeout_s)

    def close(self) -> None:
        destroy()


def autocast_context(bf16: bool, fsdp: bool, device: torch.device):
    """bf16 autocast for the non-FSDP path (FSDP's MixedPrecisionPolicy already casts)."""
    if bf16 and not fsdp:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def setup_logging(rank: int) -> None:
    level = logging.INFO if rank == 0 else logging.WARNING
    fmt = f"%(asctime)s [rank{rank}] %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)


def use_bf16(cfg: Config, device: torch.device) -> bool:
    if cfg.train.precision == "auto":
        return device.type == "cuda"
    return cfg.train.precision == "bf16"


def build_model_for(cfg: Config, env: DistEnv, bf16: bool) -> Transformer:
    """CPU init (identical bits for any world size/vendor) or meta init (only shards materialise)."""
    torch.manual_seed(cfg.train.seed)
    if cfg.distributed.init_device == "meta":
        model = build_model(cfg.model, device="meta")
        parallelize_model(model, cfg.distributed, env.device, bf16)
        model.to_empty(device=env.device)
        model.init_weights()
        return model
    model = build_model(cfg.model, device="cpu", seed=cfg.train.seed)
    if env.device.type != "cpu" and not cfg.distributed.fsdp:
        model.to(env.device)
    return parallelize_model(model, cfg.distributed, env.device, bf16)


def next_attempt(run_dir: Path) -> int:
    """This attempt's number (1-based) from the starts `attempts.jsonl` records; reads only.

    Every rank reads it before rank 0 appends (the first barrier in `record_attempt`).
    """
    try:
        return len((run_dir / "attempts.jsonl").read_bytes().splitlines()) + 1
    except FileNotFoundError:
        return 1
    except OSError as e:
        raise OlmoError(
            f"{run_dir}: cannot read attempts.jsonl ({e.strerror or e}); check --run-dir"
        ) from None


def record_attempt(
    run_dir: Path,
    cfg: Config,
    env: DistEnv,
    attempt: int = 0,
    parent: dict[str, Any] | None = None,
) -> None:
    """Rank 0 writes the resolved config and env record and appends this attempt's line (with
    `parent` when it starts from another run's checkpoint); in the logbook it closes earlier
    attempts that ended without a word, then books `attempt_start`.

    The first write into the run dir: only a start that passed every check counts as an attempt.
    """
    nodes = _all_nodes()  # also a barrier: every rank has read the attempt number
    if env.is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_yaml(config_to_dict(cfg), run_dir / "config.yaml")
            record = environment_record(env)
            atomic_write_text(run_dir / "env.json", json.dumps(record, indent=1))
            with open(run_dir / "attempts.jsonl", "a") as f:
                line = _attempt_line(env) | ({"parent": parent} if parent else {})
                f.write(json.dumps(line) + "\n")
            _book_start(run_dir, attempt, _start_detail(record, nodes))
        except OSError as e:
            raise OlmoError(
                f"{run_dir}: cannot write the run dir ({e.strerror or e}); check --run-dir"
            ) from None
    _barrier()


def _book_start(run_dir: Path, attempt: int, detail: dict[str, Any]) -> None:
    """Close the attempts before this one that ended without a word, then book this start."""
    try:
        close_open_attempts(run_dir)
    except LogbookError as e:  # a damaged logbook is reported by its reader; training goes on
        log.warning("logbook: %s; earlier attempts left open", e)
    # when this process began (imports, setup before this line are the attempt's start-up too)
    detail = {**detail, "process_start": process_start_time()}
    append_event(run_dir, "attempt_start", attempt=attempt, rank=0, detail=detail)


def _all_nodes() -> list[str]:
    """Every rank's node name, sorted and unique (a collective)."""
    names = [node_name()]
    if torch.distributed.is_initialized():
        names = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(names, node_name())
    return sorted(set(names))


def _start_detail(record: dict[str, Any], nodes: list[str]) -> dict[str, Any]:
    env = os.environ
    restarts = env.get("SLURM_RESTART_COUNT") or env.get("TORCHELASTIC_RESTART_COUNT") or 0
    return {
        "job_id": env.get("SLURM_JOB_ID") or env.get("TORCHELASTIC_RUN_ID"),
        "nodes": nodes,
        "restart_count": int(restarts),
        "git_commit": record.get("git_commit"),
        "image_digest": (record.get("container") or {}).get("image_digest"),
        "world_size": record["world_size"],
    }


def _barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def _attempt_line(env: DistEnv) -> dict[str, Any]:
    return {
        "time": time.time(),
        "world_size": env.world_size,
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_restart_count": int(os.environ.get("SLURM_RESTART_COUNT", "0")),
    }


def environment_record(env: DistEnv) -> dict[str, Any]:
    rec: dict[str, Any] = environment_fingerprint()
    rec.update(world_size=env.world_size, backend=env.backend, device=str(env.device))
    rec["slurm"] = {k: v for k, v in os.environ.items() if k in SLURM_ENV_KEYS}
    return rec


def build_components(cfg: Config, run_dir: Path) -> Components:
    begin = time.time()
    env = init_distributed(cfg.distributed.backend, cfg.distributed.init_timeout_s)
    timings = {"setup_begin": begin, "process_group_s": time.time() - begin}
    setup_logging(env.rank)
    run_dir = Path(run_dir)
    # Nothing is written into the run dir here: tokenizer, data, model and callbacks may still
    # refuse the start, which must leave the run dir as it was (Trainer.fit records the attempt).
    attempt = next_attempt(run_dir)
    tokenizer = cfg.data.build_tokenizer()
    if cfg.model.vocab_size < tokenizer.vocab_size:
        raise OlmoError(
            f"model.vocab_size ({cfg.model.vocab_size}) < tokenizer vocabulary ({tokenizer.vocab_size})"
        )
    loader, eval_data = build_train_data(
        cfg.data,
        cfg.train.seed,
        cfg.train.global_batch_size,
        cfg.train.eval_holdout_instances,
        env.rank,
        env.world_size,
        tokenizer,
        schedule=cfg.train.batch_size_schedule,
        micro_batch_size=cfg.train.micro_batch_size,
    )
    loader.pin_memory = env.device.type == "cuda"  # the step's .to(non_blocking) then overlaps
    bf16 = use_bf16(cfg, env.device)
    model = build_model_for(cfg, env, bf16)
    optim = build_optimizer(model, cfg.optim)
    ckpt = Checkpointer(
        run_dir / "checkpoints", cfg.checkpoint, env.rank, env.world_size, config_to_dict(cfg)
    )
    log.info(
        "model %s params, %d ranks on %s, bf16=%s, %d train instances of %d tokens",
        f"{cfg.model.num_params():,}",
        env.world_size,
        env.device,
        bf16,
        len(loader.dataset),
        cfg.data.seq_len,
    )
    return Components(
        cfg, env, run_dir, model, optim, loader, eval_data, ckpt, bf16, attempt, tokenizer, timings
    )
