"""`olmo eval CKPT`: downstream accuracies of a checkpoint (one process, CPU or one GPU)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from olmo.errors import OlmoError
from olmo.eval.tasks import MODES, TASKS, normalization
from olmo.inputs import at_least


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint dir, or a run dir / checkpoints dir whose `latest` is used."""
    if (path / "COMMITTED.json").is_file():
        return path
    for cand in (path / "checkpoints" / "latest", path / "latest"):
        if cand.exists():
            return cand.resolve()
    raise OlmoError(f"{path}: neither a committed checkpoint nor a run dir with checkpoints/latest")


def _tokenizer_name(config_file: Path) -> str:
    """data.tokenizer of the checkpoint's config ("olmo" where it has none)."""
    from olmo.config.loader import read_yaml

    data = read_yaml(config_file).get("data") or {}
    name = data.get("tokenizer", "olmo") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name:
        raise OlmoError(
            f"{config_file}: 'data' needs a tokenizer name (data.tokenizer), got {data!r}"
        )
    return name


def _run(args: argparse.Namespace) -> int:
    from olmo.checkpoint.io import CONFIG, load_model
    from olmo.eval.downstream import evaluate_tasks
    from olmo.tokenizer import load_tokenizer

    ckpt = resolve_checkpoint(Path(args.checkpoint))
    tasks = args.tasks.split(",") if args.tasks else list(TASKS)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise OlmoError(f"--tasks: unknown task '{unknown[0]}'; choose from {', '.join(TASKS)}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(ckpt, device=str(device)).eval()
    tokenizer = load_tokenizer(_tokenizer_name(ckpt / CONFIG))
    max_len = args.max_len or model.cfg.max_seq_len
    if max_len > model.cfg.max_seq_len:  # RoPE tables end there
        raise OlmoError(
            f"--max-len {max_len}: longer than the checkpoint's model.max_seq_len "
            f"{model.cfg.max_seq_len}; use at most that"
        )
    acc = evaluate_tasks(
        model,
        tokenizer,
        tasks,
        limit=args.limit,
        batch_size=args.batch_size,
        max_len=max_len,
        device=device,
        data_dir=args.data_dir,
        normalization=args.normalization,
    )
    norms = {t: normalization(t, args.normalization) for t in tasks}
    if args.json:
        out = {"checkpoint": str(ckpt), "limit": args.limit, "normalization": args.normalization}
        print(json.dumps({**out, "normalizations": norms, "accuracy": acc}))
    else:
        print(f"{ckpt} (zero-shot, {args.limit or 'all'} docs per task, {args.normalization})")
        for task, a in acc.items():
            print(f"  {task:14s} {a:6.3f}  ({norms[task]})")
        print(f"  {'mean':14s} {sum(acc.values()) / len(acc):6.3f}")
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register `olmo eval`."""
    p = subparsers.add_parser(
        "eval",
        help="zero-shot downstream accuracy of a checkpoint (ARC, BoolQ, COPA, HellaSwag, ...)",
        description="Zero-shot rank classification with the OLMo paper's normalizations "
        "(or ai2-olmo's, --normalization oe-eval); the bundled subset holds 100 documents per task.",
    )
    p.add_argument("checkpoint", help="checkpoint dir, or a run dir (uses checkpoints/latest)")
    p.add_argument("--tasks", help=f"comma-separated subset of: {','.join(TASKS)}")
    p.add_argument(
        "--limit", type=at_least(1), default=100, help="documents per task (default 100)"
    )
    p.add_argument("--batch-size", type=at_least(1), default=16, help="choices per forward pass")
    p.add_argument(
        "--max-len", type=at_least(1), help="context window (default: model.max_seq_len)"
    )
    p.add_argument("--data-dir", help="directory of <task>.jsonl.gz (default: bundled subset)")
    p.add_argument(
        "--normalization",
        choices=MODES,
        default="paper",
        help="per-task score normalization: paper (OLMo paper §4.1, default) or oe-eval "
        "(ai2-olmo's rc_0shot evaluators)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run)
