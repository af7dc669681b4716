"""What one training step computes on a device, as numbers two machines can compare.

The weights are made on the CPU with the training seed (the trainer's own init, so every vendor
starts from identical bits, recorded as a sha256), the golden batches come from the deterministic
data pipeline (the first instances of the first global batches), then forward, backward and one
AdamW step run on the target device in fp32 or under bf16 autocast with fp32 master weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from olmo.config.schema import Config, config_to_dict
from olmo.data.loader import batch_hash
from olmo.data.split import build_train_data
from olmo.envinfo import environment_fingerprint
from olmo.errors import OlmoError
from olmo.model import Transformer, build_model
from olmo.parity.stats import Quantity, bit_hash, norm_quantity, sum_quantity, tensor_stats
from olmo.train.optim import build_optimizer, lr_factor, set_lr
from olmo.train.step import clip_gradients, optimizer_step

FORMAT = "olmo-parity-fingerprint/1"
# Config sections that decide the numbers (data paths may differ between clusters: the golden
# batches' token hash stands for the data instead).
CONFIG_KEYS = ("model", "optim", "scheduler", "train.seed", "data.seq_len")


@dataclass
class FingerprintOptions:
    device: str = "cpu"
    """Target device: cpu, cuda or cuda:N (ROCm builds also call it cuda)."""
    dtype: str = "fp32"
    """fp32, or bf16 (autocast with fp32 master weights, as training on accelerators)."""
    batches: int = 1
    """Golden batches: gradients are accumulated over all of them before the optimizer step."""
    instances: int | None = None
    """Instances taken from the start of each global batch (default: train.micro_batch_size)."""
    flip_bit: tuple[str, int, int] | None = None
    """Fault drill: (parameter name, flat element index, bit 0-31) flipped on the device after
    init, as a bad memory cell would; proves the comparison catches it."""


def fingerprint(cfg: Config, opts: FingerprintOptions) -> dict[str, Any]:
    """The fingerprint dict (JSON-ready); see the module docstring."""
    device = _device(opts.device)
    if opts.dtype not in ("fp32", "bf16"):
        raise OlmoError(f"--dtype {opts.dtype}: use fp32 or bf16")
    if opts.batches < 1:
        raise OlmoError(f"--batches {opts.batches}: need at least 1")
    with _deterministic():
        model = build_model(cfg.model, device="cpu", seed=cfg.train.seed)
        init = {n: p.detach().clone() for n, p in model.named_parameters()}
        init_sha = bit_hash(list(init.items()))
        model.to(device)
        if opts.flip_bit is not None:
            flip_bit(model, *opts.flip_bit)
        batches, exact = golden_batches(cfg, opts)
        q: dict[str, Quantity] = {}
        _forward_backward(model, batches, opts.dtype, device, q)
        q.update(_grad_quantities(model))
        _optimizer_step(model, cfg)
        q.update(_weight_quantities(model, init))
        updated_sha = bit_hash([(n, p) for n, p in model.named_parameters()])
    return {
        "format": FORMAT,
        "device": str(device),
        "device_name": _device_name(device),
        "dtype": opts.dtype,
        "config": _config_subset(cfg),
        "exact": {"init_weights_sha256": init_sha, **exact},
        "bits": {"updated_weights_sha256": updated_sha},
        "quantities": {k: {"value": v, "scale": s} for k, (v, s) in q.items()},
        "env": environment_fingerprint(),
    }


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise OlmoError(f"--device {name}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OlmoError(f"--device {name}: this torch build sees no CUDA/ROCm device; use cpu")
    return device


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:  # the CPU model (platform.processor() is just "x86_64" on Linux)
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    """Deterministic kernels and full-precision fp32 matmuls (no TF32), restored afterwards."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    was_det = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    precision = torch.get_float32_matmul_precision()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_det, warn_only=was_warn)
        torch.set_float32_matmul_precision(precision)


def flip_bit(model: torch.nn.Module, name: str, index: int, bit: int) -> None:
    params = dict(model.named_parameters())
    if name not in params:
        raise OlmoError(f"--flip-bit: no parameter '{name}'; one of {', '.join(params)}")
    p = params[name]
    if p.dtype != torch.float32 or not 0 <= bit < 32 or not 0 <= index < p.numel():
        raise OlmoError(f"--flip-bit {name},{index},{bit}: need an fp32 element and bit 0-31")
    mask = 1 << bit if bit < 31 else -(1 << 31)  # int32 two's complement
    with torch.no_grad():
        p.view(-1).view(torch.int32)[index] ^= mask


