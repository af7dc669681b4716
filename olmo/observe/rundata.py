"""Read a run directory as it is, finished or still going: metrics, attempts, config, env, energy."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olmo.config.loader import read_yaml
from olmo.errors import OlmoError
from olmo.inputs import check_record, read_json_lines
from olmo.observe.mfu import model_config


@dataclass
class RunData:
    run_dir: Path
    records: list[dict[str, Any]]
    """One record per step, sorted; where a step appears twice the later line wins."""
    attempts: list[dict[str, Any]]
    """attempts.jsonl: one entry per start of `olmo train` on this run dir (attempt k = line k)."""
    config: dict[str, Any]
    env: dict[str, Any] = field(default_factory=dict)
    energy: dict[str, Any] | None = None
    skipped_lines: int = 0
    """Lines of metrics.jsonl that were not JSON (a last line still being written, or cut by a kill)."""

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(steps, values) of the records that have a numeric `key`."""
        pts = [(r["step"], r[key]) for r in self.records if is_number(r.get(key))]
        return [s for s, _ in pts], [v for _, v in pts]

    def attempt_first_steps(self) -> dict[int, int]:
        """First surviving step of each attempt (where a restart resumed)."""
        first: dict[int, int] = {}
        for r in self.records:
            first.setdefault(int(r.get("attempt", 1)), r["step"])
        return first

    def start_times(self) -> list[float]:
        """When each attempt started (the `time` of its attempts.jsonl line)."""
        return [a["time"] for a in self.attempts if is_number(a.get("time"))]

    def first_time(self) -> float | None:
        """The run's t0: its first start, else its earliest step record."""
        times = self.start_times() or [r["time"] for r in self.records if is_number(r.get("time"))]
        return min(times, default=None)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


NUM, NUM_OR_NULL = (int, float), (int, float, type(None))
METRIC_FIELDS = {"step": int, "attempt": int, "batch_hash": str} | dict.fromkeys(
    ("loss", "lr", "grad_norm", "tokens_seen", "tokens_per_s", "time", "eval_loss", "eval_ppl",
     "energy_j", "power_w"), NUM_OR_NULL)  # fmt: skip
ATTEMPT_FIELDS = {"time": NUM, "world_size": int, "host": str}
FIX = "repair or delete the line"


def _metric_fields(rec: dict[str, Any]) -> dict[str, Any]:
    return METRIC_FIELDS | {k: NUM_OR_NULL for k in rec if k.startswith("downstream/")}


def _jsonl(
    path: Path, fields: Callable[[dict[str, Any]], Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    """The objects of a JSON-lines file, each checked against `fields(obj)`, and the number of
    lines skipped (not JSON or not an object: still being written, or cut by a kill)."""
    if not path.is_file():
        return [], 0
    lines, bad = read_json_lines(path, FIX)
    out = [check_record(o, f"{path}:{n}", fields(o), FIX) for n, o in lines if isinstance(o, dict)]
    return out, bad + len(lines) - len(out)


def _json(path: Path, fields: Mapping[str, Any]) -> dict[str, Any] | None:
    """A JSON object file checked against `fields`; None when missing or not JSON."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return check_record(obj, str(path), fields, "repair or delete the file")


def _env(path: Path) -> dict[str, Any]:
    env = _json(path, {"devices": list, "world_size": int}) or {}
    for i, dev in enumerate(env.get("devices") or []):
        check_record(dev, f"{path}: devices[{i}]", {"name": str, "type": str}, "repair the file")
    return env


def _energy(path: Path) -> dict[str, Any] | None:
    energy = _json(path, {"totals": dict})
    totals = (energy or {}).get("totals") or {}
    fields = dict.fromkeys(("energy_j", "co2e_kg"), NUM_OR_NULL)
    check_record(totals, f"{path}: totals", fields, "repair or delete the file")
    return energy


def _config(path: Path) -> dict[str, Any]:
    """config.yaml's sections the report reads, type-checked (the model's keys as by train)."""
    if not path.is_file():
        return {}
    config = read_yaml(path)
    fix = "repair the file or run `olmo report` on the run's own config"
    check_record(config, str(path), dict.fromkeys(("model", "data", "train"), dict), fix)
    check_record(config.get("data", {}), f"{path}: data", {"seq_len": int}, fix)
    check_record(config.get("train", {}), f"{path}: train", {"max_steps": int}, fix)
    model_config(config, str(path))
    return config


def load_run(run_dir: str | Path) -> RunData:
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        raise OlmoError(
            f"{metrics}: not found; give a run directory written by `olmo train` (with metrics.jsonl)"
        )
    raw, bad = _jsonl(metrics, _metric_fields)
    by_step = {r["step"]: r for r in raw if isinstance(r.get("step"), int)}
    if not by_step:
        raise OlmoError(f"{metrics}: no complete step records yet; wait for the first log interval")
    attempts, _ = _jsonl(run_dir / "attempts.jsonl", lambda _: ATTEMPT_FIELDS)
    config = _config(run_dir / "config.yaml")
    return RunData(
        run_dir=run_dir,
        records=[by_step[s] for s in sorted(by_step)],
        attempts=attempts,
        config=config,
        env=_env(run_dir / "env.json"),
        energy=_energy(run_dir / "energy.json"),
        skipped_lines=bad,
    )
