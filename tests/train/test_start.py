"""A refused start of `olmo train` (bad data, tokenizer or model) leaves the run dir untouched."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.helpers import SMALL, olmo

FEW_STEPS = [*SMALL, "--train.max_steps=4", "--checkpoint.interval=2", "--train.eval_interval=2"]


def snapshot(run: Path) -> dict[str, str]:
    """Every entry under `run` (hidden files and links too) → sha256 of its bytes or link target."""
    out: dict[str, str] = {}
    for root, dirs, files in os.walk(run):
        for name in dirs + files:
            p = Path(root) / name
            rel = str(p.relative_to(run))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
    return out


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("start") / "r"
    olmo("train", "configs/tiny.yaml", "--run-dir", str(run), *FEW_STEPS)
    return run


def _bad_inputs(tmp: Path) -> dict[str, tuple[str, str]]:
    """Case → (override, message fragment): each one is refused only after the config loads."""
    (tmp / "not-prepared").mkdir(exist_ok=True)
    (tmp / "bad-tokenizer.json").write_text('{"not": "a tokenizer"')
    return {
        "missing-data": ("--data.paths=[/nonexistent/tokens]", "not a prepared token directory"),
        "unprepared-data": (f"--data.paths=[{tmp / 'not-prepared'}]", "has no metadata.json"),
        "missing-tokenizer": ("--data.tokenizer=/nonexistent/tok.json", "cannot read tokenizer"),
        "bad-tokenizer": (
            f"--data.tokenizer={tmp / 'bad-tokenizer.json'}",
            "not a valid tokenizers JSON",
        ),
        "model-vs-tokenizer": ("--model.vocab_size=100", "model.vocab_size (100) < tokenizer"),
        "model-n-heads": ("--model.n_heads=0", "model.n_heads must be positive"),
    }


CASES = [
    "missing-data",
    "unprepared-data",
    "missing-tokenizer",
    "bad-tokenizer",
    "model-vs-tokenizer",
    "model-n-heads",
]


def _refused(run: Path, tmp: Path, case: str) -> str:
    override, fragment = _bad_inputs(tmp)[case]
    proc = olmo(
        "train", "configs/tiny.yaml", "--run-dir", str(run), *FEW_STEPS, override, check=False
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    return lines[0]


@pytest.mark.parametrize("case", CASES)
def test_refused_start_leaves_existing_run_dir_byte_identical(good_run: Path, tmp_path, case):
    """Nothing changes but the logbook, which gains one start_refused line with the error."""
    book = good_run / "logbook.jsonl"
    before = snapshot(good_run)
    attempts, lines = (good_run / "attempts.jsonl").read_bytes(), book.read_bytes().splitlines()
    message = _refused(good_run, tmp_path, case)
    after = snapshot(good_run)
    assert {k: v for k, v in after.items() if k != book.name} == {
        k: v for k, v in before.items() if k != book.name
    }
    new = book.read_bytes().splitlines()
    assert new[: len(lines)] == lines and len(new) == len(lines) + 1
    refusal = json.loads(new[-1])
    assert refusal["event"] == "start_refused" and refusal["attempt"] is None
    assert refusal["detail"]["message"] in message
    assert (good_run / "attempts.jsonl").read_bytes() == attempts
    assert len(attempts.splitlines()) == 1  # the good run's start only


def test_refused_start_creates_no_run_dir(tmp_path):
    fresh = tmp_path / "fresh"
    _refused(fresh, tmp_path, "missing-data")
    assert not fresh.exists()
    (tmp_path / "empty").mkdir()
    _refused(tmp_path / "empty", tmp_path, "model-vs-tokenizer")
    assert list((tmp_path / "empty").iterdir()) == []


def test_run_dir_that_is_a_file_is_one_line_error(tmp_path):
    (tmp_path / "file").write_text("x")
    run = str(tmp_path / "file")
    proc = olmo("train", "configs/tiny.yaml", "--run-dir", run, *FEW_STEPS, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "file: cannot read attempts.jsonl" in proc.stderr
    assert (tmp_path / "file").read_text() == "x"
