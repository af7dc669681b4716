"""Observability: the wandb logger callback and `olmo report` (plots + summary of a run dir)."""
