"""Data pipeline throughput: loader assembling global batches, and prepare-data tokenization.

Loader: writes >= 200M synthetic tokens (uniform ids < vocab) as a prepared dir with
`write_token_dir`, opens it with `TokenDataset` and times `DataLoader.batch(step)` for global
batches of 512 x 2048 tokens (world size 1, i.e. the whole global batch), plain and with 2
prefetch threads. Goal: >= 50M tokens/s. Prepare: tokenizes the bundled pydocs corpus.

    python bench/bench_data.py [--tokens N] [--steps N] [--dir DIR]

Results are printed and appended as JSON lines to bench/results/data_loader.jsonl.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from common import RESULTS_DIR, environment

from olmo.data.corpus import bundled_corpus_path
from olmo.data.dataset import TokenDataset
from olmo.data.loader import DataLoader
from olmo.data.prepare import prepare_data, write_token_dir
from olmo.tokenizer import load_tokenizer

RESULTS = RESULTS_DIR / "data_loader.jsonl"


def _synthetic_chunks(total: int, vocab: int, chunk: int = 2**24):
    rng = np.random.default_rng(0)
    for start in range(0, total, chunk):
        yield rng.integers(0, vocab, min(chunk, total - start), dtype=np.uint16)


def _time_loader(loader: DataLoader, steps: int, prefetch: bool) -> float:
    """Seconds for `steps` batches after one warm-up batch."""
    if not prefetch:
        loader.batch(0)
        t0 = time.perf_counter()
        for step in range(1, steps + 1):
            loader.batch(step)
        return time.perf_counter() - t0
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    for _ in range(steps):
        next(it)
    return time.perf_counter() - t0


def bench_loader(tokens: int, batch: int, seq_len: int, steps: int, workdir: Path) -> dict:
    tok = load_tokenizer()
    out = workdir / "synthetic"
    t0 = time.perf_counter()
    write_token_dir(_synthetic_chunks(tokens, tok.vocab_size), out, tok)
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = TokenDataset([out], seq_len, tok)
    open_s = time.perf_counter() - t0
    moved = steps * batch * seq_len
    plain = _time_loader(DataLoader(ds, batch, seed=0), steps, prefetch=False)
    threaded = _time_loader(DataLoader(ds, batch, seed=0, num_workers=2), steps, prefetch=True)
    return {
        "tokens_per_s": round(moved / plain),
        "tokens_per_s_2_threads": round(moved / threaded),
        "dataset_tokens": tokens,
        "global_batch": [batch, seq_len],
        "steps": steps,
        "write_tokens_per_s": round(tokens / write_s),
        "open_s": round(open_s, 3),
    }


def bench_prepare(workdir: Path, workers: int) -> dict:
    t0 = time.perf_counter()
    meta = prepare_data(
        [str(bundled_corpus_path())], str(workdir / f"pydocs-{workers}"), "olmo", workers
    )
    dt = time.perf_counter() - t0
    return {
        "tokens": meta["tokens"],
        "workers": workers,
        "seconds": round(dt, 2),
        "tokens_per_s": round(meta["tokens"] / dt),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tokens", type=int, default=200 * 2**20, help="synthetic dataset size")
    p.add_argument("--batch", type=int, default=512, help="global batch (instances)")
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--steps", type=int, default=30, help="timed batches")
    p.add_argument("--dir", default=None, help="scratch dir (default: a temp dir, removed)")
    p.add_argument("--no-record", action="store_true", help="do not append to the results file")
    args = p.parse_args()
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="olmo-bench-data-"))
    try:
        loader = bench_loader(args.tokens, args.batch, args.seq_len, args.steps, workdir)
        prepare = [bench_prepare(workdir, w) for w in (1, 2)]
    finally:
        if args.dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    ctx = environment() | {"numpy": np.__version__}
    rows = [
        {"bench": "data_loader", **loader, "goal_tokens_per_s": 50_000_000, **ctx},
        {
            "bench": "prepare_data",
            "corpus": "bundled pydocs",
            "runs": prepare,
            "tokens_per_s": max(r["tokens_per_s"] for r in prepare),
            **ctx,
        },
    ]
    for row in rows:
        print(json.dumps(row))
    if not args.no_record:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(RESULTS, "a") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)


if __name__ == "__main__":
    main()