def golden_batches(cfg: Config, opts: FingerprintOptions) -> tuple[list[torch.Tensor], dict]:
    """The first `instances` of the first `batches` global batches, and their exact hashes."""
    n = opts.instances or cfg.train.micro_batch_size
    if not 0 < n <= cfg.train.global_batch_size:
        raise OlmoError(f"--instances {n}: need 1..train.global_batch_size")
    loader, _ = build_train_data(
        cfg.data, cfg.train.seed, cfg.train.global_batch_size, cfg.train.eval_holdout_instances
    )
    out, hashes, tokens = [], [], hashlib.sha256()
    for step in range(opts.batches):
        indices = loader.global_indices(step)[:n]
        batch = loader.dataset.get_batch(indices)
        hashes.append(batch_hash(indices))
        tokens.update(batch.tobytes())
        out.append(torch.from_numpy(batch))
    return out, {"batch_hashes": hashes, "tokens_sha256": tokens.hexdigest()}


def _hook_sites(model: Transformer) -> list[tuple[str, torch.nn.Module]]:
    """Modules whose outputs are recorded, in forward order (so the first break localises)."""
    sites: list[tuple[str, torch.nn.Module]] = [("embeddings", model.embeddings)]
    for i, block in model.layers.items():
        sites += [
            (f"layers.{i}.attention", block.attention),
            (f"layers.{i}.feed_forward", block.feed_forward),
            (f"layers.{i}", block),
        ]
    return [*sites, ("final_norm", model.final_norm)]


def _forward_backward(
    model: Transformer,
    batches: list[torch.Tensor],
    dtype: str,
    device: torch.device,
    q: dict[str, Quantity],
) -> None:
    """Forward and backward over every golden batch; gradient = mean token loss over them all."""
    prefix = [""]

    def record(name: str):
        def hook(_module, _args, output):
            for stat, value in tensor_stats(output).items():
                q[f"{prefix[0]}act/{name}/{stat}"] = value

        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in _hook_sites(model)]
    total_tokens = sum(b[:, 1:].numel() for b in batches)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")
    try:
        for i, batch in enumerate(batches):
            prefix[0] = f"b{i}/"
            batch = batch.to(device)
            with autocast:
                logits = model(batch[:, :-1])
            flat = logits.float().flatten(0, -2)
            loss = F.cross_entropy(flat, batch[:, 1:].flatten(), reduction="sum")
            (loss / total_tokens).backward()
            with torch.no_grad():
                for stat, value in tensor_stats(logits).items():
                    q[f"b{i}/logits/{stat}"] = value
                lse = float(torch.logsumexp(flat, dim=-1).double().mean())
                q[f"b{i}/logits/logsumexp_mean"] = (lse, abs(lse))
                mean_loss = float(loss) / batch[:, 1:].numel()
                q[f"b{i}/loss"] = (mean_loss, abs(mean_loss))
    finally:
        for h in handles:
            h.remove()


def _grad_quantities(model: torch.nn.Module) -> dict[str, Quantity]:
    grads = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
    q = {f"grad_norm/{n}": norm_quantity(g) for n, g in grads}
    total = sum(v * v for v, _ in q.values()) ** 0.5
    q["grad_norm/total"] = (total, total)
    return q


def _optimizer_step(model: torch.nn.Module, cfg: Config) -> None:
    """Step 1 of training: clip as the trainer does, AdamW at the step-1 learning rate."""
    optim = build_optimizer(model, cfg.optim)
    set_lr(optim, cfg.optim.lr * lr_factor(1, cfg.scheduler, cfg.train.max_steps))
    optimizer_step(optim, clip_gradients(model, cfg.optim.grad_clip), cfg.optim.fused)


def _weight_quantities(
    model: torch.nn.Module, init: dict[str, torch.Tensor]
) -> dict[str, Quantity]:
    """Per parameter: the update's norm and the new weights' float checksum (sum vs L1)."""
    q: dict[str, Quantity] = {}
    total, total_l1 = 0.0, 0.0
    for name, p in model.named_parameters():
        new = p.detach().cpu()
        q[f"update_norm/{name}"] = norm_quantity(new - init[name])
        q[f"weights/{name}/sum"] = s = sum_quantity(new)
        total, total_l1 = total + s[0], total_l1 + s[1]
    q["weights/checksum"] = (total, total_l1)
    return q


def _config_subset(cfg: Config) -> dict[str, Any]:
    full = config_to_dict(cfg)
    out: dict[str, Any] = {}
    for key in CONFIG_KEYS:
        section, _, field = key.partition(".")
        out[key] = full[section][field] if field else full[section]
    return out
