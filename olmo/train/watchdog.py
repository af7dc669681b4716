"""The hang watchdog as a supervisor process, so that it works while the trainer holds the GIL.

With `train.watchdog_timeout_s > 0` the rank's entry process (`olmo train`, or `olmo launch`'s
task) does not train: it starts the trainer as its child (same argv, env and stdout/stderr) and
watches the heartbeat the child writes to an inherited pipe after every step. A thread in the
trainer could not do this: a C loop that holds the GIL (a stuck extension, `sum(range(10**12))`)
stops every Python thread of the process, the watchdog's too. On a missed heartbeat the
supervisor has the child's `faulthandler` (a C-level signal handler, no GIL needed) write every
thread's stack to a second pipe, saves it to RUN_DIR/stacks/rankR.txt, writes a `crash` event to
the logbook, lingers for peers, SIGKILLs the child and exits 86. Otherwise it exits as its child
did (a child killed by signal S kills the supervisor with S). SIGTERM/SIGUSR1/SIGUSR2/SIGINT sent
to the supervisor (SLURM, torchrun and submitit signal the pid they know) reach the child, and the
child dies with its supervisor (PR_SET_PDEATHSIG).

A leaf module (standard library, the logbook and the exit codes): the supervisor never imports
torch, so it costs a bare interpreter per rank.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import functools
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olmo.logbook import append_event
from olmo.slurm import WATCHDOG_EXIT_CODE

log = logging.getLogger(__name__)

CHANNEL_ENV = "OLMO_WATCHDOG_CHANNEL"
"""Set by the supervisor for its child: `SUPERVISOR_PID:BEAT_FD:DUMP_FD` (inherited pipes)."""
DUMP_SIGNAL = signal.SIGURG
"""Asks the child's faulthandler for its stacks; ignored by default, so a stray one is harmless."""
FORWARDED = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)
DUMP_WAIT_S = 5.0
"""At most this long for the child's stack dump (it is written at C level, in milliseconds)."""
DUMP_QUIET_S = 0.3
"""The dump is complete once the pipe has been quiet this long."""
POLL_S = 0.2
"""How often the supervisor looks for its child's exit where the kernel has no pidfd."""
_PR_SET_PDEATHSIG = 1


# ---- the trainer's side --------------------------------------------------------------------
class Watchdog:
    """The trainer's end of the watchdog: arms its supervisor with the timeout and reports
    every completed step. A no-op when disabled; without a supervisor (a trainer started other
    than by `olmo train` / `olmo launch`) it warns that hangs go undetected."""

    def __init__(self, timeout_s: float, run_dir: Path, rank: int, attempt: int, grace_s: float):
        self.timeout_s, self.run_dir, self.rank = timeout_s, run_dir, rank
        self.attempt, self.grace_s = attempt, grace_s
        self._beat_fd: int | None = None

    def start(self) -> Watchdog:
        if self.timeout_s <= 0:
            return self
        channel = child_channel()
        if channel is None:
            log.warning(
                "train.watchdog_timeout_s=%s but no watchdog supervisor runs this trainer "
                "(start it with `olmo train` or `olmo launch`): hangs go undetected",
                self.timeout_s,
            )
            return self
        self._beat_fd, dump_fd = channel
        # The dump runs in the signal handler at C level: it needs no GIL and no Python code.
        faulthandler.register(DUMP_SIGNAL, file=dump_fd, all_threads=True, chain=False)
        self._send(
            {
                "timeout_s": self.timeout_s,
                "grace_s": self.grace_s,
                "rank": self.rank,
                "attempt": self.attempt,
                "run_dir": str(Path(self.run_dir).resolve()),
            }
        )
        return self

    def beat(self, step: int) -> None:
        self._send({"step": step})

    def stop(self) -> None:
        if self._beat_fd is not None:
            self._send({"disarm": True})
            faulthandler.unregister(DUMP_SIGNAL)
            self._beat_fd = None

    def _send(self, msg: dict[str, Any]) -> None:
        if self._beat_fd is None:
            return
        # Non-blocking: a stalled supervisor must never stall training (a dead one kills us).
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self._beat_fd, (json.dumps(msg) + "\n").encode())


