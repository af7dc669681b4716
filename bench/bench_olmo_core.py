"""Training step: our OLMo 2 model vs OLMo-core's (`ai2-olmo-core`), same process, same batch.

OLMo-core's `TransformerConfig.olmo2_*` model is built, its weights are copied into our
`block: olmo2` model (q/k/v fused, SwiGLU [up; gate] fused) and both are checked to give the
same loss before timing. A step is forward + loss + backward + clipping + AdamW step with the
same optimizer on both sides (olmo.train.optim.build_optimizer: fused AdamW, our default).
Ours: `model(inputs, labels=targets)` (fused chunked head + CE); OLMo-core: its own
`model(inputs, labels=targets, loss_reduction="sum")`. Interleaved windows after warm-up.

    python bench/bench_olmo_core.py [--configs olmo2-30m] [--windows 7] [--threads 2]
    python bench/bench_olmo_core.py --configs olmo2-1b --device cuda --dtype bf16 [--batch 2]

On a GPU (`--device cuda`) both models are built on the device and every window is
synchronized; `--dtype bf16` runs both steps under bf16 autocast (fp32 master weights), after
the equal-loss check in fp32 (TF32 off). `olmo2-1b` is OLMo-core's `olmo2_1B_v2`: the OLMo-1B
shape (d 2048, 16 layers, 16 heads, MLP 8192) with OLMo 2 blocks; batch 2 × 4096 tokens.

Results are appended to bench/results/olmo_core.jsonl. Needs `pip install ai2-olmo-core` with
torch pinned (a constraints file with torch==2.13.0), or the wheels of bench/gpu_wheels.txt.
"""

from __future__ import annotations

import contextlib
import sys
import types

import torch
from common import compare_steps, comparison_main


def _stub_cached_path() -> None:
    """OLMo-core imports `cached_path` (remote files) at import time, and cached_path imports the
    Google Cloud and AWS SDKs. This bench never reads a remote file: where the package is
    missing (the GPU machine's offline wheel set), a stub whose calls fail stands in for it."""
    try:
        import cached_path  # noqa: F401
    except ImportError:
        pkg, schemes = types.ModuleType("cached_path"), types.ModuleType("cached_path.schemes")

        def cached_path(*args, **kwargs):
            raise RuntimeError("cached_path is stubbed in bench_olmo_core.py (no remote files)")

        class SchemeClient:
            recoverable_errors: tuple = ()

        pkg.__path__, pkg.cached_path, pkg.schemes = [], cached_path, schemes
        schemes.SchemeClient = SchemeClient
        schemes.S3Client = type("S3Client", (SchemeClient,), {})
        schemes.add_scheme_client = lambda client: None
        sys.modules |= {"cached_path": pkg, "cached_path.schemes": schemes}


_stub_cached_path()
from olmo_core.nn.transformer import TransformerConfig  # noqa: E402

from olmo.model import ModelConfig, build_model  # noqa: E402

GOAL = 1.0
VOCAB = 50304
CPU = torch.device("cpu")
# name → (OLMo-core config factory, batch instances, instance length)
CONFIGS = {
    "olmo2-30m": (TransformerConfig.olmo2_30M, 16, 128),
    "olmo2-190m": (TransformerConfig.olmo2_190M, 4, 256),
    "olmo2-1b": (TransformerConfig.olmo2_1B_v2, 2, 4097),
}


def _our_config(core, max_seq_len: int) -> ModelConfig:
    block = core.block
    return ModelConfig(
        d_model=core.d_model,
        n_layers=core.n_layers,
        n_heads=block.sequence_mixer.n_heads,
        mlp_hidden_size=block.feed_forward.hidden_size,
        vocab_size=core.vocab_size,
        max_seq_len=max(512, max_seq_len),
        rope_theta=float(block.sequence_mixer.rope.theta),
        weight_tying=False,
        layer_norm_eps=block.layer_norm.eps,
        block="olmo2",
    )


