"""Batch-size schedules and data mixtures (#21) over the data position (#20.0).

The loader-level tests are arithmetic; the end-to-end ones run real `olmo train` processes (gloo
under torchrun, a real SIGKILL from OLMO_FAULT_INJECT) and compare against `olmo data inspect`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from olmo.config.schema import load_config
from olmo.data.config import DataConfig, SourceConfig
from olmo.data.dataset import TokenDataset
from olmo.data.inspect import inspect_step, load_run_config
from olmo.data.loader import DataLoader, check_schedule
from olmo.data.prepare import write_token_dir
from olmo.data.split import build_train_data
from olmo.errors import OlmoError
from olmo.tokenizer import load_tokenizer
from olmo.train.callbacks import MetricsWriter
from olmo.train.setup import build_components
from olmo.train.trainer import Trainer
from tests.distributed.launch import _env, digest, read_records, torchrun, train_args
from tests.helpers import SMALL_MODEL, read_metrics

SEQ = 16


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory) -> DataConfig:
    """Source "a" holds token ids < 1000, "b" ids >= 1000: a row's source shows in its tokens."""
    tok = load_tokenizer()
    root = tmp_path_factory.mktemp("mix")
    rng = np.random.default_rng(0)
    write_token_dir([rng.integers(0, 1000, 300 * SEQ)], root / "a", tok)
    write_token_dir([rng.integers(1000, 2000, 130 * SEQ)], root / "b", tok)
    sources = [
        SourceConfig("a", [str(root / "a")], 0.75),
        SourceConfig("b", [str(root / "b")], 0.25),
    ]
    return DataConfig(seq_len=SEQ, sources=sources)


def test_schedule_steps_through_batch_sizes_by_tokens(tmp_path):
    tok = load_tokenizer()
    write_token_dir([np.arange(100 * SEQ) % 500], tmp_path / "d", tok)
    ds = TokenDataset([tmp_path / "d"], SEQ, tok)
    # 4 instances until 128 tokens (2 steps), 8 until 384 (2 more), then 16.
    loader = DataLoader(ds, 16, seed=1, schedule=[[0, 4], [128, 8], [384, 16]])
    plans = [loader.plan(s) for s in range(9)]
    assert [p.size for p in plans] == [4, 4, 8, 8, 16, 16, 16, 16, 16]
    # Positions advance by instances; a batch that would cross the epoch end (100) starts the next.
    assert [p.position for p in plans] == [0, 4, 8, 16, 24, 40, 56, 72, 100]
    it = iter(loader)
    assert [next(it)[0] for _ in range(9)] == plans  # the iterator walks the same plan
    assert loader.state_dict()["global_batch_size"] == 16 and loader.instances_consumed == 104


def test_schedule_errors_name_the_entry():
    bad = [
        ([[1, 4], [64, 8]], r"schedule\[0\]: the first threshold must be 0 tokens, got 1"),
        ([[0, 4], [64, 8], [64, 16]], r"schedule\[2\]: thresholds must ascend, got 64 then 64"),
        ([[0, 4], [64, 8]], r"schedule\[1\]: the last batch 8 must equal .*global_batch_size=16"),
        ([[0, 4], [64]], r"schedule\[1\]=\[64\]: give \[TOKENS, GLOBAL_BATCH\]"),
        ([], r"batch_size_schedule=\[\]: give \[\[TOKENS, GLOBAL_BATCH\], \.\.\.\]"),
    ]
    for schedule, match in bad:
        with pytest.raises(OlmoError, match=match):
            check_schedule(schedule, 16)


def test_schedule_sizes_must_divide_over_micro_batches_and_ranks(tmp_path):
    tok = load_tokenizer()
    write_token_dir([np.arange(100 * SEQ) % 500], tmp_path / "d", tok)
    ds = TokenDataset([tmp_path / "d"], SEQ, tok)
    with pytest.raises(OlmoError, match=r"schedule\[0\] batch 6 is not a multiple of .* 2 × 2"):
        DataLoader(ds, 16, 0, 0, 2, schedule=[[0, 6], [64, 16]], micro_batch_size=2)


def test_mixture_follows_weights_on_any_world_size(two_sources: DataConfig):
    one, _ = build_train_data(two_sources, 3, 16, 0)
    ranks = [build_train_data(two_sources, 3, 16, 0, rank=r, world_size=2)[0] for r in (0, 1)]
    counts = {"a": 0, "b": 0}
    for step in range(400):
        plan = one.plan(step)
        assert plan.position == 16 * step and plan.size == 16
        batch = one.source_counts(plan)
        counts = {k: counts[k] + batch[k] for k in counts}
        local = [r.local_slice(plan, r.indices(plan)) for r in ranks]
        np.testing.assert_array_equal(np.concatenate(local), one.indices(plan))
    share = counts["a"] / 6400
    assert abs(share - 0.75) < 0.02, counts
    # Sources cycle through their own epochs: "b" (130 instances) is read ~12 times, evenly.
    ids = np.concatenate([one.global_indices(s) for s in range(400)])
    b_ids = ids[ids >= 300]
    assert set(np.bincount(b_ids - 300).tolist()) <= {12, 13}
    # Each row's tokens come from the source its label names.
    plan = one.plan(7)
    rows = one.dataset.get_batch(one.indices(plan))
    labels = one.order.labels(plan.position, plan.size)
    assert ((rows.max(axis=1) < 1000) == (labels == 0)).all()
    assert torch.equal(torch.cat([r.batch(7) for r in ranks]), one.batch(7))
    other, _ = build_train_data(two_sources, 4, 16, 0)
    assert not np.array_equal(other.global_indices(0), one.global_indices(0))


