"""What a start from a checkpoint may change, and the record of what it changed.

A resume (the run dir's own checkpoint) keeps every key that changes the numbers unless
`train.allow_change` names it; raising train.max_steps needs no allowing. A start from another
run's checkpoint (`checkpoint.load=PATH`, nothing of its own yet) is a new run: any change is
allowed and the checkpoint is recorded as its parent. Either way the changes are a
`config_change` logbook event. Decided before the attempt is recorded, so a refusal writes no
attempt.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from olmo.checkpoint.checkpointer import Checkpointer
from olmo.checkpoint.layout import CONFIG, read_marker
from olmo.config.loader import from_dict, read_yaml
from olmo.config.schema import Config, config_to_dict
from olmo.errors import OlmoError
from olmo.logbook import append_event
from olmo.train.config import OptimConfig
from olmo.train.optim import apply_hparams, state_kind

NUMBER_KEYS = (
    "model",
    "optim",
    "scheduler",
    "train.seed",
    "train.global_batch_size",
    "train.global_batch_tokens",
    "train.batch_size_schedule",
    "train.z_loss",
    "train.eval_holdout_instances",
    "data.paths",
    "data.sources",
    "data.seq_len",
)
"""Keys (or sections) whose change changes the numbers: refused on resume unless allowed.
Everything else (workers, micro-batch, distributed, logging, checkpoint, eval, wandb, energy)
may change freely and is not recorded."""

DATA_KEYS = (
    "train.seed",
    "train.eval_holdout_instances",
    "data.paths",
    "data.sources",
    "data.seq_len",
)
"""The data order is the same when these are: the position carries over, else it starts at 0."""


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` → `{"a.b": 1}`; lists stay values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _matches(key: str, names: tuple[str, ...] | list[str]) -> bool:
    return any(key == n or key.startswith(n + ".") for n in names)


def config_diff(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, list[Any]]:
    """`{key: [checkpoint's, now]}` for the keys that change the numbers (and max_steps); a key
    the checkpoint lacks (written by an older version) compares at its default."""
    old = {**flatten(config_to_dict(Config())), **flatten(saved)}
    new = flatten(current)
    keys = [k for k in new if _matches(k, (*NUMBER_KEYS, "train.max_steps"))]
    return {k: [old.get(k), new[k]] for k in keys if old.get(k) != new[k]}


def allowed_names(allow: list[str] | str) -> list[str]:
    """train.allow_change as a list (the command line gives `a.b,c.d`)."""
    items = allow.split(",") if isinstance(allow, str) else allow
    return [s.strip() for s in items if s.strip()]


def refused_keys(diff: dict[str, list[Any]], allow: list[str] | str) -> list[str]:
    """The changed keys a resume may not make: not allowed, and not a raise of max_steps."""
    names = allowed_names(allow)
    out = []
    for key, (old, new) in diff.items():
        if key == "train.max_steps" and isinstance(old, int) and new >= old:
            continue
        if not _matches(key, names):
            out.append(key)
    return out


@dataclass
class StartPoint:
    """Where this start takes its state from, decided before anything is written."""

    path: Path | None = None
    """The checkpoint to load; None = a fresh start."""
    step: int = 0
    parent: bool = False
    """A checkpoint of another run (checkpoint.load into a run dir with none of its own)."""
    diff: dict[str, list[Any]] = field(default_factory=dict)
    """`{key: [checkpoint's, now]}` (config_diff)."""
    optimizer_state: bool = True
    """The checkpoint's optimizer state fits the configured optimizer (else it starts fresh)."""
    same_data: bool = True
    """Same data order: the data position carries over (else the new data start at 0)."""
    commit: str | None = None
    """The git commit of the run that wrote the checkpoint (its env.json), if known."""
    find_s: float = 0.0
    """Seconds spent finding and verifying the checkpoint."""

    def parent_record(self) -> dict[str, Any] | None:
        """`parent` of this attempt's line in attempts.jsonl."""
        if not self.parent:
            return None
        return {
            "path": str(self.path),
            "step": self.step,
            "commit": self.commit,
            "config_diff": self.diff,
        }

    def loader_state(self, saved: dict[str, Any], seed: int, num_instances: int) -> dict[str, Any]:
        """The data loader state to load: the checkpoint's, or for other data position 0 of
        their own order with the step count (and instances consumed) carried over."""
        if self.same_data:
            return saved
        return {**saved, "seed": seed, "num_instances": num_instances, "position": 0, "skips": []}


