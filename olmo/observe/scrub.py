"""Remove secrets (API keys, tokens, passwords) from anything we hand to wandb or write down."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "<redacted>"
# Whole words of a key name that mark it secret: WANDB_API_KEY, HF_TOKEN, db.password, apiKey.
# Word-wise so that `tokens_seen`, `tokenizer` or `global_batch_tokens` stay visible.
_SECRET_WORDS = {"key", "apikey", "token", "secret", "password", "passwd", "credential",
                 "credentials", "auth", "pat"}  # fmt: skip
_MIN_SECRET_LEN = 8  # shorter values (e.g. "1") would redact innocent text


def is_secret_key(name: str) -> bool:
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name)).lower()
    return any(w in _SECRET_WORDS for w in re.split(r"[^a-z0-9]+", words))


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of secret-named environment variables (to catch them wherever they turn up)."""
    env = os.environ if environ is None else environ
    vals = {v for k, v in env.items() if is_secret_key(k) and len(v) >= _MIN_SECRET_LEN}
    return sorted(vals, key=len, reverse=True)


def scrub(obj: Any, secrets: list[str] | None = None) -> Any:
    """A copy of a JSON-like object with secret-named keys and known secret values redacted."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(obj, Mapping):
        return {
            k: REDACTED if is_secret_key(k) and v is not None else scrub(v, secrets)
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [scrub(v, secrets) for v in obj]
    if isinstance(obj, str):
        for s in secrets:
            obj = obj.replace(s, REDACTED)
    return obj
