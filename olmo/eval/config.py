"""Config of in-loop downstream evaluation (`eval:` section)."""

from __future__ import annotations

from dataclasses import dataclass, field

from olmo.errors import OlmoError
from olmo.eval.tasks import MODES, TASKS


@dataclass
class DownstreamEvalConfig:
    interval: int = 0
    """Run the downstream tasks every N steps (and at the last step); 0 = never in the loop."""
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    """Tasks to run (zero-shot rank classification, the OLMo paper's tasks)."""
    limit: int | None = 100
    """Documents per task (the bundled subset has 100); None = all available."""
    batch_size: int = 16
    """Requests (choices) per forward pass on each rank."""
    data_dir: str | None = None
    """Directory with <task>.jsonl.gz files; None = the subset bundled with the package."""
    normalization: str = "paper"
    """Score normalization per task: `paper` (the OLMo paper's §4.1) or `oe-eval` (ai2-olmo's
    rc_0shot evaluators, as OLMo's later reports); the table is in olmo/eval/tasks.py."""

    def validate(self) -> None:
        for t in self.tasks:
            if t not in TASKS:
                raise OlmoError(f"eval.tasks: unknown task '{t}'; choose from {', '.join(TASKS)}")
        if self.normalization not in MODES:
            raise OlmoError(
                f"eval.normalization: '{self.normalization}' is not one of {', '.join(MODES)}"
            )
        if self.interval < 0 or self.batch_size <= 0:
            raise OlmoError("eval.interval must be ≥ 0 and eval.batch_size > 0")
        if self.limit is not None and self.limit < 1:
            raise OlmoError(f"eval.limit must be ≥ 1 (or null for all documents), got {self.limit}")
