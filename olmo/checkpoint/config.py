"""When and how checkpoints are written and found."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CheckpointConfig:
    interval: int = 1000
    """Save every N optimizer steps; 0 = only at the end and on signals."""
    interval_minutes: float = 0.0
    """Also save when this many minutes passed since the last save; 0 = off."""
    keep_last: int = 3
    """Committed checkpoints to keep (older ones are deleted after a newer one commits)."""
    async_save: bool = False
    """Write in the background (on its own process group) and keep training; the next save,
    a signal exit and the end of training wait for it and commit it. The time training was
    blocked is logged and stored in the marker (`blocking_s`)."""
    load: str = "auto"
    """'auto' = resume from the newest valid checkpoint of the run dir (start fresh if none);
    'none' = always start fresh; or a path (a checkpoint dir, or a run dir: its newest) that seeds
    a run dir without checkpoints of its own (once it has some, they win, so requeues continue)."""
    save_final: bool = True
    """Write a checkpoint after the last step."""
