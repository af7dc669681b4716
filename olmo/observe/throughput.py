"""`olmo bench`: training-step throughput, MFU and peak memory of a config on this machine.

The step is the training loop's own (olmo.train.step: micro-batches, clipping, fused AdamW,
FSDP and bf16 as configured) on random token batches, so no data is needed. After warm-up,
windows of steps are timed (the device synchronised at window edges only); the median
window gives tokens/s per device. Works the same under torchrun (rank 0 reports).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import time
from pathlib import Path
from typing import Any

import torch

from olmo.config.schema import Config, load_config
from olmo.envinfo import environment_fingerprint
from olmo.errors import OlmoError
from olmo.inputs import at_least, check_output
from olmo.observe.mfu import PEAK_BF16_FLOPS, flops_per_token, table_key
from olmo.train.optim import build_optimizer
from olmo.train.setup import autocast_context, build_model_for, setup_logging, use_bf16
from olmo.train.step import clip_gradients, forward_backward, loss_scale, optimizer_step

log = logging.getLogger("olmo.bench")


def measured_peak_flops(device: torch.device, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """Dense matmul FLOP/s of this device in `dtype` (square 2048 GEMMs, best of a few tries)."""
    n = 2048
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline or best == 0.0:
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


def device_peak(device: torch.device, bf16: bool) -> tuple[float, str]:
    """(peak FLOP/s, where it comes from): the bf16 table for known accelerators, else measured."""
    key = table_key(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    if key and bf16:
        return PEAK_BF16_FLOPS[key], f"table: {key} dense bf16"
    dtype = torch.bfloat16 if bf16 else torch.float32
    return measured_peak_flops(device, dtype), f"measured: {str(dtype)[6:]} 2048³ GEMM"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {"kind": "torch allocated", "gib": torch.cuda.max_memory_allocated(device) / 2**30}
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    return {"kind": "process peak RSS", "gib": rss_kib / 2**20}


def time_steps(step, device: torch.device, windows: int, steps_per_window: int, warmup: int):
    """Seconds per step of each timed window (after `warmup` untimed steps)."""
    for _ in range(warmup):
        step()
    out = []
    for w in range(windows):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps_per_window):
            step()
        _sync(device)
        out.append((time.perf_counter() - t0) / steps_per_window)
        log.info("window %d/%d: %.3f s/step", w + 1, windows, out[-1])
    return out


def run_bench(cfg: Config, windows: int, steps_per_window: int, warmup: int) -> dict[str, Any]:
    """Build the configured model/optimizer (no data), time its training step; the record."""
    from olmo.distributed.env import init_distributed

    env = init_distributed(cfg.distributed.backend, cfg.distributed.init_timeout_s)
    setup_logging(env.rank)
    seq_len = cfg.data.seq_len
    global_batch = cfg.train.batch_instances(seq_len)
    if global_batch % env.world_size:
        raise OlmoError(
            f"train.global_batch_size ({global_batch}) must divide over {env.world_size} ranks"
        )
    bf16 = use_bf16(cfg, env.device)
    model = build_model_for(cfg, env, bf16)
    optim = build_optimizer(model, cfg.optim)
    gen = torch.Generator().manual_seed(cfg.train.seed + env.rank)
    batch = torch.randint(
        0, cfg.model.vocab_size, (global_batch // env.world_size, seq_len), generator=gen
    )
    batch = batch.to(env.device)
    scale = loss_scale(env.world_size, global_batch, seq_len)

    def autocast():
        return autocast_context(bf16, cfg.distributed.fsdp, env.device)

    def step() -> None:
        forward_backward(model, batch, cfg.train.micro_batch_size, scale, autocast)
        optimizer_step(optim, clip_gradients(model, cfg.optim.grad_clip), cfg.optim.fused)

    log.info("bench: %d warm-up steps, %d windows of %d", warmup, windows, steps_per_window)
    times = time_steps(step, env.device, windows, steps_per_window, warmup)
    step_s = sorted(times)[len(times) // 2]
    tps = global_batch * seq_len / env.world_size / step_s
    fpt = flops_per_token(cfg.model, seq_len)
    peak, source = device_peak(env.device, bf16)
    fp = environment_fingerprint()
    return {
        "bench": "throughput",
        "model": {
            "params": cfg.model.num_params(),
            "d_model": cfg.model.d_model,
            "n_layers": cfg.model.n_layers,
            "block": cfg.model.block,
        },
        "seq_len": seq_len,
        "global_batch": global_batch,
        "micro_batch": cfg.train.micro_batch_size,
        "world_size": env.world_size,
        "precision": "bf16" if bf16 else "fp32",
        "fsdp": cfg.distributed.fsdp,
        "compile": cfg.distributed.compile,
        "activation_checkpointing": cfg.distributed.activation_checkpointing,
        "step_s": times,
        "tokens_per_s_per_device": round(tps, 1),
        "flops_per_token": fpt,
        "peak_flops": peak,
        "peak_source": source,
        "mfu": tps * fpt / peak,
        "peak_memory": _peak_memory(env.device),
        "device": fp["devices"][0].get("name")
        if env.device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)",
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "torch": fp["torch"],
        "git_commit": fp["git_commit"],
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "is_main": env.is_main,
    }


def _main(args: argparse.Namespace) -> int:
    from olmo.distributed.env import destroy

    if args.out:
        check_output(args.out, "--out")
    cfg = load_config(args.config, args.overrides)
    try:
        rec = run_bench(cfg, args.windows, args.steps_per_window, args.warmup)
    finally:
        destroy()
    if not rec.pop("is_main"):
        return 0
    rec = {"config": args.config, "overrides": args.overrides} | rec
    mem = rec["peak_memory"]
    print(
        f"{rec['tokens_per_s_per_device']:,.0f} tokens/s per device, MFU "
        f"{100 * rec['mfu']:.1f}% of {rec['peak_flops'] / 1e12:.3g} TFLOP/s ({rec['peak_source']}), "
        f"peak memory {mem['gib']:.2f} GiB ({mem['kind']}), {rec['precision']}, "
        f"{rec['world_size']} rank(s) on {rec['device']}"
    )
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as f:  # one line per result: appends cannot half-write a record
            f.write(json.dumps(rec) + "\n")
        print(f"appended to {out}")
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="training-step tokens/s, MFU and peak memory of a config (random tokens, no data)",
        description="Time the training step of CONFIG (with --section.key=value overrides) on this "
        "machine; under torchrun, every rank steps and rank 0 reports. Example: olmo bench "
        "configs/olmo-1b.yaml --data.seq_len=4096 --model.max_seq_len=4096 --out FILE",
    )
    p.add_argument("config", help="YAML config file")
    p.add_argument("--windows", type=at_least(1), default=5, help="timed windows (median reported)")
    p.add_argument("--steps-per-window", type=at_least(1), default=3)
    p.add_argument(
        "--warmup", type=at_least(0), default=2, help="untimed steps first (compile, caches)"
    )
    p.add_argument("--out", help="append the JSON result to this file")
    p.set_defaults(func=_main, overrides=[])
