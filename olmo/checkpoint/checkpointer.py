"""Sharded training checkpoints: temp dir → DCP save → checksummed marker → rename to `stepN`.

A directory without COMMITTED.json is never loaded, so a kill during a save leaves the previous
checkpoint in use. `latest` is a symlink to the newest committed step; the last k are kept.
At resume every rank checks a share of the files' checksums; a checkpoint that fails is named,
moved aside (`.stepN.corrupt`) and the previous one is used. Leftover `.stepN.tmp` are removed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed._state_dict_utils import _copy_state_dict, _create_cpu_state_dict
from torch.distributed.checkpoint.state_dict import (
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from olmo.checkpoint.config import CheckpointConfig
from olmo.checkpoint.layout import (
    CONFIG,
    TRAINER_STATE,
    committed_steps,
    corrupt_dir,
    marked_files,
    marker_info,
    read_marker,
    resolve_checkpoint,
    step_dir,
    tmp_step_dir,
    unfinished,
    write_marker,
)
from olmo.checkpoint.safe import checkpoint_problems, dcp_load, load_rng, read_trainer_state
from olmo.config.loader import save_yaml
from olmo.errors import OlmoError

log = logging.getLogger(__name__)
CONTENTS = ["model", "optim", "trainer", "data_loader", "rng"]
"""What a training checkpoint holds (the marker lists it; `olmo checkpoint info` shows it)."""


@dataclass
class _PendingSave:
    future: Future[None]
    step: int


class HostBuffer:
    """A host copy of the state dict for async saves: allocated at the first save (and again only
    when the state's layout changes, e.g. another optimizer), refilled with `copy_` at later ones,
    so training waits for one memory copy and never for an allocation of checkpoint size."""

    def __init__(self) -> None:
        self._copy: dict[str, Any] | None = None
        self._layout: list[tuple[str, str, tuple[int, ...], str]] | None = None
        self.allocations = 0
        """How many times the buffer was (re)allocated."""

    @torch.no_grad()
    def stage(self, state: dict[str, Any]) -> dict[str, Any]:
        """The state with every tensor replaced by its copy in the buffer (containers are new;
        numbers and strings are immutable), safe to write while training changes the original."""
        layout = _layout(state)
        if layout != self._layout:
            self._copy, self._layout = _create_cpu_state_dict(state), layout
            self.allocations += 1
        return _copy_state_dict(state, self._copy)


def _layout(obj: Any, path: str = "") -> list[tuple[str, str, tuple[int, ...], str]]:
    """Every tensor's (path, type, local shape, dtype): equal layouts can share one buffer."""
    if isinstance(obj, torch.Tensor):
        local = obj.to_local() if hasattr(obj, "to_local") else obj
        return [(path, type(obj).__name__, tuple(local.shape), str(obj.dtype))]
    if isinstance(obj, dict):
        return [e for k, v in obj.items() for e in _layout(v, f"{path}/{k}")]
    if isinstance(obj, (list, tuple)):
        return [e for i, v in enumerate(obj) for e in _layout(v, f"{path}/{i}")]
    return [(path, type(obj).__name__, (), "")]


class Checkpointer:
    def __init__(
        self, root: Path, cfg: CheckpointConfig, rank: int, world_size: int, config: dict[str, Any]
    ):
        self.root, self.cfg, self.rank, self.world_size = Path(root), cfg, rank, world_size
        self.config = config
        self._pending: _PendingSave | None = None
        self._group = None
        if cfg.async_save and dist.is_initialized():
            # A dedicated group: async DCP on the default group breaks once training issues
            # collectives before the save finishes.
            self._group = dist.new_group(backend="gloo")
        self._buffer = HostBuffer()
        # One writer thread: an async save's planning, writing, checksums and commit run there
        # (in order, one save at a time) while training goes on.
        self._writer = ThreadPoolExecutor(1, "checkpoint-writer") if cfg.async_save else None
        self.last_save_time = time.monotonic()
        self.last_blocking_s = 0.0
        """Seconds the last save() kept training waiting (all of it when synchronous)."""
        self.saved_step: int | None = None
        """The step of the last save() of this process (committed, or pending when async)."""
        self.on_written: Callable[[int], None] | None = None
        """Called on every rank with the step once its shards are written, before the commit
        (the trainer's fault injection kills a rank here in tests). With async_save it runs on
        the writer thread."""
        self.on_point: Callable[[str, int], None] | None = None
        """Called on rank 0 inside the commit of a step: ("renamed", step) once `stepN` is in
        place, before `latest` moves; ("deleting", step) before each old checkpoint keep_last
        removes (fault injection kills here in tests)."""

    # ---- saving -------------------------------------------------------------------------
    def save(
        self,
        step: int,
        model: torch.nn.Module,
        optim: torch.optim.Optimizer,
        trainer_state: dict[str, Any],
    ) -> None:
        """Collective: every rank calls it at the same step. A step saved already is skipped
        (the final save after an interval save of the same step, or of one still in flight)."""
        if step == self.saved_step:
            return
        t0 = time.perf_counter()
        self.wait()
        tmp = self._fresh_tmp(step)
        model_sd, optim_sd = get_state_dict(model, optim)
        state = {"model": model_sd, "optim": optim_sd}
        rng = _rng_state()  # copies: later draws do not change them
        # serialized now: with async_save the trainer moves on before the commit writes it
        state_json = json.dumps(trainer_state, indent=1, sort_keys=True)
        if self._writer is not None:
            # Training waits only for the copy into the reused host buffer; the rest is threaded.
            staged = self._buffer.stage(state)
            blocked = time.perf_counter() - t0
            job = self._writer.submit(self._write, tmp, step, staged, rng, state_json, t0, blocked)
            self._pending = _PendingSave(job, step)
        else:
            self._write(tmp, step, state, rng, state_json, t0)
            blocked = time.perf_counter() - t0
        self.last_save_time, self.last_blocking_s, self.saved_step = time.monotonic(), blocked, step
        if self.rank == 0:
            how = " (async: files are written in the background)" if self.cfg.async_save else ""
            log.info("checkpoint step %d: training blocked %.3f s%s", step, blocked, how)

    def _fresh_tmp(self, step: int) -> Path:
        tmp = tmp_step_dir(self.root, step)
        if self.rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        _barrier()
        return tmp

    def _write(
        self,
        tmp: Path,
        step: int,
        state: dict[str, Any],
        rng: dict[str, Any],
        state_json: str,
        t0: float,
        blocking_s: float | None = None,
    ) -> None:
        """Shards, RNG state, then the commit on every rank in order. Async saves run it on the
        writer thread on their own process group, blocking_s known; synchronous ones on the
        training thread, blocking from t0 (save's start) to the commit."""
        torch.save(rng, tmp / f"rng-rank{self.rank}.pt")
        dcp.save(state, checkpoint_id=str(tmp), process_group=self._group)
        blocked = time.perf_counter() - t0 if blocking_s is None else blocking_s
        self._commit_everywhere(tmp, step, state_json, blocked, self._group)

    def wait(self) -> None:
        """Finish a pending async save: its shards written and committed on every rank (an
        error in the writer thread is raised here)."""
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        t0 = time.perf_counter()
        pending.future.result()
        waited = time.perf_counter() - t0
        if self.rank == 0 and waited > 0.01:
            log.info("checkpoint step %d: waited %.3f s for the async write", pending.step, waited)

    def _commit_everywhere(
        self, tmp: Path, step: int, trainer_state: str, blocking_s: float, group=None
    ) -> None:
        if self.on_written is not None:
            self.on_written(step)
        _barrier(group)
        if self.rank == 0:
            self._commit(tmp, step, trainer_state, blocking_s)
        _barrier(group)

    def _commit(self, tmp: Path, step: int, trainer_state: str, blocking_s: float) -> None:
        (tmp / TRAINER_STATE).write_text(trainer_state)
        save_yaml(self.config, tmp / CONFIG)
        extra = {"async": self.cfg.async_save, "blocking_s": round(blocking_s, 4)}
        write_marker(tmp, marker_info(tmp, step, self.world_size, CONTENTS, **extra))
        final = step_dir(self.root, step)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        self._at_point("renamed", step)
        self._point_latest(final)
        for _, old in committed_steps(self.root)[max(1, self.cfg.keep_last) :]:
            if old != final:  # after a roll-back to an older step, newer ones may exist
                self._at_point("deleting", step)
                shutil.rmtree(old, ignore_errors=True)
        log.info("checkpoint step %d committed: %s", step, final)

    def _at_point(self, point: str, step: int) -> None:
        if self.on_point is not None:
            self.on_point(point, step)

    def _point_latest(self, target: Path) -> None:
        link = self.root / ".latest.tmp"
        link.unlink(missing_ok=True)
        link.symlink_to(target.name)
        os.replace(link, self.root / "latest")

    # ---- finding ------------------------------------------------------------------------
    def find_resume_point(self) -> Path | None:
        """Collective. This run's newest checkpoint whose files verify; else the explicit
        `checkpoint.load` path; else None (fresh start). Broken checkpoints are named, moved
        aside and skipped. A run's own checkpoints win over an explicit path, so a requeued
        run continues instead of starting over from PATH."""
        if self.cfg.load == "none":
            return None
        own = self._newest_valid()
        if own is None and self.cfg.load != "auto":
            return self._explicit()
        if own is not None and self.cfg.load != "auto" and self.rank == 0:
            log.info("run dir has checkpoints: resuming from %s, not checkpoint.load", own)
        return own

    def _explicit(self) -> Path:
        path = resolve_checkpoint(self.cfg.load, "checkpoint.load")
        problems = self._verify(path)
        if problems:
            raise OlmoError(
                f"checkpoint.load: {problems[0]}; pass another checkpoint or checkpoint.load=auto"
            )
        return path

    def _newest_valid(self) -> Path | None:
        candidates = [Path(p) for p in _agree([str(p) for _, p in committed_steps(self.root)])]
        chosen, bad = None, []
        for path in candidates:
            problems = self._verify(path)
            if not problems:
                chosen = path
                break
            bad.append(path)
            if self.rank == 0:
                log.warning("skipping checkpoint %s: %s", path.name, "; ".join(problems[:3]))
        if self.rank == 0:
            self._tidy(bad, chosen)
        _barrier()
        return chosen

    def _verify(self, path: Path) -> list[str]:
        """Collective: each rank checks its share of the files (checksum, then that it loads
        without running code); everyone gets all problems."""
        try:
            names = marked_files(path)
            problems = checkpoint_problems(path, names[self.rank :: self.world_size])
        except OlmoError as e:
            problems = [str(e)]
        if self.world_size > 1 and dist.is_initialized():
            gathered: list[Any] = [None] * self.world_size
            dist.all_gather_object(gathered, problems)
            problems = [p for g in gathered for p in g]
        return list(dict.fromkeys(problems))

    def _tidy(self, bad: list[Path], chosen: Path | None) -> None:
        """Rank 0 at resume: drop saves a kill cut short, move failed ones aside, fix `latest`."""
        for _, tmp in unfinished(self.root):
            if tmp.name.endswith(".tmp"):
                log.info("removing %s: a save that never committed", tmp)
                shutil.rmtree(tmp, ignore_errors=True)
        for path in bad:
            aside = corrupt_dir(path)
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(path, aside)
            log.warning("moved %s aside to %s; delete it once inspected", path.name, aside.name)
        if chosen is not None and chosen.parent == self.root:
            self._point_latest(chosen)
        elif bad and not committed_steps(self.root):
            (self.root / "latest").unlink(missing_ok=True)

    # ---- loading ------------------------------------------------------------------------
    def load(
        self,
        path: Path,
        model: torch.nn.Module,
        optim: torch.optim.Optimizer,
        optim_state: bool = True,
    ) -> dict[str, Any] | None:
        """Restore model (+ optimizer and trainer state when present); returns the trainer state.
        `optim_state=False`: the checkpoint's optimizer state is for another optimizer (a switch
        on resume): not read; the trainer state still is."""
        marker = read_marker(path)
        model_sd, optim_sd = get_state_dict(model, optim)
        has_optim = "optim" in marker.get("contents", [])
        with_optim = has_optim and optim_state
        state = {"model": model_sd, "optim": optim_sd} if with_optim else {"model": model_sd}
        dcp_load(state, path)
        if with_optim:
            set_state_dict(
                model, optim, model_state_dict=state["model"], optim_state_dict=state["optim"]
            )
        else:  # set_state_dict refuses an empty optimizer state
            set_model_state_dict(model, state["model"])
        if not has_optim:
            log.info("%s holds weights only: optimizer and data order start fresh", path)
            return None
        saved_ws = marker.get("world_size")
        rng = path / f"rng-rank{self.rank}.pt"
        if saved_ws == self.world_size and rng.is_file():
            _set_rng_state(load_rng(rng))
        elif self.rank == 0:
            log.warning(
                "resharding: checkpoint written by %s ranks, loading on %d; model, optimizer and "
                "data position carry over, per-rank RNG states do not (runs are not bitwise comparable)",
                saved_ws,
                self.world_size,
            )
        return read_trainer_state(path)

    def has_step(self, step: int) -> bool:
        """A checkpoint of `step` is committed in this run dir (by this or an earlier attempt)."""
        return step_dir(self.root, step).is_dir()

    def due(self, step: int) -> bool:
        by_steps = self.cfg.interval > 0 and step % self.cfg.interval == 0
        by_time = (
            self.cfg.interval_minutes > 0
            and time.monotonic() - self.last_save_time >= 60 * self.cfg.interval_minutes
        )
        return by_steps or by_time


def _barrier(group: Any = None) -> None:
    if dist.is_initialized():
        dist.barrier(group=group)


def _agree(obj: Any) -> Any:
    """Rank 0's value on every rank (directory listings may race with rank 0's tidying)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return obj


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
