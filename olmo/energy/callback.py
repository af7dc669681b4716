"""The trainer callback: per-step joules/power in metrics, node files, energy.json at the end.

One process per node (local rank 0) owns the sampler and measures all of that node's devices.
Step s's energy is the node's tally at the end of step s minus at the end of step s-1
(interpolated between samples); the per-step values of all nodes are summed with one all-reduce
per logging interval (inside the trainer's flush), never per step.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from olmo.energy import store
from olmo.energy.choose import select_backend
from olmo.energy.config import EnergyConfig
from olmo.energy.sampler import Sampler
from olmo.energy.summary import write_energy_json
from olmo.train.callbacks import Callback

if TYPE_CHECKING:
    from olmo.distributed.env import DistEnv
    from olmo.train.trainer import Trainer

log = logging.getLogger("olmo.energy")


class EnergyMonitor(Callback):
    def __init__(
        self, cfg: EnergyConfig, run_dir: Path, env: DistEnv, attempt: int, backend=None
    ):  # backend: this node's, when the caller built it (benchmarks); else chosen per cfg
        self.cfg, self.run_dir, self.env, self.attempt = cfg, Path(run_dir), env, attempt
        self.node, self.sampler, self.backend = store.node_name(), None, None
        self.wall0 = time.time()
        if env.local_rank == 0:
            self.backend = backend or select_backend(cfg.backend, env.device.type)
            if self.backend.devices:
                self.sampler = Sampler(
                    self.backend, cfg.interval_ms / 1000, cfg.sanity_window_s, cfg.trace_interval_s
                ).start()
        self.ends: dict[int, float] = {}
        self.prev_end = time.monotonic()
        self.job: dict[str, Any] = {"steps": 0, "tokens": 0, "step_energy_j": 0.0}
        self.last_write = 0.0

    # ---- hooks ---------------------------------------------------------------------------
    def on_train_start(self, trainer: Trainer) -> None:
        self.prev_end = time.monotonic()
        self.job["first_step"] = trainer.state.step + 1
        self._write(trainer, "running")

    def post_step(self, trainer: Trainer, step: int) -> None:
        self.ends[step] = time.monotonic()

    def on_metrics(self, trainer: Trainer, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        now = time.monotonic()
        bounds = [self.prev_end] + [self.ends.pop(r["step"], now) for r in records]
        joules = self._job_joules(bounds)
        for rec, j, t0, t1 in zip(records, joules, bounds, bounds[1:]):  # noqa: B905
            if math.isfinite(j):
                rec["energy_j"] = j
                rec["power_w"] = j / max(t1 - t0, 1e-9)
        self.prev_end = bounds[-1]
        self.job["steps"] += len(records)
        # Each step's own batch: it may change (train.batch_size_schedule).
        self.job["tokens"] += sum(r["global_batch_size"] for r in records) * trainer.seq_len
        self.job["last_step"] = records[-1]["step"]
        if all(math.isfinite(j) for j in joules):
            self.job["step_energy_j"] += sum(joules)
        if time.monotonic() - self.last_write >= self.cfg.write_interval_s:
            self._write(trainer, "running")

    def on_checkpoint(self, trainer: Trainer, step: int) -> None:
        self._write(trainer, "running")

    def on_train_end(self, trainer: Trainer, status: str) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        self._write(trainer, status)
        if self.env.world_size > 1:
            dist.barrier()  # every node's final file is on disk before rank 0 sums them
        if self.env.is_main:
            data = write_energy_json(self.run_dir)
            t = data["totals"]
            if data["measured"]:
                log.info(
                    "energy: %.4f kWh (×PUE %.2f = %.4f), %.3g J/token, %.3g kg CO2e → %s",
                    t["kwh"], data["pue"], t["facility_kwh"], t["j_per_token"] or float("nan"),
                    t["co2e_kg"], self.run_dir / "energy.json",
                )  # fmt: skip
            else:
                log.warning("energy: not measured (%s)", data["unavailable"])

    # ---- internals -----------------------------------------------------------------------
    def _job_joules(self, bounds: list[float]) -> list[float]:
        """Per-step joules summed over all nodes: one all-reduce; NaN if a node can't measure."""
        if self.sampler is not None:
            self.sampler.sample()  # a reading after the last boundary, to interpolate to it
            e = self.sampler.energy_at(bounds)
            local = [b - a for a, b in zip(e, e[1:])]  # noqa: B905
        elif self.backend is not None:  # node leader without a sensor
            local = [float("nan")] * (len(bounds) - 1)
        else:
            local = [0.0] * (len(bounds) - 1)
        if self.env.world_size == 1:
            return local
        t = torch.tensor(local, dtype=torch.float64, device=self.env.device)
        dist.all_reduce(t)
        return t.tolist()

    def _write(self, trainer: Trainer, status: str) -> None:
        self.last_write = time.monotonic()
        if self.backend is not None:
            node = {"node": self.node, "attempt": self.attempt, "backend": self.backend.name,
                    "start_time": self.wall0, "end_time": time.time(),
                    "interval_ms": self.cfg.interval_ms}  # fmt: skip
            if self.sampler is not None:
                node.update(self.sampler.summary())
                store.append_trace(self.run_dir, self.attempt, self.node, self.sampler.take_trace())
                node["devices_order"] = [d.name for d in self.backend.devices]
            else:
                node.update(reasons=getattr(self.backend, "reasons", {}), energy_j=None,
                            duration_s=time.time() - self.wall0, devices={})  # fmt: skip
            store.write_node(self.run_dir, self.attempt, self.node, node)
        if self.env.is_main:
            store.write_job(self.run_dir, self.attempt, {
                **self.job, "attempt": self.attempt, "status": status,
                "start_time": self.wall0, "end_time": time.time(),
                "world_size": self.env.world_size,
                "nodes": max(1, self.env.world_size // max(1, self.env.local_world_size)),
                "settings": {"pue": self.cfg.pue, "interval_ms": self.cfg.interval_ms,
                             "carbon_intensity_g_per_kwh": self.cfg.carbon_intensity_g_per_kwh,
                             "backend": self.cfg.backend},
            })  # fmt: skip
