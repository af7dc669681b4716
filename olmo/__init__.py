"""olmo-hpc: train OLMo-style language models on SLURM clusters."""

__version__ = "0.1.0"
