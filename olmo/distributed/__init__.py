"""Process groups from torchrun or srun, and FSDP2 parallelization applied from outside."""
