"""The root training config: one section per component, loaded from YAML + overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olmo.checkpoint.config import CheckpointConfig
from olmo.config.loader import deep_merge, from_dict, parse_overrides, read_yaml, to_dict
from olmo.data.config import DataConfig
from olmo.distributed.config import DistributedConfig
from olmo.energy.config import EnergyConfig
from olmo.errors import OlmoError
from olmo.eval.config import DownstreamEvalConfig
from olmo.model.config import ModelConfig
from olmo.observe.config import WandbConfig
from olmo.train.config import OptimConfig, SchedulerConfig, TrainerConfig


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    """Architecture (or a preset name under model.preset)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Token data, tokenizer and sequence length."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """AdamW settings and gradient clipping."""
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    """Learning-rate warm-up and decay."""
    train: TrainerConfig = field(default_factory=TrainerConfig)
    """Steps, batch sizes, precision, logging, fault-tolerance knobs."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoint cadence, retention and resume."""
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    """Process group, FSDP, activation checkpointing, compile."""
    eval: DownstreamEvalConfig = field(default_factory=DownstreamEvalConfig)
    """In-loop downstream evaluation (zero-shot OLMo tasks)."""
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    """Energy/power measurement: backend, sampling interval, PUE and grid carbon intensity."""
    wandb: WandbConfig = field(default_factory=WandbConfig)
    """Weights & Biases logging (online, offline or disabled; resumed across requeues)."""

    def resolve(self) -> Config:
        """Apply presets and derived values, then validate: the saved config is this one."""
        self.model = self.model.resolved()
        self.model.validate()
        self.data.validate()
        self.eval.validate()
        self.energy.validate()
        if self.data.seq_len > self.model.max_seq_len:
            raise OlmoError(
                f"data.seq_len ({self.data.seq_len}) > model.max_seq_len ({self.model.max_seq_len}); lower one or raise the other"
            )
        self.train.global_batch_size = self.train.batch_instances(self.data.seq_len)
        self.train.global_batch_tokens = None
        for key in ("max_steps", "global_batch_size", "micro_batch_size", "log_interval"):
            if getattr(self.train, key) <= 0:
                raise OlmoError(f"train.{key} must be positive, got {getattr(self.train, key)}")
        if self.train.z_loss < 0:
            raise OlmoError(f"train.z_loss must be >= 0, got {self.train.z_loss}")
        self.train.spike.validate()
        self.train.straggler.validate()
        if self.train.seed < 0:  # numpy's generators take no negative seed
            raise OlmoError(f"train.seed must be >= 0, got {self.train.seed}")
        if self.optim.lr <= 0 or len(self.optim.betas) != 2:
            raise OlmoError("optim.lr must be > 0 and optim.betas must hold two numbers")
        if self.optim.momentum < 0:
            raise OlmoError(f"optim.momentum must be >= 0, got {self.optim.momentum}")
        self._check_wsd()
        self._check_allow_change()
        return self

    def _check_allow_change(self) -> None:
        """Each train.allow_change name is a key or a section: a typo would allow nothing."""
        allow = self.train.allow_change
        names = [n.strip() for n in (allow.split(",") if isinstance(allow, str) else allow)]
        keys: set[str] = set()
        for key in _dotted_keys(config_to_dict(self)):
            parts = key.split(".")
            keys.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        for name in names:
            if name and name not in keys:
                raise OlmoError(
                    f"train.allow_change: '{name}' is not a config key or section; name keys "
                    "as the refusal lists them (e.g. optim.lr)"
                )

    def _check_wsd(self) -> None:
        sched = self.scheduler
        if sched.decay != "wsd":
            return
        room = self.train.max_steps - sched.warmup_steps
        if sched.decay_steps is None or not 0 < sched.decay_steps <= room:
            raise OlmoError(
                f"scheduler.decay=wsd needs scheduler.decay_steps in 1..{room} (max_steps - "
                f"warmup_steps), got {sched.decay_steps}"
            )


def _dotted_keys(d: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.extend(_dotted_keys(v, f"{prefix}{k}."))
        else:
            out.append(f"{prefix}{k}")
    return out


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """YAML file (optional) + dotted overrides → validated Config."""
    data: dict[str, Any] = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "config"
    if overrides:
        data = deep_merge(data, parse_overrides(overrides))
        source += " + overrides"
    return from_dict(Config, data, "", source).resolve()


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return to_dict(cfg)