def _copy_weights(core_model, ours) -> None:
    sd = core_model.state_dict()
    out = {
        "embeddings.weight": sd["embeddings.weight"],
        "final_norm.weight": sd["lm_head.norm.weight"],
        "lm_head.weight": sd["lm_head.w_out.weight"],
    }
    for i in range(ours.cfg.n_layers):
        b, o = f"blocks.{i}.", f"layers.{i}."
        qkv = [sd[b + f"attention.w_{x}.weight"] for x in "qkv"]
        out[o + "attention.qkv.weight"] = torch.cat(qkv)
        out[o + "attention.out.weight"] = sd[b + "attention.w_out.weight"]
        for norm in ("q_norm", "k_norm"):
            out[o + f"attention.{norm}.weight"] = sd[b + f"attention.{norm}.weight"]
        out[o + "attention_norm.weight"] = sd[b + "attention_norm.weight"]
        out[o + "ff_norm.weight"] = sd[b + "feed_forward_norm.weight"]
        ff = b + "feed_forward."
        out[o + "feed_forward.proj.weight"] = torch.cat(
            (sd[ff + "w3.weight"], sd[ff + "w1.weight"])
        )
        out[o + "feed_forward.out.weight"] = sd[ff + "w2.weight"]
    ours.load_state_dict(out, strict=True)


def bench_config(
    name: str,
    windows: int,
    steps_per_window: int,
    warmup: int,
    device: torch.device = CPU,
    dtype: str = "fp32",
    batch: int | None = None,
    seq_len: int | None = None,
) -> dict:
    factory, batch0, length0 = CONFIGS[name]
    batch, length = batch or batch0, (seq_len + 1 if seq_len else length0)
    core_cfg = factory(vocab_size=VOCAB)
    core = core_cfg.build(init_device=str(device))
    core.init_weights(device=device)
    core.train()
    cfg = _our_config(core_cfg, length)
    ours = build_model(cfg, device=device, seed=0).train()
    _copy_weights(core, ours)
    gen = torch.Generator().manual_seed(0)
    data = torch.randint(0, VOCAB, (batch, length), generator=gen).to(device)
    inputs, targets = data[:, :-1].contiguous(), data[:, 1:].contiguous()
    n = targets.numel()
    bf16 = dtype == "bf16"

    def autocast():
        if not bf16:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)

    def our_loss(ctx=autocast) -> torch.Tensor:
        with ctx():
            return ours(inputs, labels=targets) / n

    def core_loss(ctx=autocast) -> torch.Tensor:
        with ctx():
            return core(inputs, labels=targets, loss_reduction="sum").loss / n

    def fp32(fn):
        def loss() -> torch.Tensor:
            precision = torch.get_float32_matmul_precision()
            torch.set_float32_matmul_precision("highest")  # no TF32: the check is exact math
            try:
                return fn(contextlib.nullcontext)
            finally:
                torch.set_float32_matmul_precision(precision)

        return loss

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    bf16_diff = None
    if bf16:
        with torch.no_grad():
            bf16_diff = abs(our_loss().item() - core_loss().item())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _, fields = compare_steps(
        name,
        {"ours": our_loss, "olmo_core": core_loss},
        {"ours": ours, "olmo_core": core},
        n,
        (windows, steps_per_window, warmup),
        check={"ours": fp32(our_loss), "olmo_core": fp32(core_loss)},
        sync=sync,
    )
    rec = {
        "bench": "olmo_core",
        "config": name,
        "model": {"d_model": cfg.d_model, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads}
        | {"mlp_hidden": cfg.hidden_size, "params": ours.num_params(), "vocab": VOCAB},
        "batch": [batch, length - 1],
        "tokens_per_step": n,
        "precision": "bf16 autocast" if bf16 else "fp32",
        **fields,
        "optimizer": "torch AdamW fused (same for both), clip 1.0",
        "goal_ratio": GOAL,
    }
    if bf16_diff is not None:
        rec["bf16_initial_loss_diff"] = bf16_diff
    if device.type == "cuda":
        rec["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return rec


def _olmo_core_version() -> dict:
    import olmo_core.version

    return {"olmo_core": olmo_core.version.VERSION}


def main() -> None:
    comparison_main(
        __doc__.splitlines()[0],
        CONFIGS,
        "olmo2-30m",
        bench_config,
        "OLMo-core",
        "olmo_core",
        "olmo2-30m",
        _olmo_core_version,
        device_flags=True,
    )


if __name__ == "__main__":
    main()
