"""Fault handling that runs beside the loop: signal flags, SLURM walltime, a hang watchdog.

Handlers only set flags; the trainer acts on them at a step boundary after all ranks agree.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

REQUEUE_EXIT_CODE = 75
"""Exit code meaning "checkpointed, requeue me" (EX_TEMPFAIL); launchers requeue on it."""
WATCHDOG_EXIT_CODE = 86
"""Exit code after the watchdog found a hang and dumped stacks."""
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class StopFlag:
    """Set by SIGTERM/SIGUSR1/SIGUSR2 (preemption, walltime warning, submitit's interrupt)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        self.signum = signum

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    @property
    def is_set(self) -> bool:
        return self.signum is not None


def slurm_end_time() -> float | None:
    """Unix time at which SLURM will kill this job, or None (not under SLURM / unlimited)."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    try:
        out = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%e"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""
    if not text or text in ("N/A", "NONE", "UNLIMITED"):
        return None
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


class Watchdog:
    """If `beat()` is not called within `timeout_s`, dump every thread's stack and exit."""

    def __init__(self, timeout_s: float, dump_path: Path):
        self.timeout_s, self.dump_path = timeout_s, dump_path
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="olmo-watchdog", daemon=True)

    def start(self) -> Watchdog:
        if self.timeout_s > 0:
            self._thread.start()
        return self

    def beat(self) -> None:
        self._last = time.monotonic()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(min(1.0, self.timeout_s / 4)):
            idle = time.monotonic() - self._last
            if idle > self.timeout_s:
                self.dump_path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.dump_path, "w") as f:
                    f.write(
                        f"watchdog: no step completed in {idle:.0f}s (timeout {self.timeout_s}s)\n"
                    )
                    faulthandler.dump_traceback(file=f, all_threads=True)
                log.error("watchdog: no step in %.0fs; stacks in %s; exiting", idle, self.dump_path)
                os._exit(WATCHDOG_EXIT_CODE)
