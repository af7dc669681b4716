"""Where energy measurements live on disk: RUN_DIR/energy/attemptN/{job,node-HOST}.json + traces.

Each node's leader writes its own file (no gather needed; the run dir is on a shared filesystem),
rank 0 writes job.json; energy.json is rebuilt from all attempts, so a killed attempt still counts
up to its last write and totals accumulate across restarts.
"""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Any

from olmo.fsutil import atomic_write_json
from olmo.inputs import check_record


def node_name() -> str:
    """SLURM's node name when under SLURM (unique per node even on a test cluster), else host."""
    name = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def attempt_dir(run_dir: Path, attempt: int) -> Path:
    return Path(run_dir) / "energy" / f"attempt{attempt}"


def write_node(run_dir: Path, attempt: int, node: str, data: dict[str, Any]) -> None:
    atomic_write_json(attempt_dir(run_dir, attempt) / f"node-{node}.json", data)


def append_trace(run_dir: Path, attempt: int, node: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    path = attempt_dir(run_dir, attempt) / f"node-{node}.trace.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))


def write_job(run_dir: Path, attempt: int, data: dict[str, Any]) -> None:
    atomic_write_json(attempt_dir(run_dir, attempt) / "job.json", data)


NUM = (int, float, type(None))
# What the summary and the report compute with or print, per file; checked when read.
NODE_FIELDS = {"node": str, "backend": str, "energy_j": NUM, "duration_s": NUM,
               "mean_power_w": NUM, "peak_power_w": NUM, "samples": (int, type(None)),
               "devices": (dict, type(None)), "reasons": dict}  # fmt: skip
DEVICE_FIELDS = {"energy_j": NUM, "mean_power_w": NUM, "peak_power_w": NUM, "units": int,
                 "source": str}  # fmt: skip
JOB_FIELDS = {"status": str, "tokens": int, "first_step": (int, type(None)),
              "last_step": (int, type(None)), "nodes": int, "settings": dict}  # fmt: skip
SETTINGS_FIELDS = {"pue": (int, float), "carbon_intensity_g_per_kwh": (int, float)}
FIX = "repair or delete the file"


def _read(path: Path, fields: dict[str, Any]) -> dict[str, Any] | None:
    """The file's object with `fields` checked; None when missing or not JSON (a killed write)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return check_record(data, str(path), fields, FIX)


def _read_node(path: Path) -> dict[str, Any] | None:
    data = _read(path, NODE_FIELDS)
    for name, dev in ((data or {}).get("devices") or {}).items():
        check_record(dev, f"{path}: devices.{name}", DEVICE_FIELDS, FIX)
    return data


def _read_job(path: Path) -> dict[str, Any] | None:
    data = _read(path, JOB_FIELDS)
    if data is not None:
        check_record(data.get("settings", {}), f"{path}: settings", SETTINGS_FIELDS, FIX)
    return data


def read_attempts(run_dir: Path) -> list[dict[str, Any]]:
    """[{attempt, job, nodes: {name: node file}, traces: {name: path}}] in attempt order."""
    root = Path(run_dir) / "energy"
    found = []
    for d in root.glob("attempt*"):
        m = re.fullmatch(r"attempt(\d+)", d.name)
        if not m or not d.is_dir():
            continue
        nodes = {}
        for f in sorted(d.glob("node-*.json")):
            data = _read_node(f)
            if data is not None:
                nodes[data.get("node", f.stem.removeprefix("node-"))] = data
        traces = {p.name.removeprefix("node-").removesuffix(".trace.jsonl"): p
                  for p in d.glob("node-*.trace.jsonl")}  # fmt: skip
        found.append({"attempt": int(m[1]), "job": _read_job(d / "job.json"), "nodes": nodes,
                      "traces": traces})  # fmt: skip
    return sorted(found, key=lambda a: a["attempt"])


def read_trace(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except (ValueError, RecursionError):  # a line cut short by a kill, or garbage
            continue
    return rows
