"""wandb logging from rank 0: one wandb run per run directory, resumed by every requeue.

The run id lives in RUN_DIR/wandb_id.txt, so each attempt (requeue, restart, rerun of the same
command) calls `wandb.init(id=..., resume="allow")` and continues the same wandb run. Offline
attempts each write their own `wandb/offline-run-*-ID/` directory; `wandb sync` uploads them in
order into that one run.

Every row carries `train/step` (the training step), declared as the x-axis of all metrics. The
wandb-internal `_step` is left to count rows: after a hard kill, the steps the killed attempt
logged past its checkpoint are trained and logged again, and wandb drops rows whose explicit
`step=` is below its counter — with `train/step` as the axis nothing is dropped, and the re-logged
steps simply show twice at the same x (identical values when the resume is bit-exact).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import string
from pathlib import Path
from typing import TYPE_CHECKING, Any

from olmo.errors import OlmoError
from olmo.fsutil import atomic_write_text
from olmo.logbook import LOGBOOK
from olmo.observe.config import WandbConfig
from olmo.observe.scrub import scrub
from olmo.slurm import REQUEUE_EXIT_CODE
from olmo.train.callbacks import Callback

if TYPE_CHECKING:
    from olmo.train.trainer import Trainer

log = logging.getLogger("olmo.observe")

ID_FILE = "wandb_id.txt"
STEP_KEY = "train/step"
_ENV_MODES = {"online": "online", "run": "online", "offline": "offline", "dryrun": "offline",
              "disabled": "disabled"}  # fmt: skip
_SKIP = {"step", "time", "batch_hash"}  # the axis, wall clock (wandb has _timestamp), a hash


def resolve_mode(mode: str, environ: dict[str, str] | None = None) -> str:
    """auto → $WANDB_MODE if set, else online with an API key in the environment, else offline."""
    env = os.environ if environ is None else environ
    if mode != "auto":
        return mode
    if env.get("WANDB_MODE", "").lower() in _ENV_MODES:
        return _ENV_MODES[env["WANDB_MODE"].lower()]
    return "online" if env.get("WANDB_API_KEY") else "offline"


def run_id(run_dir: Path) -> str:
    """This run directory's wandb id: read RUN_DIR/wandb_id.txt, or create it (atomically)."""
    path = Path(run_dir) / ID_FILE
    if path.is_file():
        text = path.read_text().strip()
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text):
            raise OlmoError(f"{path}: not a wandb run id ({text[:40]!r}); delete it for a new run")
        return text
    alphabet = string.ascii_lowercase + string.digits  # wandb's own id alphabet
    new = "".join(secrets.choice(alphabet) for _ in range(8))
    atomic_write_text(path, new + "\n")
    return new


def wandb_row(record: dict[str, Any]) -> dict[str, Any]:
    """A metrics.jsonl record as a wandb row: train/*, eval/*, energy/*, keys with '/' kept."""
    row: dict[str, Any] = {STEP_KEY: record["step"]}
    for key, value in record.items():
        if key in _SKIP or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if "/" in key:
            row[key] = value
        elif key.startswith("eval_"):
            row["eval/" + key.removeprefix("eval_")] = value
        elif key.startswith(("energy", "power")):
            row["energy/" + key] = value
        else:
            row["train/" + key] = value
    return row


def flatten_numbers(obj: Any, prefix: str) -> dict[str, float]:
    """Numeric leaves of a JSON object as {prefix/a/b: value} (energy.json totals → summary)."""
    if isinstance(obj, dict):
        out: dict[str, float] = {}
        for k, v in obj.items():
            out.update(flatten_numbers(v, f"{prefix}/{k}"))
        return out
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return {prefix: obj}
    return {}


def logbook_row(event: dict[str, Any], step: int) -> dict[str, Any]:
    """A logbook event as a wandb row: `logbook/EVENT` = 1 (a mark at the step it happened, or
    the current step) and its numeric details as `logbook/EVENT/KEY`."""
    name = f"logbook/{event['event']}"
    row: dict[str, Any] = {STEP_KEY: step if event.get("step") is None else event["step"]}
    return row | {name: 1} | flatten_numbers(event.get("detail"), name)


class LogbookTail:
    """The logbook lines appended since the last read (whoever wrote them: this process, the
    batch script, a launcher), from where this attempt began: its own events, events at or
    after its start, and the end the previous attempt could not book itself."""

    def __init__(self, run_dir: Path, attempt: int):
        self.path, self.attempt, self.offset = Path(run_dir) / LOGBOOK, attempt, 0
        self.since: float | None = None

    def new_events(self) -> list[dict[str, Any]]:
        try:
            if self.path.stat().st_size <= self.offset:
                return []
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits
        self.offset += len(complete)
        events = []
        for raw in complete.splitlines():
            try:
                ev = json.loads(raw)
            except ValueError:
                continue
            if isinstance(ev, dict) and isinstance(ev.get("detail"), dict) and self._mine(ev):
                events.append(ev)
        return events

    def _mine(self, ev: dict[str, Any]) -> bool:
        if ev.get("attempt") == self.attempt and ev.get("event") == "attempt_start":
            self.since = ev.get("time")
        if self.since is None:  # first read: the file up to this attempt's start is history
            inferred = ev["detail"].get("inferred") and ev.get("attempt") == self.attempt - 1
            return bool(inferred) or ev.get("attempt") == self.attempt
        return True


