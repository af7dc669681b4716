"""Loss-spike handling (#20.1): the detector's threshold, and the `spike@step=N` drill with each
action — log records it, skip drops the update on the device, rollback (2 ranks, gloo) returns
to the checkpoint before the spike, skips the data window and finishes with every step once."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from olmo.config.schema import load_config
from olmo.logbook import read_events
from olmo.train.callbacks import Callback, MetricsWriter
from olmo.train.drills import Drills, parse_drills
from olmo.train.optim import lr_factor
from olmo.train.setup import build_components
from olmo.train.spike import SpikeConfig, SpikeDetector, SpikeGuard
from olmo.train.trainer import Trainer
from tests.distributed.launch import read_records, torchrun, train_args
from tests.helpers import SMALL_MODEL, read_metrics

SPIKE = ["--train.spike.warmup=3", "--train.spike.window=8"]


def test_detector_warms_up_then_flags_robustly_and_keeps_spikes_out_of_its_window():
    det = SpikeDetector(SpikeConfig(warmup=4, window=6, z_threshold=6.0), torch.device("cpu"))
    assert det.check([10.0, 9.0, 8.5]) == [False] * 3  # warm-up: nothing is a spike yet
    assert det.threshold == math.inf
    assert det.check([8.4]) == [False]
    # median 8.75, MAD 0.3 → 8.75 + 6 · 1.4826 · 0.3 = 11.42
    assert det.threshold == pytest.approx(8.75 + 6 * 1.4826 * 0.3)
    assert float(det.threshold_t) == pytest.approx(det.threshold)  # the device copy follows
    assert det.check([30.0, 8.3]) == [True, False]
    assert 30.0 not in det.window and det.threshold == pytest.approx(8.5 + 6 * 1.4826 * 0.2)
    assert det.check([float("nan")]) == [False]  # non-finite: the nonfinite path's business


def test_drill_parsing_leaves_the_fault_parser_its_parts():
    from olmo.train.fault import parse_faults

    text = "kill@step=3;spike@step=7;slow@rank=2,factor=3"
    assert parse_drills(text) == ([7], {2: (3.0, 1)})
    assert parse_drills("slow@rank=1,factor=2.5,from=5") == ([], {1: (2.5, 5)})
    assert [f.action for f in parse_faults(text)] == ["kill"]
    with pytest.raises(Exception, match="slow@rank=2,factor=3"):
        parse_drills("slow@rank=x")


class Weights(Callback):
    """Every parameter at the end of each step (after the boundary)."""

    def __init__(self) -> None:
        self.after: dict[int, list[torch.Tensor]] = {}

    def on_step_end(self, trainer: Trainer, step: int) -> None:
        params = [p.detach() for p in trainer.model.parameters()]
        # FSDP's DTensor: the full value (for one rank it may be the parameter itself: copy)
        self.after[step] = [getattr(p, "full_tensor", lambda p=p: p)().clone() for p in params]


def _run(run_dir: Path, action: str, spike_step: int, steps: int) -> tuple[Trainer, Weights]:
    overrides = [*SMALL_MODEL, f"--train.max_steps={steps}", "--train.log_interval=1"]
    overrides += ["--checkpoint.interval=100", "--checkpoint.save_final=false", *SPIKE]
    overrides += ["--train.eval_holdout_instances=0"]
    cfg = load_config("configs/tiny.yaml", [*overrides, f"--train.spike.action={action}"])
    parts = build_components(cfg, run_dir)
    weights = Weights()
    drills = Drills([spike_step], (1.0, 1), 0, run_dir)
    guard = SpikeGuard(cfg.train.spike, parts.env.device)
    try:
        cbs = [drills, guard, weights, MetricsWriter(run_dir / "metrics.jsonl")]
        trainer = Trainer(cfg, parts, cbs)
        assert trainer.fit() == 0
        return trainer, weights
    finally:
        parts.close()


@pytest.mark.parametrize("action", ["log", "skip"])
def test_spike_drill_is_recorded_and_skip_drops_the_update(tmp_path: Path, action: str):
    run_dir = tmp_path / action
    _, weights = _run(run_dir, action, spike_step=5, steps=5)
    recs = {r["step"]: r for r in read_metrics(run_dir)}
    assert recs[5]["loss"] > 1.5 * recs[4]["loss"]  # the drill's spike is a real one
    assert recs[5].get("loss_spike") and not any(recs[s].get("loss_spike") for s in range(1, 5))
    assert recs[5].get("spike_skipped", False) == (action == "skip")
    events = [e for e in read_events(run_dir) if e["event"] == "loss_spike"]
    assert [(e["step"], e["detail"]["action"]) for e in events] == [(5, action)]
    same = all(torch.equal(a, b) for a, b in zip(weights.after[4], weights.after[5], strict=True))
    assert same == (action == "skip")


@pytest.fixture(autouse=True)
def _no_fault_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLMO_FAULT_INJECT", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)


def test_rollback_drill_on_two_ranks_recovers_with_every_step_once(tmp_path: Path):
    """torchrun, 2 ranks (gloo): a spike at step 8 → back to step 6's checkpoint, the data of
    steps 7-8 passed over, LR halved from there; steps 1-10 logged once each."""
    run = tmp_path / "run"
    args = train_args(run, "--train.max_steps=10", "--checkpoint.interval=3", *SPIKE)
    args += ["--train.spike.action=rollback", "--train.spike.lr_scale=0.5"]
    proc = torchrun(2, args, env={"OLMO_FAULT_INJECT": "spike@step=8"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = read_records(run)
    assert [r["step"] for r in recs] == list(range(1, 11))
    assert not any(r.get("loss_spike") for r in recs)  # the spiked step 8 was superseded
    events = [e for e in read_events(run) if e["event"] in ("loss_spike", "rollback")]
    assert [(e["event"], e["step"]) for e in events] == [("loss_spike", 8), ("rollback", 8)]
    detail = events[1]["detail"]
    batch = recs[0]["global_batch_size"]
    assert (detail["to_step"], detail["checkpoint"]) == (6, "step6")
    assert detail["skipped_data"] == [6 * batch, 8 * batch]  # steps 7 and 8's batches
    assert [r["data_position"] for r in recs[6:]] == [p * batch for p in range(8, 12)]
    cfg = load_config("configs/tiny.yaml", args[args.index("--run-dir") + 2 :])
    for r in recs:
        scale = 0.5 if r["step"] > 6 else 1.0
        lr = cfg.optim.lr * lr_factor(r["step"], cfg.scheduler, 10) * scale
        assert r["lr"] == pytest.approx(lr), r["step"]
    kept = sorted(p.name for p in (run / "checkpoints").glob("step*"))
    assert kept == ["step10", "step6", "step9"]
    saved = json.loads((run / "checkpoints" / "step10" / "trainer_state.json").read_text())
    assert saved["train_state"]["lr_scale"] == 0.5  # a requeue keeps the lowered LR
