"""Sharded training checkpoints: temp dir → DCP save → checksummed marker → rename to `stepN`.

A directory without COMMITTED.json is never loaded, so a kill during a save leaves the previous
checkpoint in use. `latest` is a symlink to the newest committed step; the last k are kept.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from olmo.checkpoint.config import CheckpointConfig
from olmo.checkpoint.io import CONFIG, MARKER, read_marker, write_marker
from olmo.config.loader import save_yaml
from olmo.errors import OlmoError

log = logging.getLogger(__name__)
STEP_RE = re.compile(r"^step(\d+)$")
TRAINER_STATE = "trainer_state.json"


def file_checksums(root: Path, names: list[str]) -> dict[str, dict[str, int]]:
    """crc32 + size per file: fast enough for multi-GB shards, catches truncation and bit rot."""
    out = {}
    for name in names:
        crc = 0
        with open(root / name, "rb") as f:
            while chunk := f.read(1 << 23):
                crc = zlib.crc32(chunk, crc)
        out[name] = {"crc32": crc, "size": (root / name).stat().st_size}
    return out


def committed_steps(root: Path) -> list[tuple[int, Path]]:
    """Committed checkpoints under `root`, newest first."""
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = STEP_RE.match(p.name)
        if m and p.is_dir() and (p / MARKER).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found, reverse=True)


def verify(ckpt: Path) -> str | None:
    """None if every file matches its recorded size and checksum, else what is wrong."""
    try:
        marker = read_marker(ckpt)
    except OlmoError as e:
        return str(e)
    files = marker.get("files", {})
    for name, want in files.items():
        p = ckpt / name
        if not p.is_file():
            return f"{p}: missing"
        if p.stat().st_size != want["size"]:
            return f"{p}: truncated ({p.stat().st_size} of {want['size']} bytes)"
        if file_checksums(ckpt, [name])[name]["crc32"] != want["crc32"]:
            return f"{p}: checksum mismatch (corrupt)"
    return None


class Checkpointer:
    def __init__(
        self, root: Path, cfg: CheckpointConfig, rank: int, world_size: int, config: dict[str, Any]
    ):
        self.root, self.cfg, self.rank, self.world_size = Path(root), cfg, rank, world_size
        self.config = config
        self._pending: tuple[Any, Path, int, dict[str, Any]] | None = None
        self._group = None
        if cfg.async_save and dist.is_initialized():
            # A dedicated group: async DCP on the default group breaks once training issues
            # collectives before the save finishes.
            self._group = dist.new_group(backend="gloo")
        self.last_save_time = time.monotonic()
        self.last_blocking_s = 0.0
        self.on_written: Callable[[int], None] | None = None
        """Called on every rank with the step once its shards are written, before the commit
        (the trainer's fault injection kills a rank here in tests)."""

    # ---- saving -------------------------------------------------------------------------
    def save(
        self,
        step: int,
        model: torch.nn.Module,
        optim: torch.optim.Optimizer,
        trainer_state: dict[str, Any],
    ) -> None:
        """Collective: every rank calls it at the same step."""
        t0 = time.perf_counter()
        self.wait()
        tmp = self.root / f".step{step}.tmp"
        if self.rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        _barrier()
        model_sd, optim_sd = get_state_dict(model, optim)
        state = {"model": model_sd, "optim": optim_sd}
        torch.save(_rng_state(), tmp / f"rng-rank{self.rank}.pt")
        if self.cfg.async_save:
            fut = dcp.async_save(state, checkpoint_id=str(tmp), process_group=self._group)
            self._pending = (fut, tmp, step, trainer_state)
        else:
            dcp.save(state, checkpoint_id=str(tmp))
            if self.on_written is not None:
                self.on_written(step)
            _barrier()
            if self.rank == 0:
                self._commit(tmp, step, trainer_state)
            _barrier()
        self.last_save_time = time.monotonic()
        self.last_blocking_s = time.perf_counter() - t0

    def wait(self) -> None:
        """Finish a pending async save (all ranks), then commit it on rank 0."""
        if self._pending is None:
            return
        fut, tmp, step, trainer_state = self._pending
        self._pending = None
        fut.result()
        if self.on_written is not None:
            self.on_written(step)
        dist.barrier(group=self._group)
        if self.rank == 0:
            self._commit(tmp, step, trainer_state)
        dist.barrier(group=self._group)

    def _commit(self, tmp: Path, step: int, trainer_state: dict[str, Any]) -> None:
        (tmp / TRAINER_STATE).write_text(json.dumps(trainer_state, indent=1, sort_keys=True))
        save_yaml(self.config, tmp / CONFIG)
        names = sorted(p.name for p in tmp.iterdir() if p.is_file())
        info = {
            "step": step,
            "world_size": self.world_size,
            "time": time.time(),
            "contents": ["model", "optim", "trainer"],
            "files": file_checksums(tmp, names),
        }
        write_marker(tmp, info)
        final = self.root / f"step{step}"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        link = self.root / ".latest.tmp"
        link.unlink(missing_ok=True)
        link.symlink_to(final.name)
        os.replace(link, self.root / "latest")
        for _, old in committed_steps(self.root)[max(1, self.cfg.keep_last) :]:
            shutil.rmtree(old, ignore_errors=True)
        log.info("checkpoint step %d committed: %s", step, final)

    # ---- loading ------------------------------------------------------------------------
    def find_resume_point(self) -> Path | None:
        """Newest committed checkpoint that verifies; broken ones are named and skipped."""
        if self.cfg.load == "none":
            return None
        if self.cfg.load != "auto":
            path = Path(self.cfg.load)
            problem = verify(path) if path.is_dir() else f"{path}: not found"
            if problem:
                raise OlmoError(
                    f"checkpoint.load: {problem}; pass another checkpoint or checkpoint.load=auto"
                )
            return path
        for _, path in committed_steps(self.root):
            problem = verify(path)
            if problem is None:
                return path
            log.warning("skipping checkpoint %s: %s", path.name, problem)
        return None

    def load(
        self, path: Path, model: torch.nn.Module, optim: torch.optim.Optimizer
    ) -> dict[str, Any] | None:
        """Restore model (+ optimizer and trainer state when present); returns the trainer state."""
        marker = read_marker(path)
        model_sd, optim_sd = get_state_dict(model, optim)
        with_optim = "optim" in marker.get("contents", [])
        state = {"model": model_sd, "optim": optim_sd} if with_optim else {"model": model_sd}
        dcp.load(state, checkpoint_id=str(path))
        set_state_dict(
            model,
            optim,
            model_state_dict=state["model"],
            optim_state_dict=state.get("optim", optim_sd) if with_optim else {},
        )
        if not with_optim:
            log.info("%s holds weights only: optimizer and data order start fresh", path)
            return None
        saved_ws = marker.get("world_size")
        rng = path / f"rng-rank{self.rank}.pt"
        if saved_ws == self.world_size and rng.is_file():
            _set_rng_state(torch.load(rng, weights_only=True))
        elif self.rank == 0:
            log.warning(
                "resharding: checkpoint written by %s ranks, loading on %d; model, optimizer and "
                "data position carry over, per-rank RNG states do not (runs are not bitwise comparable)",
                saved_ws,
                self.world_size,
            )
        return json.loads((path / TRAINER_STATE).read_text())

    def due(self, step: int) -> bool:
        by_steps = self.cfg.interval > 0 and step % self.cfg.interval == 0
        by_time = (
            self.cfg.interval_minutes > 0
            and time.monotonic() - self.last_save_time >= 60 * self.cfg.interval_minutes
        )
        return by_steps or by_time


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