def _goodput(run_dir: Path) -> dict[str, Any]:
    """The logbook's totals so far (this attempt not yet ended) for the run summary."""
    from olmo.observe.logbook_report import summarize

    try:
        s = summarize(run_dir)
    except Exception as e:  # no logbook (older kit) or a damaged one: the run goes on
        log.info("no goodput for wandb: %s", e)
        return {}
    return {"goodput": s["goodput"], **flatten_numbers(s["lost_s"], "lost_s")}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class WandbLogger(Callback):
    """Logs config, environment, per-step metrics, eval results and energy totals (rank 0 only)."""

    def __init__(self, cfg: WandbConfig, run_dir: Path, config: dict[str, Any], attempt: int):
        self.cfg, self.run_dir, self.config, self.attempt = cfg, Path(run_dir), config, attempt
        self.mode = resolve_mode(cfg.mode)
        self.run = None
        self.logbook = LogbookTail(self.run_dir, attempt)
        if self.mode != "disabled" and not _wandb_installed():
            if cfg.mode != "auto":
                raise OlmoError(
                    f"wandb.mode={cfg.mode} but the wandb package is not installed; "
                    "pip install 'olmo-hpc[wandb]' or set --wandb.mode=disabled"
                )
            log.info("wandb not installed: not logging to wandb (pip install 'olmo-hpc[wandb]')")
            self.mode = "disabled"

    def on_train_start(self, trainer: Trainer) -> None:
        if trainer.env.is_main and self.mode != "disabled":
            self.run = self._init(self.mode)

    def _init(self, mode: str):
        import wandb

        wdir = Path(self.cfg.dir) if self.cfg.dir else self.run_dir
        wdir.mkdir(parents=True, exist_ok=True)
        config = dict(self.config, env=_read_json(self.run_dir / "env.json"))
        config["run_dir"] = str(self.run_dir.resolve())
        try:
            run = wandb.init(
                id=run_id(self.run_dir), resume="allow", mode=mode, dir=str(wdir),
                project=self.cfg.project, entity=self.cfg.entity, group=self.cfg.group,
                name=self.cfg.name or self.run_dir.resolve().name, tags=list(self.cfg.tags),
                config=scrub(config),
            )  # fmt: skip
        except Exception as e:  # never let a logging service stop training
            if mode == "online":
                log.warning("wandb online init failed (%s); logging offline (wandb sync later)", e)
                return self._init("offline")
            log.warning("wandb init failed (%s); not logging to wandb in this attempt", e)
            return None
        run.define_metric(STEP_KEY)
        run.define_metric("*", step_metric=STEP_KEY)
        run.summary.update({"attempt": self.attempt, "restarts": self.attempt - 1})
        log.info("wandb run %s (%s), attempt %d", run.id, mode, self.attempt)
        return run

    def on_metrics(self, trainer: Trainer, records: list[dict[str, Any]]) -> None:
        if self.run is None:
            return
        try:
            for rec in records:
                self.run.log(scrub(wandb_row(rec)))
        except Exception as e:  # wandb's service died: keep training, stop logging
            log.warning(
                "wandb log failed (%s); not logging to wandb for the rest of this attempt", e
            )
            self.run = None

    def on_step_end(self, trainer: Trainer, step: int) -> None:
        self._log_events(step)

    def _log_events(self, step: int) -> None:
        """The logbook's new events as rows, as they happen (checked once per step: a stat)."""
        if self.run is None:
            return
        try:
            for ev in self.logbook.new_events():
                self.run.log(logbook_row(ev, step))
        except Exception as e:  # wandb's service died: keep training, stop logging
            log.warning("wandb log failed (%s); not logging to wandb for this attempt", e)
            self.run = None

    def on_train_end(self, trainer: Trainer, status: str) -> None:
        if self.run is not None:
            self._log_events(trainer.state.step)
        if self.run is None:
            return
        energy = _read_json(self.run_dir / "energy.json")
        self.run.summary.update(
            {
                "status": status,
                "final_step": trainer.state.step,
                **flatten_numbers((energy or {}).get("totals"), "energy_total"),
                **_goodput(self.run_dir),
            }
        )
        if status == "requeue":
            self.run.mark_preempting()
        self.run.finish(exit_code=0 if status == "completed" else REQUEUE_EXIT_CODE)
        self.run = None


def _wandb_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("wandb") is not None
