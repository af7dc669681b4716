"""bench/gpu_all.sh --cpu: the cheapest parts end to end on the CPU, their records written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _gpu_all(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PY=sys.executable, OUT=str(tmp_path / "out"), **env)
    env |= {"OLMO_GPU_ALL_RESULTS": str(tmp_path / "res"), "OLMO_GPU_ALL_WORK": str(tmp_path / "w")}
    return subprocess.run(
        ["bash", "bench/gpu_all.sh", "--cpu", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_cpu_fallback_of_the_cheap_parts_writes_their_records(tmp_path: Path):
    proc = _gpu_all(tmp_path, "step", "resume", "energy")
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    res = tmp_path / "res"
    parts = _records(res / "gpu_all.jsonl")
    assert [r["part"] for r in parts] == ["step", "resume", "energy"]
    for r in parts:
        assert r["status"] == "passed" and r["mode"] == "cpu-fallback", r
        assert r["device"].startswith("cpu") and r["git_commit"] and r["torch"], r
        assert isinstance(r["seconds"], int) and len(r["load_avg"]) == 3, r
        assert re.search(rf"^\s+{r['part']}\s+passed\s+\d+ s$", proc.stdout, re.M), proc.stdout
    assert "test_cuda_step_never_waits_for_the_host SKIPPED (no GPU)" in parts[0]["note"]
    (resume,) = _records(res / "gpu_resume.jsonl")
    assert resume["passed"] and resume["bitwise"] and resume["backend"] == "gloo"
    codes = resume["exit_codes"]
    assert codes["ref"] == 0 and codes["killed"] != 0 and codes["resumed"] == 0, codes
    assert resume["device"].startswith("cpu")
    (energy,) = _records(res / "energy_nvml_check.jsonl")
    assert energy["nvml"].startswith("fake") and energy["passed"], energy  # labelled, not silent
    # everything new came back through $OUT, as the device tool would bring it
    out = tmp_path / "out"
    assert (out / "results" / "gpu_all.jsonl").read_text() == (res / "gpu_all.jsonl").read_text()
    assert (out / "results" / "gpu_resume.jsonl").exists()
    assert "summary" in (out / "gpu_all-cpu.log").read_text()


def test_a_part_that_cannot_run_is_loud_and_fails_the_script(tmp_path: Path):
    proc = _gpu_all(tmp_path, "energy", "step", OLMO_GPU_ALL_BUDGET_S="1")
    assert proc.returncode == 1
    assert proc.stdout.count("!!!!!!!! part") == 2  # both reported, the second still tried
    parts = _records(tmp_path / "res" / "gpu_all.jsonl")
    assert [(r["part"], r["status"]) for r in parts] == [("energy", "SKIPPED"), ("step", "SKIPPED")]
    assert "OLMO_GPU_ALL_BUDGET_S" in parts[0]["note"]
