"""Words for generated shell scripts: literal by default, `$VAR` expansion only where asked.

Every value a user or a shared profile gives may come from someone else; in a batch script it
must never run code. User values (run dir, config path, job name, train overrides) are quoted
literally; profile env values, binds, the image path and host library dirs may use `$VAR` /
`${VAR}` (e.g. `$PWD`, `$HOME/olmo.sif`, `$SLURM_JOB_ID`) and nothing else. A profile's `setup:`
lines are raw shell by design (the site's own commands) and are not checked here.
"""

from __future__ import annotations

import re
import shlex

from olmo.errors import OlmoError


class Expand(str):
    """A word the batch shell may expand: `$VAR` / `${VAR}` only (profile env values, binds, the
    image path, host library dirs, and the script's own `$SLURM_*` words). Every other word is
    taken literally."""


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BAD_EXPANSION = re.compile(r"\$(?![A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})|[`\"\\]")


def check_literal(value: str, what: str) -> str:
    """No newline, NUL or other control character: each would break out of a script line."""
    if _CONTROL.search(value):
        raise OlmoError(
            f"{what} {value!r} contains a control character (newline, NUL, ...): refused"
        )
    return value


def check_expandable(value: str, what: str) -> str:
    """`$VAR` and `${VAR}` may expand on the node; `$(...)`, backticks, quotes and backslashes
    would run or break out, so they are refused."""
    check_literal(value, what)
    if _BAD_EXPANSION.search(value):
        raise OlmoError(
            f"{what} {value!r}: only $VAR or ${{VAR}} may be expanded here "
            "(no $(...), backticks, quotes or backslashes)"
        )
    return value


def shell_word(word: str) -> str:
    """Quote for bash: an Expand word in double quotes (its $VARS expand), anything else
    literally (single quotes where needed)."""
    if isinstance(word, Expand) and "$" in word:
        return f'"{check_expandable(word, "value")}"'
    check_literal(word, "value")
    if "," in word and "'" not in word:  # a bare comma reads like a mistyped array separator
        return f"'{word}'"
    return shlex.quote(word)


def shell_join(words: list[str]) -> str:
    return " ".join(shell_word(w) for w in words)
