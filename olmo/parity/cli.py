"""`olmo parity fingerprint | compare | runs`: does this machine compute what that one does?"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from olmo.errors import OlmoError
from olmo.fsutil import atomic_write_text
from olmo.inputs import at_least, check_output, nonnegative_float


def _fingerprint(args: argparse.Namespace) -> int:
    from olmo.config.schema import load_config
    from olmo.parity.fingerprint import FingerprintOptions, fingerprint

    check_output(args.out, "--out")
    config = Path(args.config)
    if config.is_dir():  # a run directory: its resolved config
        config = config / "config.yaml"
    cfg = load_config(config, [f"--{o.removeprefix('--')}" for o in args.override])
    opts = FingerprintOptions(
        device=args.device,
        dtype=args.dtype,
        batches=args.batches,
        instances=args.instances,
        flip_bit=_parse_flip(args.flip_bit) if args.flip_bit else None,
    )
    fp = fingerprint(cfg, opts)
    # Not sorted: quantities stay in forward order, so the first break localises the fault.
    atomic_write_text(args.out, json.dumps(fp, indent=1) + "\n")
    q = fp["quantities"]
    loss = q["b0/loss"]["value"]
    print(
        f"{args.out}: {len(q)} quantities on {fp['device']} ({fp['device_name']}, {fp['dtype']}); "
        f"loss {loss:.6f}, grad norm {q['grad_norm/total']['value']:.6f}, "
        f"updated weights {fp['bits']['updated_weights_sha256'][:16]}"
    )
    return 0


def _parse_flip(text: str) -> tuple[str, int, int]:
    try:
        name, index, bit = text.split(",")
        return name, int(index), int(bit)
    except ValueError:
        raise OlmoError(
            f"--flip-bit {text}: write PARAM,INDEX,BIT, e.g. layers.0.attention.qkv.weight,5,22"
        ) from None


def _compare(args: argparse.Namespace) -> int:
    from olmo.parity.compare import compare, format_report, load_fingerprint, summary

    a, b = load_fingerprint(args.a), load_fingerprint(args.b)
    rtol = {"fp32": args.rtol_fp32, "bf16": args.rtol_bf16}
    result = compare(a, b, rtol, require_bits=args.require_bits)
    if args.json:
        print(json.dumps({"a": args.a, "b": args.b, **summary(result)}))
    else:
        print(format_report(result, a, b, full=args.full))
    return 0 if result.passed else 1


def _runs(args: argparse.Namespace) -> int:
    from olmo.parity.runs import compare_runs, plot, read_steps, report, summary

    if args.png:
        check_output(args.png, "--png", suffix=".png")
    result = compare_runs(read_steps(args.a), read_steps(args.b), args.window, args.band)
    if args.png:
        plot(result, args.png, args.a, args.b)
    if args.json:
        print(json.dumps({"a": args.a, "b": args.b, **summary(result)}))
    else:
        print(report(result, args.a, args.b) + (f"\nplot: {args.png}" if args.png else ""))
    return 0 if result.passed else 1


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register `olmo parity {fingerprint,compare,runs}`."""
    from olmo.parity.compare import DEFAULT_RTOL
    from olmo.parity.runs import DEFAULT_BAND, DEFAULT_WINDOW

    parity = subparsers.add_parser("parity", help="cross-vendor numerical parity checks")
    sub = parity.add_subparsers(dest="parity_command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "fingerprint",
        help="record what one training step computes on a device",
        description="Weights made on the CPU (identical bits everywhere), golden batches from "
        "the data pipeline, forward + backward + one AdamW step on the device; writes statistics "
        "of activations, logits, loss, gradients and the update, plus the environment.",
    )
    p.add_argument("config", help="YAML config, or a run directory (its config.yaml)")
    p.add_argument("--out", required=True, help="fingerprint JSON to write")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--batches", type=at_least(1), default=1, help="golden batches (default 1)")
    p.add_argument(
        "--instances", type=at_least(1), help="instances per batch (default micro batch)"
    )
    p.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, e.g. -o model.rope_theta=500000 (repeatable)",
    )
    p.add_argument(
        "--flip-bit",
        metavar="PARAM,INDEX,BIT",
        help="fault drill: flip one bit of one weight on the device",
    )
    p.set_defaults(func=_fingerprint)

    c = sub.add_parser("compare", help="compare two fingerprints against tolerances (exit 0/1)")
    c.add_argument("a", metavar="A.json")
    c.add_argument("b", metavar="B.json")
    c.add_argument("--rtol-fp32", type=nonnegative_float, default=DEFAULT_RTOL["fp32"])
    c.add_argument("--rtol-bf16", type=nonnegative_float, default=DEFAULT_RTOL["bf16"])
    c.add_argument(
        "--require-bits",
        action="store_true",
        help="also fail unless the updated weights are bit-identical (same hardware and stack)",
    )
    c.add_argument("--full", action="store_true", help="every quantity, not the worst per site")
    c.add_argument("--json", action="store_true", help="one JSON verdict line")
    c.set_defaults(func=_compare)

    r = sub.add_parser("runs", help="compare two runs' data order and loss curves (exit 0/1)")
    r.add_argument("a", metavar="RUN_A")
    r.add_argument("b", metavar="RUN_B")
    r.add_argument("--png", type=Path, help="write an overlay plot")
    r.add_argument("--window", type=at_least(1), default=DEFAULT_WINDOW, help="steps per window")
    r.add_argument(
        "--band", type=nonnegative_float, default=DEFAULT_BAND, help="max windowed |Δ loss|"
    )
    r.add_argument("--json", action="store_true", help="one JSON verdict line")
    r.set_defaults(func=_runs)
