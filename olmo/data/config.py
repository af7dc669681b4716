"""The `data:` config section."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from olmo.errors import OlmoError

if TYPE_CHECKING:  # keep `import olmo.config` light: numpy/tokenizers load on build only
    from olmo.data.dataset import ConcatInstances, TokenDataset
    from olmo.tokenizer import OlmoTokenizer

BUNDLED = "bundled"


@dataclass
class SourceConfig:
    """One source of a data mixture."""

    name: str = ""
    """Name logged in `source_counts` and shown by `olmo data inspect`."""
    paths: list[str] = field(default_factory=list)
    """Prepared token directories of this source ("bundled" allowed), read in this order."""
    weight: float = 1.0
    """Share of every block of the global order drawn from this source (weights are
    normalised; resolution 1/1024)."""


@dataclass
class DataConfig:
    """Token data, tokenizer and sequence length."""

    paths: list[str] = field(default_factory=lambda: [BUNDLED])
    """Prepared token directories (outputs of `olmo prepare-data`), read in this order.
    "bundled" = the bundled pydocs corpus, tokenized on first use into
    `$OLMO_CACHE/data` (default `~/.cache/olmo-hpc/data`)."""
    tokenizer: str = "olmo"
    """Tokenizer: "olmo" (the bundled OLMo-1/7B tokenizer) or a tokenizers JSON file; must be
    the one the directories in `paths` were prepared with."""
    seq_len: int = 2048
    """Tokens per training instance; the token stream is cut into instances of this length."""
    num_workers: int = 0
    """Background threads assembling upcoming batches; 0 = in the main thread. Batches are
    identical either way."""
    prefetch_batches: int = 2
    """Batches assembled ahead of the training step when num_workers > 0."""
    sources: list[SourceConfig] | None = None
    """A weighted mixture instead of `paths`: `[{name, paths, weight}, ...]`. Each global batch
    is drawn by weight, deterministically from (train.seed, data position), whatever the number
    of ranks; every source cycles through its own shuffled epochs."""

    def validate(self) -> None:
        """OlmoError naming the key for values that cannot work."""
        if not self.paths or not all(isinstance(p, str) and p for p in self.paths):
            raise OlmoError(f"data.paths={self.paths!r}: give prepared token dirs or 'bundled'")
        if self.sources is not None:
            self._validate_sources()
        if self.seq_len < 2:
            raise OlmoError(f"data.seq_len={self.seq_len}: must be >= 2 (inputs + next token)")
        if self.num_workers < 0:
            raise OlmoError(f"data.num_workers={self.num_workers}: must be >= 0")
        if self.prefetch_batches < 1:
            raise OlmoError(f"data.prefetch_batches={self.prefetch_batches}: must be >= 1")
        if not self.tokenizer:
            raise OlmoError("data.tokenizer is empty: use 'olmo' or a tokenizers JSON path")

    def _validate_sources(self) -> None:
        if self.paths != [BUNDLED]:
            raise OlmoError("data.paths and data.sources are both set: give one of them")
        if not self.sources:
            raise OlmoError("data.sources is empty: give [{name, paths, weight}, ...] or drop it")
        names = [s.name for s in self.sources]
        for i, src in enumerate(self.sources):
            if not src.name or src.name in names[:i]:
                raise OlmoError(f"data.sources[{i}].name={src.name!r}: give each a unique name")
            if not src.paths or not all(isinstance(p, str) and p for p in src.paths):
                raise OlmoError(f"data.sources[{i}].paths={src.paths!r}: give prepared token dirs")
            if not src.weight > 0:
                raise OlmoError(f"data.sources[{i}].weight={src.weight}: must be > 0")

    def build_tokenizer(self) -> OlmoTokenizer:
        from olmo.tokenizer import load_tokenizer

        return load_tokenizer(self.tokenizer)

    def resolve_paths(self, paths: list[str] | None = None) -> list[Path]:
        """`paths` (default: data.paths) with "bundled" replaced by its (prepared-on-first-use)
        cache dir."""
        from olmo.data.prepare import prepare_bundled

        paths = self.paths if paths is None else paths
        return [prepare_bundled(self.tokenizer) if p == BUNDLED else Path(p) for p in paths]

    def build_dataset(
        self, tokenizer: OlmoTokenizer | None = None
    ) -> TokenDataset | ConcatInstances:
        """The instances of `paths`; of every source in turn for a mixture (ConcatInstances)."""
        from olmo.data.dataset import ConcatInstances, TokenDataset

        self.validate()
        tok = tokenizer or self.build_tokenizer()
        if self.sources is None:
            return TokenDataset(self.resolve_paths(), self.seq_len, tok)
        parts = [TokenDataset(self.resolve_paths(s.paths), self.seq_len, tok) for s in self.sources]
        return ConcatInstances(parts)
