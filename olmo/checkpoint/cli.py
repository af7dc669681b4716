"""`olmo checkpoint info|verify|consolidate|average`: look into, check, export and average
sharded checkpoints."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from olmo.errors import OlmoError


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _info(args: argparse.Namespace) -> int:
    from olmo.checkpoint.inspect import checkpoint_info, run_listing
    from olmo.checkpoint.layout import resolve_checkpoint

    ckpt = resolve_checkpoint(args.path)
    info = checkpoint_info(ckpt)
    info["run"] = run_listing(Path(args.path)) if ckpt != Path(args.path) else []
    if args.json:
        print(json.dumps(info, indent=1, sort_keys=True))
        return 0
    print("\n".join(_info_lines(info)))
    return 0


def _info_lines(info: dict[str, Any]) -> list[str]:
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info["time"] or 0))
    how = "async" if info["async"] else "sync"
    blocked = f", training blocked {info['blocking_s']:.2f} s" if info["blocking_s"] else ""
    lines = [
        info["path"],
        f"  status       committed {when}; {info['files']} files, {_mb(info['bytes'])}",
        f"  step         {info['step']}, written by {info['world_size']} rank(s) ({how} save{blocked})",
        f"  contents     {', '.join(info['contents'])}",
    ]
    for key, t in sorted(info["tensors"].items()):
        extra = f" + {t['values']} non-tensor values" if t["values"] else ""
        lines.append(
            f"  {key:12s} {t['tensors']} tensors, {t['numel']:,} elements, {_mb(t['bytes'])}{extra}"
        )
    if info["trainer"]:
        tr = info["trainer"]
        lines.append(f"  trainer      {', '.join(f'{k}={v}' for k, v in sorted(tr.items()))}")
    if info["data_loader"]:
        dl = info["data_loader"]
        lines.append(f"  data_loader  {', '.join(f'{k}={v}' for k, v in sorted(dl.items()))}")
    lines.append(f"  rng          {info['rng_files']} per-rank RNG state file(s)")
    cfg = info["config"]
    if cfg:
        model = " ".join(f"{k}={v}" for k, v in cfg["model"].items())
        rest = " ".join(f"{k}={v}" for k, v in cfg.items() if k != "model")
        lines.append(f"  config       model: {model}; {rest}")
    for row in info["run"]:
        mark = " ← latest" if row["latest"] else ""
        lines.append(f"  in run dir   {row['name']:20s} {row['status']}{mark}")
    return lines


def _verify(args: argparse.Namespace) -> int:
    from olmo.checkpoint.inspect import run_listing
    from olmo.checkpoint.layout import (
        checkpoints_root,
        committed_steps,
        is_checkpoint_dir,
    )
    from olmo.checkpoint.safe import checkpoint_problems

    path = Path(args.path)
    if not path.exists():
        raise OlmoError(f"{path}: not found; give a checkpoint dir (stepN) or a run dir")
    if path.is_dir() and is_checkpoint_dir(path):
        targets = [path]
    else:
        root = checkpoints_root(path) if path.is_dir() else None
        targets = [p for _, p in committed_steps(root)] if root else []
        if not targets:
            raise OlmoError(f"{path}: no committed checkpoint to verify (not a run dir?)")
        for row in run_listing(path):
            if row["status"] != "committed":
                print(f"note {row['name']}: {row['status']}")
    bad = 0
    for ckpt in targets:
        problems = checkpoint_problems(ckpt)
        bad += bool(problems)
        print(f"{'ok ' if not problems else 'BAD'} {ckpt}")
        for p in problems:
            print(f"    {p}")
    return 1 if bad else 0


def _consolidate(args: argparse.Namespace) -> int:
    from olmo.checkpoint.inspect import consolidate_torch, require_intact
    from olmo.checkpoint.layout import read_marker, resolve_checkpoint

    ckpt = resolve_checkpoint(args.checkpoint)
    read_marker(ckpt)
    out = Path(args.out)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise OlmoError(f"{out}: already exists; choose another output path")
    if not args.no_verify:
        require_intact(ckpt)
    if args.format == "hf":
        from olmo.checkpoint.io import export_hf

        model = export_hf(ckpt, out, verify=False)  # verified above unless --no-verify
        print(f"{ckpt} → {out} (HF OlmoForCausalLM, {model.num_params():,} parameters)")
        return 0
    if out.is_dir():
        out.rmdir()  # an empty directory given as the output file name
    weights = consolidate_torch(ckpt, out)
    n = sum(t.numel() for t in weights.values())
    print(f"{ckpt} → {out} (torch.save of {len(weights)} tensors, {n:,} parameters)")
    return 0


def _average(args: argparse.Namespace) -> int:
    from olmo.checkpoint.average import average_checkpoints, parse_weights

    weights = parse_weights(args.weights) if args.weights is not None else None
    info = average_checkpoints(args.checkpoints, args.out, weights, verify=not args.no_verify)
    sources = ", ".join(f"{s['path']} ×{s['weight']:g}" for s in info["averaged_from"])
    print(f"{args.out}: weighted mean of {sources} (weights only)")
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register `olmo checkpoint` with `info`, `verify`, `consolidate` and `average`."""
    top = subparsers.add_parser(
        "checkpoint",
        help="inspect, verify or export sharded (DCP) checkpoints",
        description="PATH may be a checkpoint dir (RUN/checkpoints/stepN) or a run dir (its "
        "newest committed checkpoint; `verify` checks all of them).",
    )
    sub = top.add_subparsers(dest="checkpoint_command", metavar="COMMAND", required=True)
    p = sub.add_parser(
        "info",
        help="step, world size, contents, tensor sizes, config of a checkpoint",
        description="Show what a checkpoint holds (reads the marker and DCP metadata; "
        "does not checksum — use `verify`). For a run dir also lists every checkpoint.",
    )
    p.add_argument("path", metavar="CKPT_OR_RUN_DIR")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_info)
    p = sub.add_parser(
        "verify",
        help="check every file against its recorded size and crc32, and that it loads safely",
        description="Exit 0 when every file of every checkpoint matches COMMITTED.json and loads "
        "without running code (DCP metadata, RNG and trainer state), 1 when one does not (the "
        "bad file is named), 2 when PATH is not a checkpoint or run dir.",
    )
    p.add_argument("path", metavar="PATH")
    p.set_defaults(func=_verify)
    p = sub.add_parser(
        "consolidate",
        help="write the model weights as one file (torch) or an HF model dir",
        description="torch: OUT is one torch.save file of the full model state dict (load with "
        "torch.load(OUT, weights_only=True)); hf: OUT is a transformers OlmoForCausalLM dir. "
        "Works for a checkpoint written by any number of ranks; verifies it first.",
    )
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--format", choices=["torch", "hf"], default="torch", help="default: torch")
    p.add_argument("--no-verify", action="store_true", help="skip the checksum pass")
    p.set_defaults(func=_consolidate)
    p = sub.add_parser(
        "average",
        help="weighted mean of several checkpoints' weights (model soup)",
        description="Write OUT, a weights-only checkpoint holding the element-wise weighted mean "
        "of the checkpoints' model weights (written by any number of ranks; read one tensor at "
        "a time; the first one's config). `olmo train --checkpoint.load=OUT`, `olmo eval` and "
        "`olmo convert to-hf` accept it. The inputs are checksummed first.",
    )
    p.add_argument("checkpoints", metavar="CKPT", nargs="+", help="checkpoint or run dirs")
    p.add_argument("--out", required=True, metavar="DIR", help="a new directory")
    p.add_argument(
        "--weights", metavar="W1,W2,...", help="one per checkpoint, normalised (default: equal)"
    )
    p.add_argument("--no-verify", action="store_true", help="skip the checksum pass")
    p.set_defaults(func=_average)
