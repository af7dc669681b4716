"""Checkpoints from someone else: a crafted `.metadata` or `rng-rank0.pt` whose checksums in
COMMITTED.json were updated (so `verify` cannot tell) runs no code in any command that reads a
checkpoint; each command fails with one line naming the file, and resume falls back."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from olmo.checkpoint.layout import MARKER
from tests.checkpoint.conftest import Payload, copy_run, refresh_checksums, touch_then, train
from tests.checkpoint.test_cli import _cli, _one_line_error

pytestmark = pytest.mark.slow


def poison_metadata(ckpt: Path, marker: Path) -> None:
    import pickle

    path = ckpt / ".metadata"
    genuine = f"__import__('pickle').loads({path.read_bytes()!r})"
    path.write_bytes(pickle.dumps(Payload(touch_then(marker, genuine))))
    refresh_checksums(ckpt, ".metadata")


def poison_rng(ckpt: Path, marker: Path) -> None:
    import torch

    path = ckpt / "rng-rank0.pt"
    genuine = (
        "__import__('torch').load(__import__('io').BytesIO("
        f"{path.read_bytes()!r}), weights_only=True)"
    )
    torch.save(Payload(touch_then(marker, genuine)), path)
    refresh_checksums(ckpt, "rng-rank0.pt")


POISON = {"metadata": (poison_metadata, ".metadata"), "rng": (poison_rng, "rng-rank0.pt")}


@pytest.fixture(scope="module", params=sorted(POISON))
def poisoned(request, base_run: Path, tmp_path_factory) -> tuple[str, Path, Path]:
    """(attack, run, marker): base_run with its newest checkpoint (step20) poisoned."""
    run = copy_run(base_run, tmp_path_factory.mktemp(request.param) / "run")
    marker = run.parent / "code-ran"
    POISON[request.param][0](run / "checkpoints" / "step20", marker)
    return request.param, run, marker


# Commands that do not read the poisoned file at all may succeed (0); the others must refuse (2).
READS = {
    "info": {"metadata"},
    "consolidate": {"metadata", "rng"},  # verifies every file first
    "to-hf": {"metadata", "rng"},  # one export path with consolidate: verifies first
    "eval": {"metadata"},
}


def _command(name: str, run: Path, out: Path) -> list[str]:
    ckpt = str(run / "checkpoints" / "step20")
    return {
        "info": ["checkpoint", "info", str(run)],
        "consolidate": ["checkpoint", "consolidate", ckpt, str(out)],
        "to-hf": ["convert", "to-hf", ckpt, str(out)],
        "eval": ["eval", ckpt, "--tasks", "copa", "--limit", "2", "--max-len", "32"],
    }[name]


@pytest.mark.parametrize("name", sorted(READS))
def test_commands_run_no_code(poisoned, name: str, tmp_path: Path, capsys):
    attack, run, marker = poisoned
    out = tmp_path / "out"
    code, _, err = _cli(capsys, *_command(name, run, out))
    assert not marker.exists(), f"olmo {name} ran code from the poisoned {attack} file"
    if attack in READS[name]:
        _one_line_error((code, "", err), 2, POISON[attack][1])
        assert not out.exists()
    else:
        assert code == 0, err


def test_verify_names_the_crafted_file(poisoned, capsys):
    attack, run, marker = poisoned
    code, out, _ = _cli(capsys, "checkpoint", "verify", str(run))
    assert not marker.exists()
    step20 = run / "checkpoints" / "step20"
    assert code == 1 and f"BAD {step20}\n    {step20 / POISON[attack][1]}: " in out, out
    assert out.count("ok  ") == 2


def test_explicit_load_refuses(poisoned, tmp_path: Path):
    attack, run, marker = poisoned
    seed = run / "checkpoints" / "step20"
    proc = train(tmp_path / "seeded", f"--checkpoint.load={seed}", check=False)
    assert not marker.exists()
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert last.startswith("error: checkpoint.load: ") and POISON[attack][1] in last, last


def test_resume_sets_it_aside_and_falls_back(poisoned, tmp_path: Path):
    attack, run, marker = poisoned
    run = copy_run(run, tmp_path / "run")
    root = run / "checkpoints"
    proc = train(run, "--train.max_steps=20")
    assert not marker.exists()
    assert f"skipping checkpoint step20: {root / 'step20' / POISON[attack][1]}: " in proc.stderr
    assert f"resumed from {root / 'step15'} at step 15" in proc.stderr
    assert (root / ".step20.corrupt").is_dir() and os.readlink(root / "latest") == "step20"
    shutil.rmtree(root / ".step20.corrupt")


# ---- malformed (not crafted) files: a clean error everywhere, a fallback at resume -----------
def _edit_marker(change):
    def edit(ckpt: Path) -> None:
        marker = json.loads((ckpt / MARKER).read_text())
        (ckpt / MARKER).write_text(json.dumps(change(marker)))

    return edit


def _rewrite(name: str, content: object) -> Callable[[Path], None]:
    def edit(ckpt: Path) -> None:
        import torch

        if isinstance(content, bytes):
            (ckpt / name).write_bytes(content)
        else:
            torch.save(content, ckpt / name)
        refresh_checksums(ckpt, name)

    return edit


def _no_size(marker: dict) -> dict:
    del marker["files"]["__0_0.distcp"]["size"]
    return marker


def _short_rng():
    import torch

    return {"torch": torch.zeros(8, dtype=torch.uint8)}


ALL = {"info", "consolidate", "to-hf", "eval", "load"}
# variant: (break it, the file the message names, commands that must refuse; verify always does)
MALFORMED = {
    "marker-list": (_edit_marker(lambda m: [m]), MARKER, ALL),
    "marker-no-size": (_edit_marker(_no_size), MARKER, ALL),
    "marker-step-str": (_edit_marker(lambda m: {**m, "step": "20"}), MARKER, ALL),
    "rng-not-torch": (
        _rewrite("rng-rank0.pt", b"PK\x03\x04 not a zip"),
        "rng-rank0.pt",
        {"consolidate", "to-hf", "load"},
    ),
    "rng-short": (
        _rewrite("rng-rank0.pt", _short_rng()),
        "rng-rank0.pt",
        {"consolidate", "to-hf", "load"},
    ),
    "trainer-state-list": (
        _rewrite("trainer_state.json", b"[]"),
        "trainer_state.json",
        {"info", "consolidate", "to-hf", "load"},
    ),
}


def _explicit_load(ckpt: Path, tmp_path: Path) -> tuple[int, str]:
    """`checkpoint.load=CKPT` on a run dir without checkpoints (in-process: the same path
    `olmo train` takes before training; the subprocess path is test_explicit_load_refuses)."""
    from olmo.checkpoint.checkpointer import Checkpointer
    from olmo.checkpoint.config import CheckpointConfig
    from olmo.errors import OlmoError

    cp = Checkpointer(tmp_path / "new" / "checkpoints", CheckpointConfig(load=str(ckpt)), 0, 1, {})
    try:
        cp.find_resume_point()
    except OlmoError as e:
        return 2, f"error: {e}\n"
    return 0, ""


@pytest.mark.parametrize("variant", sorted(MALFORMED))
def test_malformed_files_are_clean_errors(variant: str, base_run: Path, tmp_path: Path, capsys):
    breaker, name, refusing = MALFORMED[variant]
    run = copy_run(base_run, tmp_path / "run")
    ckpt = run / "checkpoints" / "step20"
    breaker(ckpt)
    code, out, _ = _cli(capsys, "checkpoint", "verify", str(ckpt))
    assert code == 1 and f"BAD {ckpt}\n    {ckpt / name}: " in out, out
    for command in sorted(ALL):
        out_path = tmp_path / f"out-{command}"
        if command == "load":
            code, err = _explicit_load(ckpt, tmp_path)
        else:
            code, _, err = _cli(capsys, *_command(command, run, out_path))
        if command in refusing:
            _one_line_error((code, "", err), 2, str(ckpt / name))
            assert not out_path.exists()
        else:
            assert code == 0, (command, err)


def test_resume_falls_back_past_malformed_files(base_run: Path, tmp_path: Path):
    run = copy_run(base_run, tmp_path / "run")
    root = run / "checkpoints"
    MALFORMED["marker-list"][0](root / "step20")
    MALFORMED["rng-short"][0](root / "step15")
    proc = train(run, "--train.max_steps=20")
    assert f"skipping checkpoint step20: {root / 'step20' / MARKER}: corrupt marker" in proc.stderr
    assert f"skipping checkpoint step15: {root / 'step15' / 'rng-rank0.pt'}: not" in proc.stderr
    assert f"resumed from {root / 'step10'} at step 10" in proc.stderr
    assert (root / ".step20.corrupt").is_dir() and (root / ".step15.corrupt").is_dir()
    assert sorted(p.name for p in root.glob("step*")) == ["step10", "step15", "step20"]


# ---- what this code writes still loads: async saves on 1 and 2 ranks (sync: test_cli, ------
# ---- test_corrupt, test_two_ranks) --------------------------------------------------------
@pytest.mark.parametrize("ranks", [1, 2])
def test_async_checkpoints_load_and_resume(ranks: int, tmp_path: Path, capsys):
    from olmo.checkpoint.io import load_model
    from olmo.checkpoint.safe import checkpoint_problems
    from tests.distributed.launch import torchrun, train_args

    run = tmp_path / "r"
    first = torchrun(ranks, train_args(run, "--train.max_steps=5", "--checkpoint.async_save=true"))
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt = run / "checkpoints" / "step5"
    assert json.loads((ckpt / MARKER).read_text())["async"] is True
    assert checkpoint_problems(ckpt) == []
    code, out, err = _cli(capsys, "checkpoint", "info", str(run), "--json")
    assert code == 0 and json.loads(out)["world_size"] == ranks, err
    assert load_model(ckpt).num_params() > 0
    again = torchrun(ranks, train_args(run, "--train.max_steps=7", "--checkpoint.async_save=true"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from {ckpt} at step 5" in again.stderr
    assert "skipping" not in again.stderr and "resharding" not in again.stderr