def plan_start(cfg: Config, ckpt: Checkpointer) -> StartPoint:
    """Collective: find the checkpoint to start from and check what the config changes.
    Refuses (OlmoError, exit 2) a resume that changes numbers without train.allow_change."""
    begin = time.perf_counter()
    path = ckpt.find_resume_point()
    if path is None:
        if cfg.scheduler.decay == "anneal":
            raise OlmoError(
                "scheduler.decay=anneal starts from a checkpoint: set checkpoint.load=PATH"
            )
        return StartPoint(find_s=time.perf_counter() - begin)
    saved = _saved_config(path)
    current = config_to_dict(cfg)
    start = StartPoint(path=path, step=int(read_marker(path)["step"]))
    start.parent = path.parent.resolve() != ckpt.root.resolve()
    start.diff = config_diff(saved, current) if saved is not None else {}
    if not start.parent:
        refused = refused_keys(start.diff, cfg.train.allow_change)
        if refused:
            raise OlmoError(
                f"{path}: this resume changes {', '.join(refused)} (the numbers of the run); "
                f"restore them or pass --train.allow_change={','.join(refused)}"
            )
    if saved is not None:
        start.optimizer_state = state_kind(_optim_of(saved)) == state_kind(cfg.optim)
        start.same_data = not any(_matches(k, DATA_KEYS) for k in start.diff)
    start.commit = _commit_of(path)
    start.find_s = time.perf_counter() - begin
    return start


def _saved_config(path: Path) -> dict[str, Any] | None:
    """The config the checkpoint was written with; None for a checkpoint without one."""
    return read_yaml(path / CONFIG) if (path / CONFIG).is_file() else None


def _optim_of(saved: dict[str, Any]) -> OptimConfig:
    known = {f.name for f in dataclasses.fields(OptimConfig)}
    section = {k: v for k, v in (saved.get("optim") or {}).items() if k in known}
    return from_dict(OptimConfig, section, "optim.", f"checkpoint {CONFIG}")


def _commit_of(path: Path) -> str | None:
    try:  # checkpoints live in RUN_DIR/checkpoints/stepN; env.json beside them
        return json.loads((path.parent.parent / "env.json").read_text()).get("git_commit")
    except (OSError, ValueError, AttributeError):
        return None


def after_load(
    start: StartPoint,
    optim: torch.optim.Optimizer,
    model: torch.nn.Module,
    cfg: Config,
    state: Any,
) -> None:
    """After the checkpoint's load into the trainer state `state` (a TrainState): another
    optimizer starts with no state (get_state_dict's zero step left one behind), the configured
    hyperparameters win over the loaded ones, and an anneal takes its start."""
    if start.path is None:
        return
    # A weights-only checkpoint (e.g. `olmo checkpoint average`) has no optimizer state to load.
    has_optim = "optim" in read_marker(start.path).get("contents", [])
    loaded = start.optimizer_state and has_optim
    loaded_lr = optim.param_groups[0]["lr"] if loaded else None
    if loaded:
        apply_hparams(optim, model, cfg.optim)
    else:
        optim.state.clear()
    if cfg.scheduler.decay != "anneal":
        state.anneal_start = None
    elif start.parent or state.anneal_start is None:
        # Weights only: no last LR (nor step count): the anneal starts at optim.lr.
        fallback = None if has_optim else cfg.optim.lr
        lr0 = next((x for x in (state.lr, loaded_lr, fallback) if x is not None), None)
        if lr0 is None:
            raise OlmoError(
                f"{start.path}: no last learning rate to anneal from (an older checkpoint of "
                "another optimizer); anneal with the checkpoint's optimizer"
            )
        # The last LR already holds any rollback scaling: the anneal starts unscaled.
        state.anneal_start, state.lr_scale = [state.step, float(lr0)], 1.0


def record(run_dir: Path, attempt: int, start: StartPoint, is_main: bool) -> None:
    """Rank 0: a `config_change` event when the config changed or the checkpoint is a parent."""
    if not is_main or start.path is None or not (start.diff or start.parent):
        return
    detail = {
        "kind": "parent" if start.parent else "resume",
        "checkpoint": str(start.path),
        "diff": start.diff,
        "optimizer_state": "loaded" if start.optimizer_state else "fresh",
        "data": "continued" if start.same_data else "from position 0",
    }
    append_event(run_dir, "config_change", attempt=attempt, step=start.step, rank=0, detail=detail)
