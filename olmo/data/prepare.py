"""`olmo prepare-data`: tokenize documents into `.npy` token shards plus `metadata.json`.

Inputs are Dolma-style JSON lines (`.jsonl`, `.jsonl.gz`, `.json.gz`; one object per line with a
`"text"` string) or `.txt` files (one document each); directories are searched recursively and their
files taken in sorted order. Every document gets EOS appended; the token stream is cut into shards
`part-00000.npy`, ... of `shard_tokens` tokens (the last one shorter). Everything is written into
`.OUTPUT.tmp-<host>-<pid>/` (olmo.fsutil.atomic_dir) and renamed to OUTPUT at the end, so a failed run leaves nothing behind
and concurrent runs preparing the same OUTPUT are safe (one rename wins).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path

import numpy as np
from tqdm import tqdm

from olmo.errors import OlmoError
from olmo.fsutil import atomic_dir
from olmo.inputs import at_least
from olmo.tokenizer import OlmoTokenizer, load_tokenizer

FORMAT = 1
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz")
SUFFIXES = (*JSONL_SUFFIXES, ".txt")
DOCS_PER_TASK = 256  # documents per tokenization task: big enough to amortize IPC
TASK_CHARS = 4_000_000  # ...but bounded in size so memory stays flat on huge documents


class OutputExistsError(OlmoError):
    """OUTPUT is already there (possibly just created by a concurrent run)."""


def token_dtype(tokenizer: OlmoTokenizer) -> np.dtype:
    """uint16 when every padded-vocabulary id fits, else uint32."""
    return np.dtype(np.uint16 if tokenizer.padded_vocab_size <= 2**16 else np.uint32)


# ---------------------------------------------------------------------------- reading inputs


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Input files in order: files as given, directories as their sorted supported files."""
    files: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and _supported(p))
        elif path.is_file():
            if not _supported(path):
                raise OlmoError(f"{path}: unsupported input type; use {', '.join(SUFFIXES)}")
            files.append(path)
        else:
            raise OlmoError(f"{path}: input path does not exist; check the path")
    if not files:
        shown = " ".join(str(i) for i in inputs) or "(none given)"
        raise OlmoError(f"{shown}: no input files ({', '.join(SUFFIXES)}) found")
    return files


def _supported(path: Path) -> bool:
    return path.name.endswith(SUFFIXES)


def read_documents(path: Path) -> Iterator[str]:
    """Texts of the documents in `path`; OlmoError with `path:line` on any bad input."""
    if path.name.endswith(".txt"):
        yield _decode(path.read_bytes(), path, None)
        return
    opener = gzip.open if path.name.endswith(".gz") else open
    lineno = 0
    try:
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                if raw.strip():
                    yield _parse_line(raw, path, lineno)
    except (OSError, EOFError, zlib.error) as e:
        raise OlmoError(f"{path}:{lineno + 1}: cannot read ({e}); re-create the file") from None


