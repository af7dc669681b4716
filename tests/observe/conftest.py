"""A real short `olmo train` run that is requeued twice, shared by the wandb and report tests.

Attempt 1 gets SIGUSR1 mid-run (checkpoint, exit 75), attempt 2 is SIGKILLed after step 15
(checkpoint at 10: steps 11-15 are superseded), attempt 3 runs the same command to step 20.
wandb runs offline with a fake API key in the environment, its files inside the run dir.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import SMALL

SECRET = "fake-wandb-key-0123456789abcdef0123456789abcdef"
HF_SECRET = "hf_fakeTokenValue0123456789"


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_API_KEY=SECRET,
        HF_TOKEN=HF_SECRET,
        WANDB_CONFIG_DIR=str(tmp / "wandb-config"),
        WANDB_CACHE_DIR=str(tmp / "wandb-cache"),
        WANDB_DATA_DIR=str(tmp / "wandb-data"),
    )
    env.pop("OLMO_FAULT_INJECT", None)
    env.update(extra)
    return env


def _last_step(metrics: Path) -> int:
    if not metrics.is_file():
        return 0
    steps = [json.loads(x)["step"] for x in metrics.read_text().splitlines() if x.endswith("}")]
    return max(steps, default=0)


def train_cmd(run: Path) -> list[str]:
    return [sys.executable, "-m", "olmo", "train", "configs/tiny.yaml", "--run-dir", str(run),
            *SMALL, "--train.log_interval=1", "--train.max_steps=20", "--wandb.mode=offline",
            "--train.progress=lines"]  # fmt: skip


def _sigusr1_attempt(run: Path, env: dict[str, str]) -> int:
    """Start training, send SIGUSR1 once step 3 is logged; returns the exit code (75 expected)."""
    proc = subprocess.Popen(train_cmd(run), env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while _last_step(run / "metrics.jsonl") < 3 and proc.poll() is None:
        assert time.time() < deadline, "attempt 1 never reached step 3"
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 75, err[-3000:]
    return proc.returncode


@pytest.fixture(scope="session")
def requeued_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("requeued")
    run = tmp / "run"
    _sigusr1_attempt(run, _env(tmp))
    second = subprocess.run(train_cmd(run), env=_env(tmp, OLMO_FAULT_INJECT="kill@step=15"),
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert second.returncode == -signal.SIGKILL, second.stderr[-3000:]
    third = subprocess.run(train_cmd(run), env=_env(tmp), capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert third.returncode == 0, third.stderr[-3000:]
    return run