def child_channel() -> tuple[int, int] | None:
    """(beat fd, dump fd) when this process is the child of a watchdog supervisor. The pid check
    keeps a grandchild that inherited the variable from writing to unrelated descriptors."""
    parts = os.environ.get(CHANNEL_ENV, "").split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts) or int(parts[0]) != os.getppid():
        return None
    beat_fd, dump_fd = int(parts[1]), int(parts[2])
    for fd in (beat_fd, dump_fd):
        os.set_inheritable(fd, False)  # not into processes the trainer starts
    os.set_blocking(beat_fd, False)
    return beat_fd, dump_fd


# ---- the entry: supervise or not -------------------------------------------------------------
def watchdog_timeout(config: str | None, overrides: list[str]) -> float:
    """`train.watchdog_timeout_s` from the YAML and overrides, read without torch or validation
    (a bad value is the trainer's one-line error to report): 0 when unset or unreadable."""
    from olmo.config.loader import deep_merge, parse_overrides, read_yaml

    try:
        data = read_yaml(config) if config else {}
        data = deep_merge(data, parse_overrides(overrides))
        value = float((data.get("train") or {}).get("watchdog_timeout_s") or 0)
    except Exception:  # noqa: BLE001  (the child, or the unsupervised path, reports it)
        return 0.0
    return value if value > 0 else 0.0


def supervise_train(argv: list[str]) -> int | None:
    """Run `olmo train ARGV...` under a supervisor when its config enables the watchdog and this
    process is not already the supervised child; returns the exit code, or None: train here."""
    import argparse

    if child_channel() is not None or "--help-config" in argv or {"-h", "--help"} & set(argv):
        return None
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("command")
    p.add_argument("config", nargs="?")
    p.add_argument("--run-dir")
    try:
        args, overrides = p.parse_known_args(argv)
    except SystemExit:  # a usage error: the real parser reports it
        return None
    if args.command != "train" or watchdog_timeout(args.config, overrides) <= 0:
        return None
    return supervise([sys.executable, "-m", "olmo", *argv])


def supervise(cmd: list[str], env: dict[str, str] | None = None) -> int:
    """Run `cmd` as the supervised child; returns its exit code or WATCHDOG_EXIT_CODE."""
    return Supervisor(cmd, dict(os.environ if env is None else env)).run()


# ---- the supervisor ----------------------------------------------------------------------------
@dataclass
class Armed:
    """What the child said at the start of its loop (the first message on the beat pipe)."""

    timeout_s: float
    """No step within this long is a hang."""
    grace_s: float
    """Linger this long after the dump so peers stuck at the same point dump too."""
    rank: int
    """The child's global rank (names the stacks file)."""
    attempt: int
    """The run's attempt number (for the logbook event)."""
    run_dir: str
    """Where stacks/ and logbook.jsonl go."""


