"""Model FLOPs utilization: FLOPs per token from the run's config, peak from a device table."""

from __future__ import annotations

import dataclasses
from typing import Any

from olmo.config.loader import from_dict
from olmo.model.config import ModelConfig

# Dense bf16 peak per device (per GCD for MI250X, which torch shows as two devices), FLOP/s.
PEAK_BF16_FLOPS = {
    "MI300X": 1307e12,
    "MI250X": 191.5e12,
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
}


def model_config(config: dict[str, Any], source: str = "config.yaml") -> ModelConfig | None:
    """The resolved ModelConfig saved in RUN_DIR/config.yaml (unknown keys ignored), with its
    keys type-checked and validated as `olmo train` does (errors name `source`)."""
    section = config.get("model")
    if not isinstance(section, dict):
        return None
    names = {f.name for f in dataclasses.fields(ModelConfig)} - {"preset"}
    known = {k: v for k, v in section.items() if k in names}
    cfg = from_dict(ModelConfig, known, "model.", source)
    cfg.validate()
    return cfg


def flops_per_token(model: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token: 6·N + 12·L·d·T (Kaplan/PaLM; forward + backward).

    N counts the weights that do matmuls: every block plus the output projection (the input
    embedding is a lookup, so it costs nothing even when tied to the head). The attention
    term 12·L·d·T covers QKᵀ and AV over a context of T = seq_len tokens.
    """
    n = model.num_params(include_embedding=False) + model.padded_vocab_size * model.d_model
    return 6.0 * n + 12.0 * model.n_layers * model.d_model * seq_len


def peak_flops(env: dict[str, Any]) -> tuple[float | None, str]:
    """(peak FLOP/s per device, device name) from env.json; None where no table entry (CPU)."""
    devices = env.get("devices") or []
    name = str(devices[0].get("name", "")) if devices and isinstance(devices[0], dict) else ""
    if devices and devices[0].get("type") == "cpu":
        return None, name or "cpu"
    key = table_key(name)
    return (PEAK_BF16_FLOPS[key], name) if key else (None, name or "unknown")


def table_key(device_name: str) -> str | None:
    """The PEAK_BF16_FLOPS entry a device name ('NVIDIA H100 80GB HBM3') matches, if any."""
    squashed = device_name.upper().replace(" ", "")
    return next((key for key in PEAK_BF16_FLOPS if key in squashed), None)


def mfu(tokens_per_s: float, fpt: float, world_size: int, peak: float | None) -> float | None:
    """Fraction of the devices' bf16 peak achieved (tokens_per_s is the global rate)."""
    if peak is None or world_size <= 0:
        return None
    return tokens_per_s * fpt / (world_size * peak)
