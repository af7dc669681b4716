"""The per-node sampler thread: reads every device at a fixed interval and keeps the tallies.

Every device's energy is tallied two ways from the first sample: its counter (when it has one)
and its power integrated over time (trapezoids). After `sanity_window_s` the counter is checked
against power × time (as Zeus does): a ratio outside (0.1, 10) means the counter is distrusted
and the integrated power is the device's energy from the start. Without a power reading the
counter is used as is (RAPL), without a counter the integrated power (pre-Volta NVML).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from olmo.energy.base import Backend, Reading

SANITY_LOW, SANITY_HIGH = 0.1, 10.0


@dataclass
class DeviceTally:
    counter_base: float | None = None
    counter_j: float | None = None
    power_j: float = 0.0
    power_seen: bool = False
    last_power: float | None = None
    last_energy: float | None = None
    peak_w: float = 0.0
    source: str = "pending"
    sanity: dict[str, Any] = field(default_factory=dict)

    def energy(self) -> float:
        if self.source in ("counter", "pending") and self.counter_j is not None:
            return self.counter_j
        return self.power_j

    def add(self, r: Reading, dt: float | None) -> float:
        """Fold one reading in; returns the device's power now (reading, else counter rate)."""
        before = self.energy()
        if r.energy_j is not None:
            if self.counter_base is None:
                self.counter_base = r.energy_j
            self.counter_j = r.energy_j - self.counter_base
        if r.power_w is not None:
            if self.last_power is not None and dt is not None:
                self.power_j += 0.5 * (r.power_w + self.last_power) * dt
            self.last_power, self.power_seen = r.power_w, True
        now_w = r.power_w
        if now_w is None and dt:
            now_w = (self.energy() - before) / dt
        self.peak_w = max(self.peak_w, now_w or 0.0)
        return now_w or 0.0

    def check(self, window_s: float) -> None:
        """Decide once which tally is this device's energy (see the module doc)."""
        if self.counter_j is None:
            self.source = "power" if self.power_seen else "none"
            self.sanity = {"result": "no energy counter"}
            return
        if not self.power_seen or self.power_j <= 0:
            self.source = "counter"
            self.sanity = {"result": "no power reading to check the counter against"}
            return
        ratio = self.counter_j / self.power_j
        ok = SANITY_LOW < ratio < SANITY_HIGH
        self.source = "counter" if ok else "power"
        self.sanity = {
            "result": "counter agrees with power × time" if ok else "counter distrusted",
            "ratio": ratio,
            "counter_j": self.counter_j,
            "power_x_time_j": self.power_j,
            "window_s": window_s,
        }


class Sampler:
    """Samples `backend` every `interval_s` on a daemon thread; all methods are thread-safe."""

    def __init__(
        self, backend: Backend, interval_s: float, sanity_window_s: float, trace_interval_s: float
    ):
        self.backend, self.interval_s = backend, interval_s
        self.sanity_window_s, self.trace_interval_s = sanity_window_s, trace_interval_s
        self.tallies = [DeviceTally() for _ in backend.devices]
        self.lock = threading.Lock()
        self.history: deque[tuple[float, float]] = deque()  # (monotonic t, node joules)
        self.trace: list[dict[str, Any]] = []
        self.samples = 0
        self.node_peak_w = 0.0
        self.t0 = self.t_last = None
        self.wall0 = time.time()
        self._checked = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="olmo-energy", daemon=True)

    def start(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> float:
        """Read all devices now; returns the node's cumulative joules."""
        with self.lock:  # the thread and the trainer's flush both sample: counters read in order
            readings = self.backend.read()
            return self._fold(time.monotonic(), readings)

    def _fold(self, now: float, readings: list[Reading]) -> float:
        dt = None if self.t_last is None else now - self.t_last
        if self.t0 is None:
            self.t0 = self._win_t = now
            self._win_e = [0.0] * len(self.tallies)
        node_w = sum(t.add(r, dt) for t, r in zip(self.tallies, readings, strict=True))
        self.node_peak_w = max(self.node_peak_w, node_w)
        if not self._checked and now - self.t0 >= self.sanity_window_s:
            for t in self.tallies:
                t.check(now - self.t0)
            self._checked = True
            if any(t.source == "power" and t.counter_j is not None for t in self.tallies):
                self.history.clear()  # the node's tally switched source: old points don't chain
        self.t_last, self.samples = now, self.samples + 1
        energy = sum(t.energy() for t in self.tallies)
        self.history.append((now, energy))
        self._trace(now)
        return energy

    def _trace(self, now: float) -> None:
        span = now - self._win_t
        if span < self.trace_interval_s:
            return
        e = [t.energy() for t in self.tallies]
        watts = [(a - b) / span for a, b in zip(e, self._win_e, strict=True)]
        self.trace.append({"time": self.wall0 + (self._win_t - self.t0), "s": span, "w": watts})
        self._win_t, self._win_e = now, e

    def energy_at(self, times: list[float]) -> list[float]:
        """Node joules at monotonic times (linear between samples); drops history before them."""
        with self.lock:
            hist = list(self.history)
            if times:
                while len(self.history) > 2 and self.history[1][0] <= min(times):
                    self.history.popleft()
        return [_interp(hist, t) for t in times]

    def take_trace(self) -> list[dict[str, Any]]:
        with self.lock:
            out, self.trace = self.trace, []
        return out

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5 * self.interval_s + 1)
        self.sample()
        if not self._checked:  # a run shorter than the sanity window: check what we have
            with self.lock:
                for t in self.tallies:
                    t.check(self.t_last - self.t0)
                self._checked = True
        self.backend.close()

    def summary(self) -> dict[str, Any]:
        """Node and per-device totals so far (what the node file in RUN_DIR/energy/ holds)."""
        with self.lock:
            dur = (self.t_last or 0.0) - (self.t0 or 0.0)
            devices = {}
            for d, t in zip(self.backend.devices, self.tallies, strict=True):
                e = t.energy()
                devices[d.name] = {
                    **d.info,
                    "energy_j": e,
                    "mean_power_w": e / dur if dur > 0 else None,
                    "peak_power_w": t.peak_w,
                    "source": t.source,
                    "sanity": t.sanity,
                }
            energy = sum(t.energy() for t in self.tallies)
        return {
            "energy_j": energy,
            "duration_s": dur,
            "mean_power_w": energy / dur if dur > 0 else None,
            "peak_power_w": self.node_peak_w,
            "samples": self.samples,
            "devices": devices,
        }


def _interp(hist: list[tuple[float, float]], t: float) -> float:
    if not hist:
        return 0.0
    i = bisect.bisect_left(hist, t, key=lambda p: p[0])
    if i == 0:
        return hist[0][1]
    if i == len(hist):
        return hist[-1][1]
    (t0, e0), (t1, e1) = hist[i - 1], hist[i]
    return e0 + (e1 - e0) * (t - t0) / (t1 - t0) if t1 > t0 else e1
