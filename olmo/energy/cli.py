"""`olmo energy report RUN_DIR [--png FILE]` and `olmo energy estimate CONFIG --tokens T ...`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from olmo.errors import OlmoError
from olmo.inputs import check_output, positive_float


def _report(args: argparse.Namespace) -> int:
    from olmo.energy.report import load, plot, table

    run_dir = Path(args.run_dir)
    if args.png:
        check_output(args.png, "--png", suffix=".png")
    data = load(run_dir)
    print(json.dumps(data, indent=1) if args.json else table(data))
    if args.png:
        plot(run_dir, Path(args.png))
        if not args.json:
            print(f"plot: {args.png}")
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="energy table (segments, nodes, totals) and plot of a run")
    p.add_argument("run_dir", help="run directory")
    p.add_argument("--png", help="write a plot of power over time and energy per step here")
    p.add_argument("--json", action="store_true", help="print the energy.json content instead")
    p.set_defaults(func=_report)


def _estimate(args: argparse.Namespace) -> int:
    from olmo.config.schema import load_config
    from olmo.energy.estimate import estimate, format_estimate, site_facts

    cfg = load_config(args.config, args.set or [])
    if (args.run is None) == (args.j_per_token is None):
        raise OlmoError(
            "olmo energy estimate: give exactly one of --run RUN_DIR or --j-per-token X"
        )
    pue, carbon = site_facts(cfg, args.cluster)
    est = estimate(cfg, args.tokens, pue, carbon, run_dir=args.run, j_per_token=args.j_per_token)
    print(json.dumps(est, indent=1) if args.json else format_estimate(est))
    return 0


def _add_estimate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "estimate",
        help="energy/CO2e of a full run from a measured J/token",
        description="What training CONFIG on T tokens would cost: J/token from a measured short "
        "run (--run, scaled by the models' parameter ratio) or given (--j-per-token); PUE and "
        "grid intensity from --cluster's profile, else from CONFIG's energy section.",
    )
    p.add_argument("config", help="YAML config of the full run")
    p.add_argument(
        "--tokens", type=positive_float, required=True, help="tokens to train, e.g. 2e12"
    )
    p.add_argument("--run", help="a measured run dir (its energy.json J/token)")
    p.add_argument("--j-per-token", type=positive_float, help="measured joules per token")
    p.add_argument("--cluster", help="cluster profile (name or YAML) for PUE and grid intensity")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_estimate)


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("energy", help="energy report of a run; estimate a full run's cost")
    sub = p.add_subparsers(dest="energy_command", metavar="ACTION", required=True)
    _add_report(sub)
    _add_estimate(sub)