def test_mixture_holds_out_the_tail_of_its_last_source(two_sources: DataConfig):
    loader, held_out = build_train_data(two_sources, 3, 16, 10)
    assert loader.order.sizes == [300, 120] and len(held_out) == 10
    assert held_out.get_batch(np.arange(10)).min() >= 1000  # source "b"'s last 10 instances
    ids = np.concatenate([loader.global_indices(s) for s in range(100)])
    assert ids.max() < 420  # never trained on
    with pytest.raises(OlmoError, match=r"eval_holdout_instances=130: the last of data\.sources"):
        build_train_data(two_sources, 3, 16, 130)


def test_mixture_config_errors(two_sources: DataConfig):
    a, b = two_sources.sources
    cases = [
        (DataConfig(paths=["x"], sources=[a]), r"data\.paths and data\.sources are both set"),
        (DataConfig(sources=[a, SourceConfig("a", b.paths)]), r"sources\[1\]\.name='a': .*unique"),
        (DataConfig(sources=[a, SourceConfig("b", b.paths, 0.0)]), r"sources\[1\]\.weight=0\.0"),
        (DataConfig(sources=[SourceConfig("a", [])]), r"sources\[0\]\.paths=\[\]"),
        (DataConfig(sources=[a, SourceConfig("b", b.paths, 1e-4)]), r"below 1/1024"),
    ]
    for cfg, match in cases:
        with pytest.raises(OlmoError, match=match):
            build_train_data(cfg, 0, 16, 0)


# ---- end to end: real runs ------------------------------------------------------------------
# 4 instances for 256 tokens (steps 1-2), 8 until 768 (steps 3-4), then 16 (steps 5-7); a
# checkpoint at step 3 and a SIGKILL after step 5, so the resumed attempt crosses the change.
E2E = [
    "--train.global_batch_size=16",
    "--train.micro_batch_size=2",
    "--train.batch_size_schedule=[[0, 4], [256, 8], [768, 16]]",
    "--data.sources=[{name: web, paths: [bundled], weight: 3}, {name: code, paths: [bundled]}]",
    "--train.max_steps=7",
    "--checkpoint.interval=3",
    "--train.eval_holdout_instances=0",
]


def _run(run: Path, nproc: int, faults: str | None = None) -> None:
    """One rank without torchrun (no agent process to start), relaunched after a kill as a
    requeue would; two under torchrun."""
    env = {"OLMO_FAULT_INJECT": faults} if faults else {}
    if nproc > 1:
        proc = torchrun(nproc, train_args(run, *E2E), env)
        assert proc.returncode == 0, proc.stderr[-4000:]
        return
    cmd = [sys.executable, *train_args(run, *E2E)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env(env))
    if faults:
        assert proc.returncode == -signal.SIGKILL and "injected kill" in proc.stderr, proc.stderr
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env(env))
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.slow
def test_schedule_and_mixture_resume_bitwise_and_match_inspect(tmp_path: Path):
    ref, killed, two = tmp_path / "ref", tmp_path / "killed", tmp_path / "two"
    _run(ref, 1)
    _run(killed, 1, "kill@step=5")
    _run(two, 2)
    recs = read_records(ref)
    assert [r["global_batch_size"] for r in recs] == [4, 4, 8, 8, 16, 16, 16]
    assert [r["data_position"] for r in recs] == [0, 4, 8, 16, 24, 40, 56]
    assert [r["tokens_seen"] for r in recs] == [128, 256, 512, 768, 1280, 1792, 2304]
    assert all(sum(r["source_counts"].values()) == r["global_batch_size"] for r in recs)
    # Killed after step 5 and resumed from step 3: bitwise the uninterrupted run.
    assert [r["loss"] for r in read_records(killed)] == [r["loss"] for r in recs]
    assert digest(killed / "checkpoints" / "step7") == digest(ref / "checkpoints" / "step7")
    # Two ranks see the same batches (and the same sources).
    keys = ("batch_hash", "data_position", "global_batch_size", "source_counts")
    assert [[r[k] for k in keys] for r in read_records(two)] == [[r[k] for k in keys] for r in recs]
    cfg = load_run_config(ref)
    for rec in recs:
        got = inspect_step(cfg, rec["step"], run_dir=ref)
        assert got["batch_hash"] == rec["batch_hash"]
        assert {n: got["sources"].count(n) for n in ("web", "code")} == rec["source_counts"]
        assert inspect_step(cfg, rec["step"])["batch_hash"] == rec["batch_hash"]  # replayed


def _train(run_dir: Path, *overrides: str) -> list[dict]:
    extra = [
        "--train.max_steps=2",
        "--train.eval_holdout_instances=0",
        "--train.micro_batch_size=2",
    ]
    cfg = load_config("configs/tiny.yaml", [*SMALL_MODEL, *extra, *overrides])
    cfg.checkpoint.save_final = False
    parts = build_components(cfg, run_dir)
    try:
        assert Trainer(cfg, parts, [MetricsWriter(run_dir / "metrics.jsonl")]).fit() == 0
    finally:
        parts.close()
    return read_metrics(run_dir)


def test_a_scheduled_step_is_the_same_step_as_a_fixed_batch_of_its_size(tmp_path: Path):
    """The first steps of a schedule (batch 4 of a final 8) equal a fixed batch of 4: same data,
    the loss and gradient averaged over the step's own tokens (not the final batch's)."""
    sched = _train(tmp_path / "s", "--train.batch_size_schedule=[[0, 4], [100000, 8]]")
    fixed = _train(tmp_path / "f", "--train.global_batch_size=4")
    keys = ("loss", "grad_norm", "batch_hash", "data_position", "global_batch_size")
    assert [[r[k] for k in keys] for r in sched] == [[r[k] for k in keys] for r in fixed]
