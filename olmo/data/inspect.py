"""`olmo data inspect RUN_DIR_OR_CONFIG --step N`: the exact batch a training step consumed.

Steps are numbered as the trainer logs them, 1-based. Every step's metrics record logs its
`data_position` (where its global batch starts in the data order) and `global_batch_size`; from a
run dir, the batch is rebuilt at that logged place, so skipped data (a loss-spike rollback) and
batch-size changes are followed. From a config file, or for a step not logged yet, the place is
replayed from the config (train.batch_size_schedule or the fixed batch, no skips). The data
itself (paths or sources, tokenizer, seq_len, train.seed, train.eval_holdout_instances) comes from
the config with the trainer's own builder; the `batch_hash` matches the one in the step's metrics.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from olmo.config.loader import from_dict, read_yaml
from olmo.data.config import DataConfig
from olmo.data.loader import BatchPlan, DataLoader, batch_hash
from olmo.data.split import build_train_data
from olmo.errors import OlmoError

PREVIEW_CHARS = 300  # decoded characters shown per instance in the human-readable output


def load_run_config(path: str | Path) -> dict[str, Any]:
    """The resolved config dict of a run dir (`RUN_DIR/config.yaml`) or a YAML config file."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.yaml"
        if not p.is_file():
            raise OlmoError(f"{p}: run directory has no config.yaml; pass the run's config file")
    return read_yaml(p)


def _section(cfg: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    value = cfg.get(name) or {}
    if not isinstance(value, dict):
        raise OlmoError(f"{source}: '{name}' must be a mapping, got {type(value).__name__}")
    return value


def _train_int(cfg: dict[str, Any], key: str, source: str, minimum: int = 1) -> int:
    value = _section(cfg, "train", source).get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise OlmoError(f"{source}: train.{key} must be an integer >= {minimum}, got {value!r}")
    return value


def loader_from_config_dict(
    cfg: dict[str, Any], rank: int = 0, world_size: int = 1, source: str = "config"
) -> DataLoader:
    """The trainer's DataLoader from a config dict: `data:` plus `train:` (seed,
    global_batch_size or global_batch_tokens, batch_size_schedule, micro_batch_size,
    eval_holdout_instances)."""
    data = from_dict(DataConfig, cfg.get("data") or {}, "data.", source)
    data.validate()
    train = _section(cfg, "train", source)
    seed = _train_int(cfg, "seed", source, minimum=0)  # numpy seeds are non-negative
    if train.get("global_batch_tokens") is not None:  # an unresolved config may give tokens
        gbs = _train_int(cfg, "global_batch_tokens", source) // data.seq_len
    else:
        gbs = _train_int(cfg, "global_batch_size", source)
    holdout = train.get("eval_holdout_instances") or 0
    if holdout:
        holdout = _train_int(cfg, "eval_holdout_instances", source)
    schedule = train.get("batch_size_schedule")
    micro = train.get("micro_batch_size") or 1
    # The trainer's own builder: the held-out tail is excluded exactly as in training.
    loader, _ = build_train_data(
        data, seed, gbs, holdout, rank, world_size, schedule=schedule, micro_batch_size=micro
    )
    return loader


def logged_plan(run_dir: Path, step: int) -> BatchPlan | None:
    """Step `step`'s logged `data_position` and `global_batch_size` from RUN_DIR/metrics.jsonl
    (the last record of that step wins; a torn line is ignored); None when not logged."""
    found = None
    try:
        with open(run_dir / "metrics.jsonl") as f:
            for line in f:
                if f'"step": {step},' not in line and f'"step": {step}}}' not in line:
                    continue  # cheap pre-filter: json.dumps writes `"step": N` this way
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("step") == step and "data_position" in rec:
                    found = BatchPlan(step - 1, rec["data_position"], rec["global_batch_size"])
    except FileNotFoundError:
        return None
    return found


def inspect_step(
    cfg: dict[str, Any], step: int, source: str = "config", run_dir: Path | None = None
) -> dict[str, Any]:
    """`{"step", "indices", "batch_hash", "tokens", "data_position", "global_batch_size",
    "epoch"}` (+ `"sources"` for a mixture) of trainer step `step` (1-based). The batch's place
    in the data order is read from `run_dir`'s metrics.jsonl where the step was logged (so skips
    and batch-size changes are followed), else replayed from the config (no skips)."""
    if step < 1:
        raise OlmoError(f"--step {step}: steps are 1-based (step 1 is the first optimizer step)")
    loader = loader_from_config_dict(cfg, source=source)
    plan = logged_plan(run_dir, step) if run_dir is not None else None
    plan = plan or loader.plan(step - 1)
    indices = loader.indices(plan)
    tokens = loader.dataset.get_batch(indices)
    result = {
        "step": step,
        "indices": indices.tolist(),
        "batch_hash": batch_hash(indices),
        "tokens": tokens.tolist(),
        "data_position": plan.position,
        "global_batch_size": plan.size,
        "epoch": loader.order.epoch(plan.position),
    }
    labels = loader.order.labels(plan.position, plan.size)
    if labels is not None:
        result["sources"] = [loader.order.names[i] for i in labels.tolist()]
    return result


def format_human(result: dict[str, Any], decode) -> str:
    """Indices, hash and a one-line preview of each instance's decoded text."""
    epoch = "" if result["epoch"] is None else f", epoch {result['epoch']}"
    lines = [
        f"step {result['step']} (data position {result['data_position']}{epoch}): "
        f"{len(result['indices'])} instances, batch_hash {result['batch_hash']}"
    ]
    names = result.get("sources") or [None] * len(result["indices"])
    for index, toks, name in zip(result["indices"], result["tokens"], names, strict=True):
        text = decode(toks)
        preview = text[:PREVIEW_CHARS].replace("\n", "\\n")  # one line per instance
        more = f" ... (+{len(text) - PREVIEW_CHARS} chars)" if len(text) > PREVIEW_CHARS else ""
        lines.append(f"  [{index}]{f' ({name})' if name else ''} {preview}{more}")
    return "\n".join(lines)


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register `olmo data inspect RUN_DIR_OR_CONFIG --step N [--json]`."""
    data = subparsers.add_parser("data", help="inspect training data")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "inspect",
        help="show the exact batch of a training step",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", metavar="RUN_DIR_OR_CONFIG", help="run directory or YAML config")
    p.add_argument("--step", type=int, required=True, help="trainer step, 1-based")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    cfg = load_run_config(args.run)
    run_dir = Path(args.run) if Path(args.run).is_dir() else None
    result = inspect_step(cfg, args.step, source=str(args.run), run_dir=run_dir)
    if args.json:
        print(json.dumps(result))
    else:
        tok = from_dict(DataConfig, cfg.get("data") or {}, "data.").build_tokenizer()
        print(format_human(result, tok.decode))
    return 0
