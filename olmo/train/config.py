"""Optimizer, schedule and trainer settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from olmo.errors import OlmoError
from olmo.train.spike import SpikeConfig
from olmo.train.straggler import StragglerConfig


@dataclass
class OptimConfig:
    name: Literal["adamw", "sgd"] = "adamw"
    """The optimizer. Switching on resume (allow it with train.allow_change=optim.name) loads
    the model and data position and starts the new optimizer's state fresh (see README)."""
    momentum: float = 0.9
    """SGD momentum (0 = plain SGD, which keeps no state); unused by AdamW."""
    lr: float = 4.0e-4
    """Peak learning rate."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    """AdamW betas (OLMo: 0.9, 0.95)."""
    eps: float = 1.0e-5
    """AdamW epsilon."""
    weight_decay: float = 0.1
    """Decoupled weight decay on every parameter except the token embedding (see
    decay_embeddings): the weight matrices, the output head when untied, and the norm weights of
    `block: olmo2` (OLMo 2's configs: decay_norm_and_bias true; OLMo-core: only embeddings.weight
    is exempt)."""
    decay_embeddings: bool = False
    """Decay the token embedding too (a tied output head is the same tensor). Off as in OLMo 2 and
    OLMo-core: decaying it shrinks the embedding norm and made gradient spikes more frequent
    (OLMo 2 paper §3.4.2)."""
    grad_clip: float = 1.0
    """Clip the global L2 norm of the gradients to this; 0 disables clipping."""
    fused: bool = True
    """Fused AdamW kernel (CPU, CUDA, ROCm): one pass over the state, and it skips a non-finite
    step on the device, so the loop never waits for the gradient norm. False = foreach AdamW."""


@dataclass
class SchedulerConfig:
    decay: Literal["linear", "cosine", "inv_sqrt", "constant", "wsd", "anneal"] = "linear"
    """Shape of the decay after warm-up. `wsd`: warm-up, stable at the peak, then a linear decay
    to the floor over the last decay_steps before train.max_steps. `anneal` (with
    checkpoint.load): from the checkpoint's last LR linearly to 0 at train.max_steps, no
    warm-up."""
    warmup_steps: int = 5000
    """Linear warm-up from 0 to the peak LR over this many steps."""
    decay_steps: int | None = None
    """Steps of decay after warm-up; None = until train.max_steps. For `wsd` (required): the
    length of the final decay, which ends at train.max_steps."""
    final_lr_ratio: float = 0.1
    """The LR floor as a fraction of the peak (OLMo: 0.1)."""


@dataclass
class TrainerConfig:
    seed: int = 0
    """Seed of the weight init and of the data order (with the epoch)."""
    max_steps: int = 1000
    """Optimizer steps to train for."""
    global_batch_size: int = 512
    """Instances (sequences) per optimizer step, summed over all ranks."""
    global_batch_tokens: int | None = None
    """Alternative to global_batch_size, in tokens; must be a multiple of data.seq_len."""
    batch_size_schedule: list[list[int]] | None = None
    """Batch-size warm-up: `[[TOKENS, GLOBAL_BATCH], ...]`, thresholds on tokens_seen ascending
    from 0; each batch (instances) a multiple of micro_batch_size × ranks, the last equal to
    global_batch_size. The learning rate is unchanged on a change (it follows the step)."""
    micro_batch_size: int = 4
    """Instances per forward/backward on one rank; gradients accumulate to the global batch."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """auto = bf16 compute with fp32 master weights on accelerators, fp32 on CPU."""
    log_interval: int = 1
    """Fetch loss/grad-norm from the device every N steps (each fetch is a host sync)."""
    eval_interval: int = 0
    """Held-out perplexity every N steps; 0 = only at the end (if eval data exists)."""
    eval_holdout_instances: int = 0
    """Hold out the last N instances of the data for evaluation (never trained on)."""
    eval_batches: int = 8
    """Held-out global batches (of global_batch_size instances) scored per evaluation."""
    max_nonfinite_steps: int = 5
    """Stop with an error after this many consecutive steps with a non-finite loss (each skipped)."""
    watchdog_timeout_s: float = 0.0
    """Dump every thread's stack and exit if no step completes in this time; 0 = off."""
    walltime_margin_s: float = 300.0
    """Under SLURM, checkpoint and exit for requeue this long before the job's end time."""
    progress: Literal["auto", "bar", "lines"] = "auto"
    """Console output: a progress bar on a TTY, plain log lines otherwise (SLURM logs)."""
    z_loss: float = 0.0
    """z-loss coefficient: adds z_loss · mean(logsumexp(logits)²) to the differentiated loss
    (OLMo 2: 1e-5); logged apart as `z_loss`, `loss` stays the cross-entropy. 0 = off."""
    spike: SpikeConfig = field(default_factory=SpikeConfig)
    """Loss-spike detection and response (log, skip the update, roll back)."""
    straggler: StragglerConfig = field(default_factory=StragglerConfig)
    """Slow-node detection from each rank's step time."""
    allow_change: list[str] | str = field(default_factory=list)
    """Keys (or sections: `optim`) that may differ from the resumed checkpoint's config in keys
    that change the numbers; `--train.allow_change=optim.lr,optim.name`. Each change is recorded
    as a `config_change` logbook event."""

    def batch_instances(self, seq_len: int) -> int:
        if self.global_batch_tokens is None:
            return self.global_batch_size
        if self.global_batch_tokens % seq_len:
            raise OlmoError(
                f"train.global_batch_tokens ({self.global_batch_tokens}) must be a multiple of data.seq_len ({seq_len})"
            )
        return self.global_batch_tokens // seq_len
