"""The hang watchdog's supervisor process, with real processes and real signals.

The fast tests supervise a stand-in trainer (plain Python, no torch: it beats like the trainer,
then holds the GIL, exits, or waits for a signal); the slow one supervises the real trainer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from olmo.logbook import read_events
from olmo.train.watchdog import CHANNEL_ENV, child_channel, watchdog_timeout
from tests.distributed.launch import _env, read_records, train_args, wait_for_step

# The stand-in trainer: argv = MODE RUN_DIR TIMEOUT [CODE]. It beats steps 1-3 like fit() does.
CHILD = """
import os, signal, sys, time
from pathlib import Path
from olmo.train.watchdog import Watchdog
mode, run, timeout = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
if mode == "stop":  # the trainer's stop flag: at the next step boundary, checkpoint and exit 75
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(75))
wd = Watchdog(timeout, run, rank=3, attempt=2, grace_s=0).start()
for step in (1, 2, 3):
    wd.beat(step)
(run / "child.pid").write_text(str(os.getpid()))

def hold_the_gil():
    sum(range(10**18))

if mode == "hold_gil":
    hold_the_gil()
if mode == "exit":  # the end of fit(): disarmed, then a long wait must not count as a hang
    wd.stop()
    time.sleep(2 * timeout)
    sys.exit(int(sys.argv[4]))
if mode == "abort":
    os.abort()
time.sleep(120)
"""
SUPERVISOR = (
    "import sys; from olmo.train.watchdog import supervise; "
    "sys.exit(supervise([sys.executable, '-c', sys.argv[1], *sys.argv[2:]]))"
)


def supervised(run: Path, mode: str, timeout: float = 1.0, code: int = 0) -> subprocess.Popen:
    run.mkdir(parents=True, exist_ok=True)
    args = [mode, str(run), str(timeout), str(code)]
    cmd = [sys.executable, "-c", SUPERVISOR, CHILD, *args]
    return subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=_env(None))


def finish(proc: subprocess.Popen, timeout: float = 30) -> str:
    """Wait for the supervisor (killed after `timeout`: its child dies with it); its stderr."""
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[1]


def child_pid(run: Path, timeout: float = 30) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        text = (run / "child.pid").read_text() if (run / "child.pid").is_file() else ""
        if text:
            return int(text)
        time.sleep(0.05)
    raise AssertionError("the supervised child never started")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return status != "Z"  # a zombie has died (its parent has not reaped it yet)


def test_gil_holding_child_leaves_its_stacks_and_exits_86(tmp_path: Path):
    """The child holds the GIL after step 3: its stacks (the holding function named), a logbook
    crash event and exit 86 come from the supervisor, within the timeout plus a few seconds."""
    run = tmp_path / "run"
    proc = supervised(run, "hold_gil", timeout=1.0)
    child_pid(run)
    start = time.monotonic()
    err = finish(proc)
    assert proc.returncode == 86, err
    assert time.monotonic() - start < 8
    text = (run / "stacks" / "rank3.txt").read_text()
    assert text.startswith("watchdog: no step completed in ") and "after step 3" in text
    assert "in hold_the_gil" in text and "(most recent call first)" in text
    (event,) = read_events(run)
    assert (event["event"], event["step"], event["rank"], event["attempt"]) == ("crash", 3, 3, 2)
    assert event["detail"]["type"] == "hang" and event["detail"]["stacks"] == "stacks/rank3.txt"
    assert "olmo watchdog: rank 3: no step completed" in err


@pytest.mark.parametrize(("mode", "code"), [("exit", 0), ("exit", 3), ("abort", -6)])
def test_exit_code_and_death_by_signal_pass_through(tmp_path: Path, mode: str, code: int):
    """The supervisor ends as its child did: the same code, or killed by the same signal (so
    srun and torchrun report the same death); a disarmed watchdog never fires."""
    proc = supervised(tmp_path / "run", mode, timeout=0.3, code=code)
    err = finish(proc)
    assert proc.returncode == code, err
    assert not (tmp_path / "run" / "stacks").exists()


def test_sigterm_reaches_the_child(tmp_path: Path):
    """SLURM/torchrun signal the pid they started (the supervisor): the child gets the SIGTERM,
    checkpoints and exits 75, and so does the supervisor."""
    run = tmp_path / "run"
    proc = supervised(run, "stop", timeout=60)
    child_pid(run)
    proc.send_signal(signal.SIGTERM)
    err = finish(proc)
    assert proc.returncode == 75, err


def test_sigkilled_supervisor_leaves_no_orphan(tmp_path: Path):
    run = tmp_path / "run"
    proc = supervised(run, "sleep", timeout=60)
    pid = child_pid(run)
    proc.kill()
    proc.wait()
    end = time.monotonic() + 5
    try:
        while alive(pid) and time.monotonic() < end:
            time.sleep(0.05)
        assert not alive(pid), "the trainer outlived its SIGKILLed supervisor"
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_watchdog_timeout_is_read_without_the_schema(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  watchdog_timeout_s: 30\n")
    assert watchdog_timeout(str(cfg), []) == 30
    assert watchdog_timeout(str(cfg), ["--train.watchdog_timeout_s=0"]) == 0
    assert watchdog_timeout("configs/tiny.yaml", ["--train.watchdog_timeout_s", "5"]) == 5
    assert watchdog_timeout(str(tmp_path / "missing.yaml"), []) == 0  # the trainer reports it
    assert watchdog_timeout(str(cfg), ["--train.watchdog_timeout_s=soon"]) == 0


def test_only_the_supervisors_own_child_uses_the_channel(monkeypatch: pytest.MonkeyPatch):
    """A grandchild inherits the variable but not the pipes: it must not write to those fds."""
    monkeypatch.setenv(CHANNEL_ENV, f"{os.getpid()}:1000001:1000002")  # we are not our parent
    assert child_channel() is None


@pytest.mark.slow
def test_real_trainer_stops_then_hangs_holding_the_gil(tmp_path: Path):
    """One run dir, two supervised starts of the real trainer: SIGTERM to the supervisor →
    checkpoint and exit 75; resumed, a GIL-holding hang after step 6 → stacks naming the
    holding frame, a logbook crash event, exit 86."""
    run = tmp_path / "r"
    args = train_args(run, "--train.max_steps=20", "--train.watchdog_timeout_s=3")

    def start(env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, *args], stderr=subprocess.PIPE, text=True, env=_env(env)
        )

    proc = start()
    wait_for_step(run, 2, [proc])
    proc.send_signal(signal.SIGTERM)
    err = finish(proc, 90)
    assert proc.returncode == 75, err[-3000:]
    stopped = read_records(run)[-1]["step"]
    assert (run / "checkpoints" / f"step{stopped}" / "COMMITTED.json").is_file()
    assert stopped < 6, "the SIGTERM came too late for this test"

    proc = start({"OLMO_FAULT_INJECT": "hang_gil@step=6"})
    err = finish(proc, 90)
    assert proc.returncode == 86, err[-3000:]
    stacks = (run / "stacks" / "rank0.txt").read_text()
    assert "after step 6" in stacks and "in _hold_gil" in stacks and "in fit" in stacks
    crash = [e for e in read_events(run) if e["event"] == "crash"]
    assert [(c["step"], c["rank"], c["detail"]["type"]) for c in crash] == [(6, 0, "hang")]
