"""CLI of the launch package: `olmo sbatch`, `olmo launch`, `olmo cluster`, `olmo doctor`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from olmo.errors import OlmoError


def _job_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cluster", required=True, help="profile name (cluster/NAME.yaml) or path")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a profile key, e.g. --set slurm.account=project_465000123",
    )
    p.add_argument("--nodes", type=int, help="nodes (default: the profile's)")
    p.add_argument("--time", help="walltime per attempt, e.g. 04:00:00 (default: the profile's)")
    p.add_argument("--run-dir", help="run directory (default: runs/<config name>)")
    p.add_argument("--job-name", help="SLURM job name (default: olmo-<config name>)")


def split_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """Job options may also follow CONFIG; everything else there is a train override."""
    known, overrides = parser.parse_known_args(args.rest)
    for k, v in vars(known).items():
        if k != "rest" and v not in (None, [], False):
            cur = getattr(args, k, None)
            setattr(args, k, cur + v if isinstance(v, list) and cur else v)
    bad = [o for o in overrides if not o.startswith("--")]
    if bad:
        raise OlmoError(f"unexpected argument '{bad[0]}'; train overrides look like --key=value")
    return overrides


def job_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser):
    """The profile and the job, both checked as `olmo train` and SLURM would check them, so a
    mistake fails here rather than hours later in the queue (data paths are not checked: they
    may exist only on the cluster)."""
    from olmo.launch.profile import load_profile
    from olmo.launch.sbatch import JobSpec
    from olmo.launch.shellsafe import check_literal

    overrides = split_args(args, parser)
    for value in [args.config, args.run_dir, args.job_name, *overrides, *args.set]:
        if value is not None:
            check_literal(value, "argument")
    sets = list(args.set)
    if args.nodes is not None:
        sets.append(f"slurm.nodes={args.nodes}")
    exact = {"slurm": {"time": args.time}} if args.time is not None else None
    prof = load_profile(args.cluster, sets, exact)
    stem = Path(args.config).stem
    job = JobSpec(
        config=args.config,
        run_dir=args.run_dir or f"runs/{stem}",
        overrides=overrides,
        job_name=args.job_name or f"olmo-{stem}",
    )
    check_training_config(prof, job)
    return prof, job


def check_training_config(prof, job) -> None:
    """The config and every override `olmo train` will get, with `olmo train`'s own errors."""
    from olmo.config.schema import load_config
    from olmo.launch.command import train_overrides

    if not Path(job.config).is_file():
        raise OlmoError(f"{job.config}: no such config file")
    load_config(job.config, train_overrides(prof, job))


def _sbatch(args: argparse.Namespace) -> int:
    from olmo.launch.sbatch import render, write_or_submit

    prof, job = job_from_args(args, args.reparser)
    job.argv = ["olmo", "sbatch", "--cluster", args.cluster, *_cli_tail(args, job)]
    return write_or_submit(render(prof, job), args.output, args.submit, prof.log_dir)


def _cli_tail(args: argparse.Namespace, job) -> list[str]:
    tail = [f"--set={s}" for s in args.set]
    for opt in ("nodes", "time", "run_dir", "job_name"):
        if getattr(args, opt) is not None:
            tail.append(f"--{opt.replace('_', '-')}={getattr(args, opt)}")
    return [*tail, job.config, *job.overrides]


def _launch(args: argparse.Namespace) -> int:
    from olmo.launch.submit import launch

    prof, job = job_from_args(args, args.reparser)
    return launch(prof, job, dry_run=args.dry_run, wait=args.wait)


def _cluster(args: argparse.Namespace) -> int:
    from olmo.launch import localcluster

    root = Path(args.root) if args.root else None
    if args.action == "up":
        conf = localcluster.up(root, args.nodes)
        print(conf)
        print(f"export SLURM_CONF={conf}", file=sys.stderr)
        return 0
    if args.action == "down":
        localcluster.down(root)
        return 0
    out = localcluster.run_script("status", root, args.nodes)
    print(out, end="")
    return 0 if "stopped" not in out else 1


def _doctor(args: argparse.Namespace) -> int:
    from olmo.launch.doctor import run_doctor

    return run_doctor(
        args.expect_devices,
        args.min_shm_gb,
        args.size_mb,
        args.kind,
        args.transport,
        args.min_bus_gb_per_s,
        args.run_dir,
    )


def add_cli(sub: argparse._SubParsersAction) -> None:
    for name, func, text in (
        ("sbatch", _sbatch, "render a standalone sbatch script for a cluster profile"),
        ("launch", _launch, "submit training through submitit (one task per device)"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        _job_options(p)
        p.add_argument("config", help="training YAML config")
        p.add_argument("rest", nargs=argparse.REMAINDER, help="train overrides --key=value")
        if name == "sbatch":
            p.add_argument("-o", "--output", help="write the script here (default: stdout)")
            p.add_argument("--submit", action="store_true", help="submit it with sbatch")
        else:
            p.add_argument("--dry-run", action="store_true", help="print what would be submitted")
            p.add_argument("--wait", action="store_true", help="wait for the job to finish")
        re = argparse.ArgumentParser(add_help=False)
        for a in p._actions:
            if a.option_strings and a.dest != "help" and a.dest != "cluster":
                re._add_action(a)
        p.set_defaults(func=func, reparser=re)
    c = sub.add_parser("cluster", help="bring the local SLURM test cluster up or down")
    c.add_argument("action", choices=["up", "down", "status"])
    c.add_argument("--root", help="state directory (default: $OLMO_CACHE/slurm)")
    c.add_argument("--nodes", type=int, default=3, help="slurmd nodes (default 3)")
    c.set_defaults(func=_cluster)
    d = sub.add_parser("doctor", help="pre-flight check of devices, /dev/shm and the network")
    d.add_argument("--expect-devices", type=int, help="devices each node must have")
    d.add_argument("--min-shm-gb", type=float, default=0.5, help="free /dev/shm needed (GiB)")
    d.add_argument(
        "--kind", choices=["cpu", "cuda", "rocm"], help="device kind the profile expects"
    )
    d.add_argument("--size-mb", type=float, default=16.0, help="all-reduce size (MiB)")
    d.add_argument(
        "--transport",
        choices=["ofi", "ib", "sockets", "any"],
        default="any",
        help="transport the collectives must use (profile doctor.transport)",
    )
    d.add_argument(
        "--min-bus-gb-per-s",
        type=float,
        default=0.0,
        help="bus bandwidth floor of every pair of neighbouring nodes (GB/s; 0 = none)",
    )
    d.add_argument("--run-dir", help="on failure, also book `doctor_failed` in its logbook")
    d.set_defaults(func=_doctor)