def _decode(raw: bytes, path: Path, lineno: int | None) -> str:
    """Strict UTF-8 decode, reporting the line of the first bad byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = lineno if lineno is not None else raw.count(b"\n", 0, e.start) + 1
        raise OlmoError(
            f"{path}:{line}: invalid UTF-8 ({e.reason} at byte {e.start}); re-encode the file "
            "as UTF-8"
        ) from None


def _parse_line(raw: bytes, path: Path, lineno: int) -> str:
    try:
        obj = json.loads(_decode(raw, path, lineno))
    except (ValueError, RecursionError) as e:  # also > 4300-digit integers, deep nesting
        why = e.msg if isinstance(e, json.JSONDecodeError) else str(e) or "nested too deeply"
        raise OlmoError(
            f"{path}:{lineno}: invalid JSON ({why}); each line must be one JSON object"
        ) from None
    text = obj.get("text") if isinstance(obj, dict) else None
    if not isinstance(text, str):
        got = "no object" if not isinstance(obj, dict) else f"text={type(text).__name__}"
        raise OlmoError(
            f'{path}:{lineno}: each line needs a "text" string ({got}); fix the line or drop it'
        )
    if b"\\u" in raw:  # only a \u escape can make a lone surrogate, which the tokenizer rejects
        _check_unicode(text, path, lineno)
    return text


def _check_unicode(text: str, path: Path, lineno: int) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise OlmoError(
            f'{path}:{lineno}: "text" holds a lone surrogate \\u{ord(text[e.start]):04x}, not '
            "valid Unicode; fix the escape or drop the line"
        ) from None


def _document_chunks(files: list[Path], skipped: list[int]) -> Iterator[list[str]]:
    """Non-empty documents grouped into tokenization tasks; counts empty texts in `skipped`."""
    chunk: list[str] = []
    chars = 0
    for text in chain.from_iterable(read_documents(f) for f in files):
        if not text:
            skipped[0] += 1
            continue
        chunk.append(text)
        chars += len(text)
        if len(chunk) >= DOCS_PER_TASK or chars >= TASK_CHARS:
            yield chunk
            chunk, chars = [], 0
    if chunk:
        yield chunk


# ---------------------------------------------------------------------------- tokenizing

_worker_tok: OlmoTokenizer | None = None


def _init_worker(name: str, eos_id: int, pad_id: int) -> None:
    global _worker_tok
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # processes already give the parallelism
    _worker_tok = load_tokenizer(name, eos_id, pad_id)


def _encode_in_worker(texts: list[str]) -> np.ndarray:
    assert _worker_tok is not None
    return encode_documents(_worker_tok, texts)


def encode_documents(tok: OlmoTokenizer, texts: list[str]) -> np.ndarray:
    """Token ids of `texts`, each followed by EOS, concatenated (uint32)."""
    ids = tok.encode_batch(texts)
    total = sum(len(x) for x in ids) + len(ids)
    stream = chain.from_iterable((*x, tok.eos_id) for x in ids)
    return np.fromiter(stream, dtype=np.uint32, count=total)


def _tokenized(
    chunks: Iterator[list[str]], tok: OlmoTokenizer, workers: int
) -> Iterator[tuple[np.ndarray, int]]:
    """(tokens, documents) per chunk, in input order whatever the number of workers."""
    if workers <= 1:
        for chunk in chunks:
            yield encode_documents(tok, chunk), len(chunk)
        return
    ctx = mp.get_context("spawn")  # fork is unsafe with threads (and segfaults on LUMI)
    initargs = (tok.name, tok.eos_id, tok.pad_id)
    with ctx.Pool(workers, initializer=_init_worker, initargs=initargs) as pool:
        pending: deque = deque()
        for chunk in chunks:  # bounded look-ahead keeps memory flat on big inputs
            pending.append((pool.apply_async(_encode_in_worker, (chunk,)), len(chunk)))
            if len(pending) >= 2 * workers:
                res, n = pending.popleft()
                yield res.get(), n
        while pending:
            res, n = pending.popleft()
            yield res.get(), n


# ---------------------------------------------------------------------------- writing


class TokenDirWriter:
    """Writes token shards + metadata into a temp dir; `commit()` renames it to `output`.

    Use as a context manager: an exception inside the block removes the temp dir.
    """

    def __init__(
        self,
        output: str | Path,
        tokenizer: OlmoTokenizer,
        shard_tokens: int = 2**26,
        overwrite: bool = False,
    ):
        if shard_tokens < 1:
            raise OlmoError(f"shard_tokens={shard_tokens}: must be >= 1")
        self.output = Path(output)
        self.tok = tokenizer
        self.shard_tokens = shard_tokens
        self.overwrite = overwrite
        self.dtype = token_dtype(tokenizer)
        _check_output(self.output, overwrite)
        self._dir = contextlib.ExitStack()
        try:
            self.tmp = self._dir.enter_context(atomic_dir(self.output, overwrite))
        except OSError as e:  # under a file, read-only, no permission
            raise OlmoError(
                f"{self.output}: cannot create the output ({e.strerror}); choose another --output"
            ) from None
        self.shards: list[dict] = []
        self.documents = 0
        self.tokens = 0
        self._pending: list[np.ndarray] = []
        self._pending_tokens = 0

    def __enter__(self) -> TokenDirWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def add(self, tokens: np.ndarray, documents: int = 0) -> None:
        """Append `tokens` (any integer dtype) to the stream; `documents` only feeds the count."""
        self._pending.append(tokens)
        self._pending_tokens += len(tokens)
        self.documents += documents
        if self._pending_tokens >= self.shard_tokens:
            stream = np.concatenate(self._pending)
            full = len(stream) // self.shard_tokens * self.shard_tokens
            for start in range(0, full, self.shard_tokens):
                self._write_shard(stream[start : start + self.shard_tokens])
            self._pending = [stream[full:]]
            self._pending_tokens = len(stream) - full

    def _write_shard(self, tokens: np.ndarray) -> None:
        max_id = int(tokens.max())
        if max_id >= self.tok.vocab_size:
            raise OlmoError(
                f"{self.output}: token id {max_id} >= vocab size {self.tok.vocab_size} of "
                f"tokenizer {self.tok.name!r}; the tokens do not belong to this tokenizer"
            )
        name = f"part-{len(self.shards):05d}.npy"
        np.save(self.tmp / name, tokens.astype(self.dtype, copy=False))
        sha = _sha256_file(self.tmp / name)
        self.shards.append({"file": name, "tokens": len(tokens), "max_id": max_id, "sha256": sha})
        self.tokens += len(tokens)

    def commit(self, inputs: list[str] | None = None, extra: dict | None = None) -> dict:
        """Flush, write `metadata.json`, rename the temp dir to `output`; returns the metadata."""
        if self._pending_tokens:
            self._write_shard(np.concatenate(self._pending))
            self._pending, self._pending_tokens = [], 0
        meta = {
            "format": FORMAT,
            "tokenizer": self.tok.name,
            "tokenizer_hash": self.tok.hash,
            "vocab_size": self.tok.vocab_size,
            "eos_id": self.tok.eos_id,
            "pad_id": self.tok.pad_id,
            "dtype": self.dtype.name,
            "documents": self.documents,
            "tokens": self.tokens,
            "shards": self.shards,
            "inputs": inputs or [],
            **(extra or {}),
        }
        (self.tmp / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n")
        try:
            self._dir.close()  # the temp dir becomes OUTPUT (an old one only with overwrite)
        except FileExistsError:
            raise OutputExistsError(
                f"{self.output}: appeared while preparing (another process?); use it or pass "
                "--overwrite"
            ) from None
        return meta

    def abort(self) -> None:
        """Remove the temp dir (nothing of this run stays behind)."""
        aborted = OSError("prepare-data aborted")
        self._dir.__exit__(type(aborted), aborted, None)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _check_output(output: Path, overwrite: bool) -> None:
    if output.is_file():
        raise OlmoError(f"{output}: output exists and is a file; choose a directory path")
    if not overwrite and output.is_dir() and any(output.iterdir()):
        raise OutputExistsError(
            f"{output}: output directory is not empty; pass --overwrite or choose another --output"
        )


def write_token_dir(
    token_chunks: Iterable[np.ndarray],
    output: str | Path,
    tokenizer: OlmoTokenizer,
    shard_tokens: int = 2**26,
    overwrite: bool = False,
    inputs: list[str] | None = None,
) -> dict:
    """Write an already-tokenized stream as a prepared dir; documents = number of EOS ids."""
    with TokenDirWriter(output, tokenizer, shard_tokens, overwrite) as w:
        for chunk in token_chunks:
            w.add(chunk, int(np.count_nonzero(chunk == tokenizer.eos_id)))
        return w.commit(inputs)


# ---------------------------------------------------------------------------- entry points


def prepare_data(
    inputs: list[str],
    output: str,
    tokenizer: str = "olmo",
    workers: int = 1,
    shard_tokens: int = 2**26,
    overwrite: bool = False,
) -> dict:
    """Tokenize `inputs` into the prepared token dir `output`; returns its metadata."""
    if workers < 1:
        raise OlmoError(f"--workers {workers}: must be >= 1")
    files = expand_inputs(inputs)
    tok = load_tokenizer(tokenizer)
    skipped = [0]
    show = sys.stderr.isatty()
    with (
        TokenDirWriter(output, tok, shard_tokens, overwrite) as writer,
        tqdm(unit="doc", desc="tokenizing", disable=not show, file=sys.stderr) as bar,
    ):
        for tokens, n in _tokenized(_document_chunks(files, skipped), tok, workers):
            writer.add(tokens, n)
            bar.update(n)
        if writer.documents == 0:
            more = f" (and {len(files) - 1} more files)" if len(files) > 1 else ""
            raise OlmoError(f"{files[0]}{more}: no non-empty documents; nothing to prepare")
        return writer.commit([str(f) for f in files], {"skipped_empty_documents": skipped[0]})


def cache_root() -> Path:
    """`$OLMO_CACHE` or `~/.cache/olmo-hpc`."""
    return Path(os.environ.get("OLMO_CACHE") or "~/.cache/olmo-hpc").expanduser()


def prepare_bundled(tokenizer: str = "olmo") -> Path:
    """The bundled corpus prepared with `tokenizer`, tokenized on first use into the cache.

    Cache dir: `<cache_root>/data/pydocs-<tokenizer hash>-<corpus hash>`. Safe under concurrent
    ranks/processes: each prepares into its own temp dir and the first rename wins.
    """
    from olmo.data.corpus import bundled_corpus_path

    corpus = bundled_corpus_path()
    tok = load_tokenizer(tokenizer)
    out = cache_root() / "data" / f"pydocs-{tok.hash}-{_sha256_file(corpus)[:8]}"
    if (out / "metadata.json").is_file():
        return out
    try:
        prepare_data([str(corpus)], str(out), tokenizer)
    except OutputExistsError:
        if not (out / "metadata.json").is_file():
            raise OlmoError(f"{out}: broken data cache (no metadata.json); delete it") from None
    return out


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register `olmo prepare-data INPUT... --output DIR`."""
    p = subparsers.add_parser(
        "prepare-data",
        help="tokenize .jsonl/.jsonl.gz/.txt documents into token shards",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files or directories")
    p.add_argument("--output", "-o", required=True, help="prepared token directory to create")
    p.add_argument("--tokenizer", default="olmo", help="'olmo' or a tokenizers JSON file")
    p.add_argument("--workers", type=at_least(1), default=1, help="tokenizer processes (default 1)")
    p.add_argument("--shard-tokens", type=at_least(1), default=2**26, help="tokens per .npy shard")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTPUT")
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    meta = prepare_data(
        args.inputs, args.output, args.tokenizer, args.workers, args.shard_tokens, args.overwrite
    )
    dt = time.perf_counter() - t0
    print(
        f"{args.output}: {meta['documents']} documents, {meta['tokens']} tokens "
        f"({meta['dtype']}, {len(meta['shards'])} shards) in {dt:.1f}s "
        f"= {meta['tokens'] / dt:,.0f} tokens/s"
    )
    return 0
