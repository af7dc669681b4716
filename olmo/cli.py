"""The `olmo` command: one entry point, a subcommand per task."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from pathlib import Path
from typing import NoReturn

from olmo.errors import OlmoError

# Subcommands registered by their own modules (each defines add_cli(subparsers)).
SUBCOMMAND_MODULES = [
    "olmo.data.prepare",
    "olmo.data.inspect",
    "olmo.model.convert_cli",
    "olmo.checkpoint.cli",
    "olmo.envinfo",
    "olmo.eval.cli",
    "olmo.launch.cli",
    "olmo.parity.cli",
    "olmo.energy.cli",
    "olmo.observe.report",
    "olmo.observe.logbook_report",
    "olmo.observe.throughput",
]


class _Parser(argparse.ArgumentParser):
    """Usage errors as one `error:` line with exit 2, like every other bad input; subcommand
    parsers inherit it (add_subparsers makes them of the parent's class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message}; see `{self.prog} --help`\n")


def _train(args: argparse.Namespace) -> int:
    from olmo.config.schema import load_config

    if args.help_config:
        from olmo.config.loader import describe
        from olmo.config.schema import Config

        print("\n".join(describe(Config)))
        return 0
    if args.config is None:
        raise OlmoError("olmo train: give a config file, e.g. olmo train configs/tiny.yaml")
    bad = [o for o in args.overrides if not o.startswith("--") and "=" not in o]
    if bad:
        raise OlmoError(
            f"olmo train: unexpected argument '{bad[0]}'; overrides look like --section.key=value"
        )
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / Path(args.config).stem
    try:
        cfg = load_config(args.config, args.overrides)
    except OlmoError as e:
        from olmo.observe.logbook_cb import refused

        refused(run_dir, e)  # booked in an existing run dir only
        raise
    from olmo.run import run_training

    return run_training(cfg, run_dir)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train (or continue training) a model",
        description="Train from a YAML config with dotted overrides, e.g. "
        "`olmo train configs/tiny.yaml --optim.lr=1e-3 --train.max_steps=50`. Re-running the same "
        "command on the same run dir continues the run from its newest valid checkpoint.",
    )
    p.add_argument("config", nargs="?", help="YAML config file")
    p.add_argument("--run-dir", help="run directory (default: runs/<config name>)")
    p.add_argument("--help-config", action="store_true", help="list every config key with its doc")
    p.set_defaults(func=_train, overrides=[])


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="olmo", description="Train OLMo-style models on SLURM clusters.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train(sub)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:  # the hang watchdog's supervisor: before anything imports torch
        from olmo.train.watchdog import supervise_train

        code = supervise_train(argv)
        if code is not None:
            return code
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command not in ("train", "bench"):  # the commands that take config overrides
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = extra
    try:
        return int(args.func(args) or 0)
    except OlmoError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
