"""Training step: our Transformer vs transformers' OlmoForCausalLM, same process, same batch.

Both models hold the same weights (ours → HF through olmo.model.hf) and are checked to give the
same loss before timing. A step is forward + loss + backward + global-norm clipping + AdamW
step; both sides use the loop's step (olmo.train.step: fused AdamW, our default and transformers'
Trainer default) so the ratio measures the model and loss code. Ours uses its default fast path
(`model(inputs, labels=targets)`: fused chunked head + cross-entropy); HF computes its own loss
(`labels=..., shift_labels=targets`: full fp32 logits + F.cross_entropy). After warm-up the
two alternate in windows; reported: median tokens/s of each and the median per-window ratio.
Profiled steps then give the share of GEMMs and attention in each step: `ratio_ceiling` = the
ratio × our step / our GEMM + attention time, the ratio if all our other work took no time.

    python bench/bench_model_vs_hf.py [--configs tiny,100m] [--windows 7] [--threads 2]

Results are appended to bench/results/model_vs_hf.jsonl (device, torch, commit, load average).
"""

from __future__ import annotations

import torch
from common import compare_steps, comparison_main, gemm_seconds
from transformers import OlmoForCausalLM

from olmo.model import ModelConfig, build_model
from olmo.model.config import PRESETS
from olmo.model.hf import state_dict_to_hf, to_hf_config

GOAL = 1.3
# name → (model config, batch instances, instance length); inputs are length - 1 tokens.
CONFIGS: dict[str, tuple[ModelConfig, int, int]] = {
    "tiny": (PRESETS["tiny"], 16, 128),
    "100m": (
        ModelConfig(d_model=768, n_layers=12, n_heads=12, max_seq_len=256, weight_tying=True),
        4,
        256,
    ),
}


def bench_config(name: str, windows: int, steps_per_window: int, warmup: int) -> dict:
    cfg, batch, length = CONFIGS[name]
    ours = build_model(cfg, seed=0).train()
    hf = OlmoForCausalLM(to_hf_config(cfg)).train()
    missing, unexpected = hf.load_state_dict(state_dict_to_hf(ours), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    data = torch.randint(
        0, cfg.vocab_size, (batch, length), generator=torch.Generator().manual_seed(0)
    )
    inputs, targets = data[:, :-1].contiguous(), data[:, 1:].contiguous()
    n_tokens = targets.numel()

    def our_loss() -> torch.Tensor:
        return ours(inputs, labels=targets) / n_tokens

    def hf_loss() -> torch.Tensor:
        return hf(input_ids=inputs, labels=targets, shift_labels=targets).loss

    steps, fields = compare_steps(
        name,
        {"ours": our_loss, "hf": hf_loss},
        {"ours": ours, "hf": hf},
        n_tokens,
        (windows, steps_per_window, warmup),
    )
    profiled = {k: gemm_seconds(fn) for k, fn in steps.items()}
    mine = profiled["ours"]
    # the ratio if every non-GEMM, non-attention second of our step vanished
    ceiling = fields["ratio"] * mine["step"] / (mine["gemm"] + mine["attention"])
    return {
        "bench": "model_vs_hf",
        "config": name,
        "model": {k: getattr(cfg, k) for k in ("d_model", "n_layers", "n_heads", "weight_tying")}
        | {"params": cfg.num_params(), "vocab": cfg.padded_vocab_size},
        "batch": [batch, length - 1],
        "tokens_per_step": n_tokens,
        **fields,
        "profiled_step_s": {k: {n: round(t, 3) for n, t in v.items()} for k, v in profiled.items()},
        # the best ratio reachable with our GEMMs and attention and zero other cost
        "ratio_ceiling": round(ceiling, 3),
        "hf_attn_implementation": hf.config._attn_implementation,
        "optimizer": "torch AdamW fused (our default, and transformers' for torch >= 2.8; same for both), clip 1.0",
        "goal_ratio": GOAL,
    }


def main() -> None:
    comparison_main(
        __doc__.splitlines()[0], CONFIGS, "tiny,100m", bench_config, "HF", "model_vs_hf", "tiny"
    )


if __name__ == "__main__":
    main()
