"""Launching on SLURM: cluster profiles, sbatch rendering, submitit, restart policy, pre-flight."""
