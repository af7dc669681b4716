#!/usr/bin/env python3
"""Stand-in for `singularity` / `apptainer` at the hardware boundary (no runtime installs here).

Behaves as the real runtimes do where it matters to the launchers: `RUNTIME exec [flags] IMAGE
CMD...`; the container's environment is the host's, minus the host's PATH and LD_LIBRARY_PATH
(not passed in), overridden by the image's own environment, then by SINGULARITYENV_* /
APPTAINERENV_* (which replace the image's value of that variable: SINGULARITYENV_LD_LIBRARY_PATH
drops the image's library dirs) and `--env K=V`; SINGULARITY_CONTAINER / APPTAINER_CONTAINER name
the image. The "image" is a JSON file {"env": {...}} written by the test from the Dockerfile's
ENV lines; the command runs on this machine, with the test's image bin dir (python, the image's
entrypoint) first on PATH. Binds are recorded, not mounted (LUMI's host paths don't exist here).

Every exec writes {"runtime", "argv", "image", "binds", "flags", "env", "node"} as one JSON file
into the directory $OLMO_STANDIN_LOG.
"""

from __future__ import annotations

import json
import os
import sys

PREFIXES = {"singularity": ("SINGULARITYENV_",), "apptainer": ("APPTAINERENV_", "SINGULARITYENV_")}
NOT_PASSED = ("PATH", "LD_LIBRARY_PATH")
VALUE_FLAGS = {"-B", "--bind", "--env", "--pwd", "-W", "--workdir"}


def parse(args: list[str]) -> tuple[dict, str, list[str]]:
    """Flags, image and command of `exec [flags] IMAGE CMD...`."""
    if not args or args[0] != "exec":
        sys.exit(f"stand-in runtime: only 'exec' is supported, got {args[:1]}")
    flags: dict = {"binds": [], "env": [], "other": []}
    i = 1
    while i < len(args) and args[i].startswith("-"):
        flag = args[i]
        if flag in VALUE_FLAGS:
            value = args[i + 1]
            i += 2
            if flag in ("-B", "--bind"):
                flags["binds"] += value.split(",")
            elif flag == "--env":
                flags["env"].append(value)
            continue
        flags["other"].append(flag)
        i += 1
    if i + 1 >= len(args):
        sys.exit("stand-in runtime: exec needs an image and a command")
    return flags, args[i], args[i + 1 :]


def container_env(runtime: str, image: str, image_env: dict, flags: dict) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NOT_PASSED}
    env.update(image_env)
    for prefix in reversed(PREFIXES[runtime]):  # the runtime's own prefix wins
        for key, value in os.environ.items():
            if key.startswith(prefix):
                env[key[len(prefix) :]] = value
    for kv in flags["env"]:
        key, _, value = kv.partition("=")
        env[key] = value
    for key in list(env):
        if key.startswith(("SINGULARITYENV_", "APPTAINERENV_")):
            del env[key]
    env[f"{runtime.upper()}_CONTAINER"] = image
    env["PATH"] = os.environ["OLMO_STANDIN_IMAGE_BIN"] + ":" + env.get("PATH", "/usr/bin:/bin")
    return env


def main() -> None:
    runtime = os.path.basename(sys.argv[0])
    flags, image, cmd = parse(sys.argv[1:])
    try:
        with open(image) as f:
            image_env = json.load(f)["env"]
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"FATAL: could not open image {image}: {e}")
    env = container_env(runtime, image, image_env, flags)
    record = {"runtime": runtime, "argv": cmd, "image": image, "binds": flags["binds"]}
    record.update(flags=flags["other"], env=env, node=os.environ.get("SLURMD_NODENAME"))
    log = os.path.join(os.environ["OLMO_STANDIN_LOG"], f"exec-{os.getpid()}.json")
    with open(log, "w") as f:
        json.dump(record, f)
    os.execvpe(cmd[0], cmd, env)


if __name__ == "__main__":
    main()
