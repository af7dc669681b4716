"""README's benchmark table is bench/table.py's output over bench/results (regenerate: --write)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import table  # noqa: E402


def test_readme_table_is_generated_from_results():
    readme = (REPO / "README.md").read_text()
    assert table.readme_with_table(readme) == readme, "run: python bench/table.py --write"


def test_newest_record_of_a_row_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(table, "RESULTS", tmp_path)
    base = {"bench": "energy_overhead", "backend": "nvml", "devices": 4, "interval_ms": 100}
    lines = [
        base | {"overhead_pct": 0.9, "goal_pct": 0.5},
        base | {"overhead_pct": 0.3, "goal_pct": 0.5},
    ]
    (tmp_path / "energy_overhead.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (row,) = table.rows()
    assert row[1].startswith("0.30% of step time (estimate") and row[2] == "< 0.5%"
