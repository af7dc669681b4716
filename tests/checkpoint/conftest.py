"""Real runs shared by the checkpoint tests: tiny model, 20 steps, checkpoints every 5 steps."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import SMALL, olmo

# SMALL, without held-out eval or wandb (neither matters here), saving every 5 steps.
ARGS = [
    *SMALL,
    "--train.eval_holdout_instances=0",
    "--wandb.mode=disabled",
    "--checkpoint.interval=5",
    "--checkpoint.keep_last=3",
]


def train(run: Path, *overrides: str, check: bool = True):
    return olmo("train", "configs/tiny.yaml", "--run-dir", str(run), *ARGS, *overrides, check=check)


@pytest.fixture(scope="session")
def base_run(tmp_path_factory) -> Path:
    """20 steps, synchronous saves at 5, 10, 15, 20 (keep_last=3 deletes step5). Read-only."""
    run = tmp_path_factory.mktemp("ckpt") / "base"
    train(run, "--train.max_steps=20")
    return run


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


class Payload:
    """Pickles as `eval(source)`: what a crafted checkpoint file would run when unpickled."""

    def __init__(self, source: str):
        self.source = source

    def __reduce__(self):
        return (eval, (self.source,))


def touch_then(marker: Path, then: str = "None") -> str:
    """Source that touches `marker` (proof that code ran) and evaluates to `then`."""
    return f"(__import__('pathlib').Path({str(marker)!r}).touch(), {then})[1]"


def refresh_checksums(ckpt: Path, name: str) -> None:
    """Record `name`'s new crc32 and size, as whoever ships a crafted checkpoint would."""
    import json

    from olmo.checkpoint.layout import MARKER, file_checksums

    marker = json.loads((ckpt / MARKER).read_text())
    marker["files"].update(file_checksums(ckpt, [name]))
    (ckpt / MARKER).write_text(json.dumps(marker))
