"""Training step: our OLMo 2 model vs OLMo-core's (`ai2-olmo-core`), same process, same batch.

OLMo-core's `TransformerConfig.olmo2_*` model is built, its weights are copied into our
`block: olmo2` model (q/k/v fused, SwiGLU [up; gate] fused) and both are checked to give the
same loss before timing. A step is forward + loss + backward + clipping + AdamW step with the
same optimizer on both sides (olmo.train.optim.build_optimizer: fused AdamW, our default).
Ours: `model(inputs, labels=targets)` (fused chunked head + CE); OLMo-core: its own
`model(inputs, labels=targets, loss_reduction="sum")`. Interleaved windows after warm-up.

    python bench/bench_olmo_core.py [--configs olmo2-30m] [--windows 7] [--threads 2]

Results are appended to bench/results/olmo_core.jsonl. Needs `pip install ai2-olmo-core` with
torch pinned (a constraints file with torch==2.13.0).
"""

from __future__ import annotations

import torch
from common import compare_steps, comparison_main
from olmo_core.nn.transformer import TransformerConfig

from olmo.model import ModelConfig, build_model

GOAL = 1.0
VOCAB = 50304
# name → (OLMo-core config factory, batch instances, instance length)
CONFIGS = {
    "olmo2-30m": (TransformerConfig.olmo2_30M, 16, 128),
    "olmo2-190m": (TransformerConfig.olmo2_190M, 4, 256),
}


def _our_config(core) -> ModelConfig:
    block = core.block
    return ModelConfig(
        d_model=core.d_model,
        n_layers=core.n_layers,
        n_heads=block.sequence_mixer.n_heads,
        mlp_hidden_size=block.feed_forward.hidden_size,
        vocab_size=core.vocab_size,
        max_seq_len=512,
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


def bench_config(name: str, windows: int, steps_per_window: int, warmup: int) -> dict:
    factory, batch, length = CONFIGS[name]
    core_cfg = factory(vocab_size=VOCAB)
    core = core_cfg.build(init_device="cpu")
    core.init_weights(device=torch.device("cpu"))
    core.train()
    cfg = _our_config(core_cfg)
    ours = build_model(cfg, seed=0).train()
    _copy_weights(core, ours)
    gen = torch.Generator().manual_seed(0)
    data = torch.randint(0, VOCAB, (batch, length), generator=gen)
    inputs, targets = data[:, :-1].contiguous(), data[:, 1:].contiguous()
    n = targets.numel()

    def our_loss() -> torch.Tensor:
        return ours(inputs, labels=targets) / n

    def core_loss() -> torch.Tensor:
        return core(inputs, labels=targets, loss_reduction="sum").loss / n

    _, fields = compare_steps(
        name,
        {"ours": our_loss, "olmo_core": core_loss},
        {"ours": ours, "olmo_core": core},
        n,
        (windows, steps_per_window, warmup),
    )
    return {
        "bench": "olmo_core",
        "config": name,
        "model": {"d_model": cfg.d_model, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads}
        | {"mlp_hidden": cfg.hidden_size, "params": ours.num_params(), "vocab": VOCAB},
        "batch": [batch, length - 1],
        "tokens_per_step": n,
        **fields,
        "optimizer": "torch AdamW fused (same for both), clip 1.0",
        "goal_ratio": GOAL,
    }


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
    )


if __name__ == "__main__":
    main()
