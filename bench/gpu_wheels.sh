#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with every wheel bench/gpu_all.sh may install on the GPU machine, which
# has Python 3.12, torch, transformers, tokenizers and nvidia-ml-py but no network: the list in
# bench/gpu_wheels.txt, for CPython 3.12 on manylinux x86_64, without dependencies (the list is
# the closure; this script checks every Requires-Dist against it and what the machine has).
# .whl/ travels with the working tree to the GPU machine (device tool: carry [".whl"]), so its
# total must stay well under the 64 MiB carry limit (goal < 40 MiB).
# Usage: bench/gpu_wheels.sh   (needs a package index; ~30 s)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
DEST=.whl
mkdir -p "$DEST"
mapfile -t SPECS < <(grep -Ev '^\s*(#|$)' bench/gpu_wheels.txt)
"$PY" -m pip download --quiet --only-binary=:all: --no-deps --python-version 3.12 \
  --implementation cp --abi cp312 --abi abi3 --abi none \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any \
  --dest "$DEST" "${SPECS[@]}"
# Every Requires-Dist (no extras, markers for CPython 3.12 on Linux) is in the list or on the machine.
"$PY" - "$DEST" "${SPECS[@]}" <<'PYEOF'
import re, sys, zipfile
from pathlib import Path
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as canon

dest, specs = Path(sys.argv[1]), sys.argv[2:]
listed = {canon(Requirement(s).name): s for s in specs}
machine = {canon(n) for n in "torch numpy transformers tokenizers nvidia-ml-py setuptools filelock "
           "typing-extensions huggingface-hub".split()}
env = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
       "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
wheels, missing, total = {}, [], 0
for w in sorted(dest.glob("*.whl")):
    name = canon(re.split(r"-\d", w.name, maxsplit=1)[0])
    if name not in listed:
        continue  # an older download; not installed
    wheels[name] = w
    total += w.stat().st_size
    meta = next(n for n in zipfile.ZipFile(w).namelist() if n.endswith(".dist-info/METADATA"))
    for line in zipfile.ZipFile(w).read(meta).decode().splitlines():
        if line.startswith("Requires-Dist:"):
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker and not req.marker.evaluate(env):
                continue
            dep = canon(req.name)
            if dep not in listed and dep not in machine and not (
                name == "ai2-olmo-core" and dep in {"cached-path", "pandas", "importlib-resources"}
            ):
                missing.append(f"{w.name} needs {req}")
absent = sorted(set(listed) - set(wheels))
for w in sorted(wheels.values()):
    print(f"{w.stat().st_size / 2**20:7.2f} MiB  {w.name}")
print(f"{total / 2**20:7.2f} MiB  total, {len(wheels)} wheels in {dest}/")
if absent or missing:
    sys.exit("not satisfiable: " + "; ".join([*(f"no wheel for {a}" for a in absent), *missing]))
if total > 40 * 2**20:
    sys.exit(f"{dest}/ is {total / 2**20:.1f} MiB: over the 40 MiB goal (it travels with the tree)")
PYEOF
