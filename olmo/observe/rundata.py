"""Read a run directory as it is, finished or still going: metrics, attempts, config, env, energy."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from olmo.errors import OlmoError


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


def _jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Parse JSON lines, skipping (and counting) lines that are not complete objects."""
    out, bad = [], 0
    if not path.is_file():
        return out, bad
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(obj, dict):
            out.append(obj)
        else:
            bad += 1
    return out, bad


def _json(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def load_run(run_dir: str | Path) -> RunData:
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        raise OlmoError(
            f"{metrics}: not found; give a run directory written by `olmo train` (with metrics.jsonl)"
        )
    raw, bad = _jsonl(metrics)
    by_step = {r["step"]: r for r in raw if isinstance(r.get("step"), int)}
    if not by_step:
        raise OlmoError(f"{metrics}: no complete step records yet; wait for the first log interval")
    attempts, _ = _jsonl(run_dir / "attempts.jsonl")
    config: dict[str, Any] = {}
    if (run_dir / "config.yaml").is_file():
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    return RunData(
        run_dir=run_dir,
        records=[by_step[s] for s in sorted(by_step)],
        attempts=attempts,
        config=config,
        env=_json(run_dir / "env.json") or {},
        energy=_json(run_dir / "energy.json"),
        skipped_lines=bad,
    )
