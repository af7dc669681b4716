"""The OLMo paper's zero-shot downstream tasks: where their data lives and how answers are ranked.

Each task is a list of multiple-choice documents; every choice is a (context, continuation) pair
scored by the model's log-likelihood of the continuation, normalized per task. Two tables of
normalizations ("modes"): `paper`, the OLMo paper's §4.1, and `oe-eval`, what ai2-olmo 0.6.0's
`<task>_rc_0shot` evaluators (OEEvalTask + ICLMetric) use, the numbers OLMo's later reports give.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from olmo.errors import OlmoError

MODES = ("paper", "oe-eval")
"""`olmo eval --normalization` / `eval.normalization`."""

# task → normalization in each mode: paper (OLMo paper §4.1; COPA is not listed there: none),
# oe-eval (ai2-olmo 0.6.0 label_to_task_map["<task>_rc_0shot"].metric_type). none: log p(cont |
# context); per_token: ÷ its tokens; per_char: ÷ its characters after the leading space
# (ICLMetric's len_norm); unconditional: − log p(cont | "Answer:"). See downstream.py.
TASKS: dict[str, dict[str, str]] = {
    "arc_easy": {"paper": "unconditional", "oe-eval": "none"},
    "arc_challenge": {"paper": "unconditional", "oe-eval": "per_char"},
    "boolq": {"paper": "none", "oe-eval": "none"},
    "copa": {"paper": "none", "oe-eval": "none"},
    "hellaswag": {"paper": "per_token", "oe-eval": "per_char"},
    "openbookqa": {"paper": "unconditional", "oe-eval": "per_char"},
    "piqa": {"paper": "per_token", "oe-eval": "per_char"},
    "sciq": {"paper": "none", "oe-eval": "none"},
    "winogrande": {"paper": "per_token", "oe-eval": "none"},
}


def normalization(task: str, mode: str) -> str:
    """The normalization `task` uses in `mode` (one of MODES)."""
    if mode not in MODES:
        raise OlmoError(f"unknown normalization mode '{mode}'; choose from {', '.join(MODES)}")
    return TASKS[task][mode]


@dataclass(frozen=True)
class Choice:
    context: str
    continuation: str
    uncond_context: str | None = None
    """Context of the wheel's unconditional request for this continuation ("Answer:"), if any."""


@dataclass(frozen=True)
class Doc:
    """One question: its choices and the index of the right one."""

    id: int
    gold: int
    choices: tuple[Choice, ...]


def bundled_dir() -> Path:
    return Path(str(resources.files("olmo.eval") / "data"))


def parse_doc(rec: dict, where: str) -> Doc:
    """Validate one stored record (as written by build_subset)."""
    try:
        choices = tuple(
            Choice(c["context"], c["continuation"], c.get("uncond_context")) for c in rec["choices"]
        )
        doc = Doc(int(rec["id"]), int(rec["gold"]), choices)
    except (KeyError, TypeError, ValueError) as e:
        raise OlmoError(f"{where}: malformed task record ({e}); rebuild the task data") from None
    if len(choices) < 2 or not 0 <= doc.gold < len(choices):
        raise OlmoError(f"{where}: needs ≥2 choices and a gold index within them")
    if not all(isinstance(c.context, str) and isinstance(c.continuation, str) for c in choices):
        raise OlmoError(f"{where}: choices need string context and continuation; rebuild the data")
    if any(not c.continuation for c in choices):
        raise OlmoError(f"{where}: empty continuation; rebuild the task data")
    if not all(c.uncond_context is None or isinstance(c.uncond_context, str) for c in choices):
        raise OlmoError(f"{where}: uncond_context must be a string; rebuild the task data")
    return doc


def load_task(name: str, data_dir: str | Path | None = None, limit: int | None = None) -> list[Doc]:
    """Docs of a task from the bundled subset (or `data_dir/<task>.jsonl.gz`)."""
    if name not in TASKS:
        raise OlmoError(f"unknown task '{name}'; choose from {', '.join(TASKS)}")
    path = Path(data_dir or bundled_dir()) / f"{name}.jsonl.gz"
    if not path.is_file():
        raise OlmoError(f"{path}: task data not found; run python -m olmo.eval.build_subset")
    docs = []
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                docs.append(parse_doc(json.loads(line), f"{path}:{lineno}"))
                if limit is not None and len(docs) >= limit:
                    break
    except (OSError, EOFError, ValueError, RecursionError) as e:  # ValueError: bad UTF-8/JSON
        raise OlmoError(f"{path}: unreadable ({type(e).__name__}); rebuild the task data") from None
    return docs
