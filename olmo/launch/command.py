"""The command line every launcher runs per task: container wrapper + python -m olmo."""

from __future__ import annotations

import dataclasses
import shlex

from olmo.launch.profile import Profile


def container_prefix(prof: Profile) -> list[str]:
    """`apptainer exec --rocm -B ... IMAGE` (or nothing when the trainer runs on the host).

    Values stay unexpanded ($PWD, $SCRATCH): the batch shell expands them on the node.
    """
    c = prof.container
    if c.runtime == "none":
        return []
    cmd = [c.runtime, "exec"]
    if c.gpu_flag:
        cmd.append(c.gpu_flag)
    if c.binds:
        cmd += ["-B", ",".join(c.binds)]
    assert c.image is not None  # checked when the profile loads
    return [*cmd, c.image]


def olmo_command(prof: Profile) -> list[str]:
    return [*container_prefix(prof), prof.python, "-m", "olmo"]


def energy_overrides(prof: Profile) -> list[str]:
    """The site's energy facts as train overrides (only once the config has an energy section)."""
    from olmo.config.schema import Config

    if "energy" not in {f.name for f in dataclasses.fields(Config)}:
        return []
    e = prof.energy
    return [
        f"--energy.pue={e.pue}",
        f"--energy.carbon_intensity_g_per_kwh={e.carbon_intensity_g_per_kwh}",
    ]


def shell_word(word: str) -> str:
    """Quote for bash but keep $VARS expandable: double quotes when the word uses a variable."""
    if "$" in word and not any(ch in word for ch in '"`\\'):
        return f'"{word}"'
    if "," in word and "'" not in word:  # a bare comma reads like a mistyped array separator
        return f"'{word}'"
    return shlex.quote(word)


def shell_join(words: list[str]) -> str:
    return " ".join(shell_word(w) for w in words)
