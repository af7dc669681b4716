"""Config of the wandb logger (`wandb:` section)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class WandbConfig:
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    """auto = $WANDB_MODE if set, else online when WANDB_API_KEY is set, else offline (sync later
    with `wandb sync`); auto also skips wandb quietly when the package is not installed."""
    project: str = "olmo-hpc"
    """wandb project."""
    entity: str | None = None
    """wandb entity (user or team); None = the API key's default entity."""
    group: str | None = None
    """Group runs together in the UI (e.g. an ablation); None = no group."""
    name: str | None = None
    """Display name; None = the run directory's name."""
    tags: list[str] = field(default_factory=list)
    """Tags attached to the run."""
    dir: str | None = None
    """Where wandb writes its local files (under DIR/wandb/); None = the run directory."""
