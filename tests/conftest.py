"""Suite-wide settings."""

import os

# Training runs in tests are not about wandb (tests/observe sets its own mode and environment):
# skip its few seconds of start-up in every `olmo train` subprocess.
os.environ.setdefault("WANDB_MODE", "disabled")
