"""`olmo bench`: the real CLI on the tiny config (1 process, and 2 ranks under torchrun)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch

from olmo.model import ModelConfig
from olmo.observe.throughput import device_peak, measured_peak_flops
from tests.distributed.launch import torchrun
from tests.helpers import SMALL_MODEL, olmo

QUICK = ["--windows=3", "--steps-per-window=1", "--warmup=1"]


def test_bench_record_is_consistent(tmp_path: Path):
    out = tmp_path / "results" / "throughput.jsonl"
    proc = olmo("bench", "configs/tiny.yaml", *QUICK, *SMALL_MODEL, "--out", str(out))
    assert "tokens/s per device, MFU" in proc.stdout
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert rec["config"] == "configs/tiny.yaml" and "--model.d_model=64" in rec["overrides"]
    assert rec["world_size"] == 1 and rec["precision"] == "fp32" and len(rec["step_s"]) == 3
    # 8 instances of 32 tokens per step, at the median window
    tps = 8 * 32 / statistics.median(rec["step_s"])
    assert abs(rec["tokens_per_s_per_device"] - tps) <= 0.1
    # 6·N + 12·L·d·T with N = blocks (2 × (4·64² + 3·64·hidden)) + head (vocab rows × 64)
    hidden = ModelConfig(d_model=64, n_layers=2, n_heads=4).hidden_size
    n = 2 * (4 * 64 * 64 + 3 * 64 * hidden) + 50304 * 64
    assert rec["flops_per_token"] == 6 * n + 12 * 2 * 64 * 32
    assert abs(rec["mfu"] - tps * rec["flops_per_token"] / rec["peak_flops"]) < 1e-3 * rec["mfu"]
    assert rec["peak_source"].startswith("measured") and 0 < rec["mfu"] < 1
    assert rec["peak_memory"]["kind"] == "process peak RSS" and rec["peak_memory"]["gib"] > 0.1


def test_bench_under_torchrun_reports_once_per_device(tmp_path: Path):
    out = tmp_path / "t.jsonl"
    args = ["-m", "olmo", "bench", "configs/tiny.yaml", *QUICK, *SMALL_MODEL, "--out", str(out)]
    proc = torchrun(2, args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert rec["world_size"] == 2 and rec["fsdp"]
    tps = 8 * 32 / 2 / statistics.median(rec["step_s"])
    assert abs(rec["tokens_per_s_per_device"] - tps) <= 0.1


def test_bench_config_typo_is_one_line(tmp_path: Path):
    proc = olmo("bench", "configs/tiny.yaml", "--train.globl_batch_size=4", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error:") and "globl_batch_size" in proc.stderr


def test_cpu_peak_is_measured_in_the_compute_dtype():
    peak = measured_peak_flops(torch.device("cpu"), torch.float32, seconds=0.2)
    assert 1e9 < peak < 1e13  # a GFLOP/s-class CPU, not a table entry
    value, source = device_peak(torch.device("cpu"), bf16=False)
    assert source == "measured: float32 2048³ GEMM" and value > 1e9
