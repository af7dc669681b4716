"""The bundled demo corpus: CPython's own documentation, so the tiny demo needs no network."""

from __future__ import annotations

from pathlib import Path


def bundled_corpus_path() -> Path:
    """Path of `pydocs.jsonl.gz` (Dolma-style JSONL: `{"id", "text"}` per line)."""
    return Path(__file__).with_name("pydocs.jsonl.gz")