class Supervisor:
    def __init__(self, cmd: list[str], env: dict[str, str]):
        self.cmd, self.env = cmd, env
        self.child: subprocess.Popen | None = None
        self.pending: list[int] = []
        self.armed: Armed | None = None
        self.last_beat = time.monotonic()
        self.last_step: int | None = None
        self._buf = b""

    def run(self) -> int:
        previous = {s: signal.signal(s, self._forward) for s in FORWARDED}
        beat_r, beat_w = os.pipe()
        dump_r, dump_w = os.pipe()
        env = {**self.env, CHANNEL_ENV: f"{os.getpid()}:{beat_w}:{dump_w}"}
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded here, not in the forked child
        try:
            self.child = subprocess.Popen(
                self.cmd,
                env=env,
                pass_fds=(beat_w, dump_w),
                preexec_fn=functools.partial(_die_with_parent, prctl, os.getpid()),
            )
            os.close(beat_w)
            os.close(dump_w)
            for sig in self.pending:  # arrived before the child existed
                self.child.send_signal(sig)
            code = self._watch(beat_r, dump_r)
        finally:
            for fd in (beat_r, dump_r):
                os.close(fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if code < 0:  # die the way the child died, so launchers see the same death
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
            return 128 - code
        return code

    def _forward(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGINT and _terminal_signals_child():
            return  # Ctrl-C already reached the child: a second one would break its clean-up
        if self.child is None:
            self.pending.append(signum)
        elif self.child.poll() is None:
            self.child.send_signal(signum)

    def _watch(self, beat_r: int, dump_r: int) -> int:
        """Until the child exits (its code) or misses its heartbeat (WATCHDOG_EXIT_CODE)."""
        assert self.child is not None
        exited = _pidfd(self.child.pid)  # readable when the child exits
        watched = [beat_r, dump_r] + ([] if exited is None else [exited])
        poll_s = 1.0 if exited is not None else POLL_S
        try:
            while self.child.poll() is None:
                wait = poll_s
                if self.armed is not None:
                    idle = time.monotonic() - self.last_beat
                    wait = min(wait, self.armed.timeout_s - idle)
                    if wait <= 0:
                        return self._fire(dump_r)
                ready, _, _ = select.select(watched, [], [], max(wait, 0.0))
                if beat_r in ready and not self._read_beats(beat_r):
                    watched.remove(beat_r)  # closed (an exec'd child that dropped it)
                if dump_r in ready and not os.read(dump_r, 65536):  # stray dumps: dropped
                    watched.remove(dump_r)
            return self.child.returncode
        finally:
            if exited is not None:
                os.close(exited)

    def _read_beats(self, fd: int) -> bool:
        """Take in the child's messages; False at end of file."""
        data = os.read(fd, 65536)
        lines = (self._buf + data).split(b"\n")
        self._buf = lines.pop()
        for line in lines:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "timeout_s" in msg:
                self.armed = Armed(**msg)
            elif "step" in msg:
                self.last_step = msg["step"]
            elif msg.get("disarm"):
                self.armed = None
            self.last_beat = time.monotonic()
        return bool(data)

    def _fire(self, dump_r: int) -> int:
        """Save the child's stacks, log the hang, linger for peers, kill the child: exit 86."""
        assert self.child is not None and self.armed is not None
        a = self.armed
        idle = time.monotonic() - self.last_beat
        after = "the loop started" if self.last_step is None else f"step {self.last_step}"
        message = f"no step completed in {idle:.1f}s after {after} (timeout {a.timeout_s}s)"
        rel = f"stacks/rank{a.rank}.txt"
        path = Path(a.run_dir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        self.child.send_signal(DUMP_SIGNAL)
        stacks = _read_dump(dump_r)
        with open(path, "wb") as f:
            f.write(f"watchdog: {message}\n".encode() + stacks)
            f.flush()
            os.fsync(f.fileno())
        detail = {"type": "hang", "message": message, "stacks": rel}
        append_event(
            a.run_dir, "crash", attempt=a.attempt, step=self.last_step, rank=a.rank, detail=detail
        )
        print(
            f"olmo watchdog: rank {a.rank}: {message}; stacks in {path}; "
            f"exiting with {WATCHDOG_EXIT_CODE}",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(a.grace_s)
        self.child.kill()
        self.child.wait()
        return WATCHDOG_EXIT_CODE


def _terminal_signals_child() -> bool:
    """True when we run in the terminal's foreground process group (the child shares it), so
    the terminal's SIGINT went to the child as well."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError):  # no terminal (batch jobs, launchers): forward it
        return False


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when `pid` exits (Linux >= 5.3), else None: poll."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # older kernels (e.g. EL7's 3.10): ENOSYS
        return None


def _read_dump(fd: int) -> bytes:
    """What the child's faulthandler writes: until the pipe is quiet or DUMP_WAIT_S passed."""
    out = b""
    end = time.monotonic() + DUMP_WAIT_S
    while (left := end - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], min(left, DUMP_QUIET_S if out else left))
        if not ready:
            if out:
                break
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        out += chunk
    return out or b"(no stack dump arrived from the trainer)\n"


def _die_with_parent(prctl: Any, supervisor: int) -> None:
    """In the child before exec: SIGKILL when the supervisor dies, so a SIGKILLed supervisor
    (scancel --signal=KILL, the OOM killer, torchrun's last resort) leaves no orphan training."""
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != supervisor:  # the supervisor died before prctl took effect
        os._exit(1)
