"""Facts read from SLURM's formats (a leaf module: imports nothing from the kit but its errors)."""

from __future__ import annotations

import re

from olmo.errors import OlmoError

# sbatch --time formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS (sbatch(1)).
_WALLTIME = re.compile(r"(?:(\d+)-(\d+)(?::(\d+)(?::(\d+))?)?|(\d+)(?::(\d+)(?::(\d+))?)?)")
WALLTIME_FORMS = "MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"


def walltime_seconds(value: str, key: str = "slurm.time") -> int:
    """Seconds of a SLURM walltime; a clean error naming `key` for anything else."""
    m = _WALLTIME.fullmatch(str(value).strip())
    if not m:
        raise OlmoError(f"{key} '{value}' is not a SLURM time ({WALLTIME_FORMS})")
    d, dh, dm, ds, a, b, c = (int(g) if g else 0 for g in m.groups())
    if m.group(1) is not None:  # D-HH[:MM[:SS]]
        secs = d * 86400 + dh * 3600 + dm * 60 + ds
    elif m.group(7) is not None:  # HH:MM:SS
        secs = a * 3600 + b * 60 + c
    else:  # MM or MM:SS
        secs = a * 60 + b
    if secs <= 0:
        raise OlmoError(f"{key} '{value}' must be longer than zero")
    return secs


def walltime_minutes(value: str, key: str = "slurm.time") -> int:
    """Minutes, rounded up (what submitit's timeout_min takes)."""
    return -(-walltime_seconds(value, key) // 60)
