"""Every bad input to a CLI entry point is exit 2 with one line naming the key or file.

One table per entry point: rows of (id, argv, stderr fragments, files to create). Each row runs
`olmo.cli.main` in-process in a fresh directory; an unexpected exception propagates, so a
traceback fails the row. Rows marked `proc=True` also run as a real `python -m olmo` process
(`test_real_processes`). After a row the directory must be exactly as it was: nothing written,
nothing half-written.

A new command gets a table in TABLES (keyed by its words as `olmo --help` shows them);
`test_every_command_has_a_table` fails until it has one.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from olmo.cli import build_parser, main

Build = Callable[[Path, "Assets"], None]
Content = str | bytes | Build


@dataclass(frozen=True)
class Case:
    """`olmo ARGV` in a directory holding FILES exits CODE with one stderr line containing
    every string of EXPECT."""

    id: str
    argv: tuple[str, ...]
    expect: tuple[str, ...]
    files: dict[str, Content] = field(default_factory=dict)
    code: int = 2
    proc: bool = False
    """Also run as a real `python -m olmo` subprocess."""


def case(
    id: str,
    argv: str | list[str],
    expect: str | tuple[str, ...],
    files: dict[str, Content] | None = None,
    proc: bool = False,
) -> Case:
    """A row; `argv` as one space-separated string, or a list where an argument has a space."""
    words = tuple(argv.split()) if isinstance(argv, str) else tuple(argv)
    return Case(id, words, (expect,) if isinstance(expect, str) else expect, files or {}, 2, proc)


# ---------------------------------------------------------------------------- shared inputs


class Assets:
    """Valid inputs built once (a token dir, a checkpoint, an HF dir); rows copy and break them."""

    def __init__(self, root: Path):
        self.root = root
        self._built: dict[str, Path] = {}

    def get(self, name: str) -> Path:
        if name not in self._built:
            self._built[name] = getattr(self, f"_make_{name}")(self.root / name)
        return self._built[name]

    def _make_tokens(self, out: Path) -> Path:
        from olmo.data.prepare import write_token_dir
        from olmo.tokenizer import load_tokenizer

        tok = load_tokenizer("olmo")
        write_token_dir([np.arange(1, 65, dtype=np.uint32)], out, tok, shard_tokens=32)
        return out

    def _model(self):
        from olmo.model import ModelConfig, build_model

        return build_model(ModelConfig(d_model=32, n_layers=1, n_heads=2, max_seq_len=64))

    def _make_ckpt(self, out: Path) -> Path:
        from olmo.checkpoint.io import save_model

        return save_model(self._model(), out, {"data": {"tokenizer": "olmo"}})

    def _make_hf(self, out: Path) -> Path:
        pytest.importorskip("transformers")
        from olmo.model.hf import save_hf

        return save_hf(self._model(), out)


def copy(asset: str, edit: Callable[[Path], None] | None = None) -> Build:
    """The asset copied to the row's path, then `edit(path)`."""

    def build(dest: Path, assets: Assets) -> None:
        shutil.copytree(assets.get(asset), dest)
        if edit is not None:
            edit(dest)

    return build


def edit_json(name: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    """Edit DIR/name: `change(data)` edits the object in place."""

    def edit(d: Path) -> None:
        data = json.loads((d / name).read_text())
        change(data)
        (d / name).write_text(json.dumps(data))

    return edit


def write(name: str, text: str) -> Callable[[Path], None]:
    """Replace DIR/name with `text`."""
    return lambda d: (d / name).write_text(text)


def tokens(change: Callable[[dict], object]) -> Build:
    """The token dir with its metadata.json edited."""
    return copy("tokens", edit_json("metadata.json", change))


def hf_config(**values: object) -> Build:
    """The HF dir with these config.json values."""
    return copy("hf", edit_json("config.json", lambda c: c.update(values)))


def ckpt_data_section(value: object) -> Build:
    """The checkpoint with this `data:` section in its config.yaml."""

    def edit(d: Path) -> None:
        cfg = yaml.safe_load((d / "config.yaml").read_text())
        (d / "config.yaml").write_text(yaml.safe_dump({**cfg, "data": value}))

    return copy("ckpt", edit)


def jsonl(*records: object) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _npz_shard(d: Path) -> None:
    np.savez(d / "part-00000.npz", tokens=np.load(d / "part-00000.npy"))
    os.replace(d / "part-00000.npz", d / "part-00000.npy")


def _index_as_list(d: Path) -> None:
    (d / "model.safetensors").rename(d / "w.safetensors")
    (d / "model.safetensors.index.json").write_text('{"weight_map": ["w.safetensors"]}')


DEEP_JSON = "[" * 100_000 + "]" * 100_000 + "\n"
HUGE_INT = '{"text": "a", "n": ' + "1" * 5000 + "}\n"
NODATA = " --data.paths=[nodata]"  # so that a row that wrongly passes fails fast on data

# ---------------------------------------------------------------------------- the tables
# fmt: off

TRAIN = "train c.yaml --run-dir run"
CONFIG = [  # the YAML loader and the schema, through `olmo train`
    case("integer-key", TRAIN, ("c.yaml", "'model.1'"), {"c.yaml": "model:\n  1: 2\n"}, proc=True),
    case("null-key-at-root", TRAIN, ("c.yaml", "None"), {"c.yaml": "~: 2\n"}),
    case("deep-nesting", TRAIN, "c.yaml", {"c.yaml": "a: " + "[" * 5000}),
    case("int-too-big-for-float", TRAIN, ("c.yaml", "optim.lr"),
         {"c.yaml": "optim:\n  lr: 1" + "0" * 400 + "\n"}),
    case("nan-float", TRAIN + NODATA, "optim.lr", {"c.yaml": "optim:\n  lr: .nan\n"}),
    case("inf-override", TRAIN + NODATA + " --optim.lr=1e999", "optim.lr", {"c.yaml": ""}),
    case("negative-seed", TRAIN + NODATA + " --train.seed=-1", "train.seed", {"c.yaml": ""}),
    case("spike-action", TRAIN + NODATA + " --train.spike.action=explode", "train.spike.action",
         {"c.yaml": ""}),
    case("straggler-factor", TRAIN + NODATA + " --train.straggler.factor=0.5",
         "train.straggler.factor", {"c.yaml": ""}),
    case("negative-z-loss", TRAIN + NODATA + " --train.z_loss=-1", "train.z_loss", {"c.yaml": ""}),
    case("bad-yaml", TRAIN, ("c.yaml:2", "invalid YAML"), {"c.yaml": "a: 1\n b: [\n"}),
    case("not-a-mapping", TRAIN, ("c.yaml", "mapping"), {"c.yaml": "- 1\n"}),
    case("not-utf8", TRAIN, ("c.yaml", "UTF-8"), {"c.yaml": b"a: \xff\n"}),
    case("section-is-scalar", TRAIN, "'model'", {"c.yaml": "model: 3\n"}),
    case("list-for-str", TRAIN, "data.tokenizer", {"c.yaml": "data: {tokenizer: [1]}\n"}),
    case("paths-not-list", TRAIN, "data.paths", {"c.yaml": "data: {paths: somewhere}\n"}),
    case("config-missing", "train nothere.yaml --run-dir run", "nothere.yaml"),
    case("no-config", "train --run-dir run", "olmo train"),
    case("stray-argument", "train c.yaml stray", "'stray'", {"c.yaml": ""}),
]

DOCS = jsonl({"text": "hello world"})
PREP = "prepare-data d.jsonl --output out"
PREPARE = [
    case("deep-json", PREP, "d.jsonl:1", {"d.jsonl": DEEP_JSON}, proc=True),
    case("lone-surrogate", PREP, ("d.jsonl:2", "surrogate"),
         {"d.jsonl": DOCS + '{"text": "a\\ud800b"}\n'}),
    case("output-under-a-file", "prepare-data d.jsonl --output f/out", "f/out",
         {"d.jsonl": DOCS, "f": "x"}),
    case("huge-int", PREP, "d.jsonl:1", {"d.jsonl": HUGE_INT}),
    case("invalid-utf8", PREP, ("d.jsonl:2", "UTF-8"), {"d.jsonl": DOCS.encode() + b'{"text": "\xff"}\n'}),
    case("truncated-gz", "prepare-data d.jsonl.gz --output out", "d.jsonl.gz",
         {"d.jsonl.gz": gz(DOCS.encode() * 50)[:-12]}),
    case("not-gzip", "prepare-data d.jsonl.gz --output out", "d.jsonl.gz", {"d.jsonl.gz": DOCS}),
    case("txt-invalid-utf8", "prepare-data d.txt --output out", "d.txt:2", {"d.txt": b"a\n\xfe\n"}),
    case("no-text-key", PREP, ("d.jsonl:1", '"text"'), {"d.jsonl": jsonl({"body": "x"})}),
    case("text-not-string", PREP, ("d.jsonl:1", '"text"'), {"d.jsonl": jsonl({"text": 5})}),
    case("line-not-object", PREP, "d.jsonl:1", {"d.jsonl": jsonl([1, 2])}),
    case("only-empty-docs", PREP, "d.jsonl", {"d.jsonl": jsonl({"text": ""})}),
    case("input-missing", "prepare-data nothere.jsonl --output out", "nothere.jsonl"),
    case("unsupported-suffix", "prepare-data d.csv --output out", "d.csv", {"d.csv": "a,b\n"}),
    case("output-is-a-file", "prepare-data d.jsonl --output f", "f", {"d.jsonl": DOCS, "f": "x"}),
    case("workers-0", PREP + " --workers 0", "--workers", {"d.jsonl": DOCS}),
    case("shard-tokens-0", PREP + " --shard-tokens 0", "--shard-tokens", {"d.jsonl": DOCS}),
    case("tokenizer-not-json", PREP + " --tokenizer t.json", "t.json", {"d.jsonl": DOCS, "t.json": "{"}),
]

INSP = "data inspect c.yaml --step 1"
INSPECT_CFG = "data:\n  paths: [tok]\n  seq_len: 4\ntrain:\n  seed: 0\n  global_batch_size: 2\n"


def inspect_files(tok: Build | None = None, cfg: str = INSPECT_CFG) -> dict[str, Content]:
    """A config over the token dir `tok` (default: the valid one)."""
    return {"c.yaml": cfg, "tok": tok or copy("tokens")}


INSPECT = [
    case("shard-is-npz", INSP, "part-00000.npy", inspect_files(copy("tokens", _npz_shard)), proc=True),
    case("shard-without-file", INSP, ("metadata.json", "'file'"),
         inspect_files(tokens(lambda m: m["shards"][0].pop("file")))),
    case("shard-not-object", INSP, ("metadata.json", "shards[0]"),
         inspect_files(tokens(lambda m: m.update(shards=[1])))),
    case("max-id-not-int", INSP, ("metadata.json", "max_id"),
         inspect_files(tokens(lambda m: m["shards"][0].update(max_id="9")))),
    case("shard-file-escapes", INSP, ("metadata.json", "../x.npy"),
         inspect_files(tokens(lambda m: m["shards"][0].update(file="../x.npy")))),
    case("metadata-not-object", INSP, "metadata.json", inspect_files(copy("tokens", write("metadata.json", "[1]")))),
    case("metadata-not-json", INSP, "metadata.json", inspect_files(copy("tokens", write("metadata.json", "{")))),
    case("truncated-shard", INSP, "part-00001.npy",
         inspect_files(copy("tokens", lambda d: os.truncate(d / "part-00001.npy", 100)))),
    case("train-not-mapping", INSP, ("c.yaml", "'train'"),
         inspect_files(cfg=INSPECT_CFG.split("train:")[0] + "train: 5\n")),
    case("negative-seed", INSP, ("c.yaml", "train.seed"),
         inspect_files(cfg=INSPECT_CFG.replace("seed: 0", "seed: -1"))),
    case("step-0", "data inspect c.yaml --step 0", "--step", inspect_files()),
    case("run-dir-without-config", "data inspect run --step 1", "config.yaml", {"run/metrics.jsonl": ""}),
    case("data-path-missing", INSP, "tok", {"c.yaml": INSPECT_CFG}),
]

CK = {"ck": copy("ckpt")}
BAD_CHOICE = {"id": 0, "gold": 0, "choices": [{"context": 5, "continuation": " b"}] * 2}
EVAL = [
    case("batch-size-0", "eval ck --batch-size 0", "--batch-size", CK, proc=True),
    case("limit-negative", "eval ck --limit -1", "--limit", CK),
    case("max-len-0", "eval ck --max-len 0", "--max-len", CK),
    case("max-len-over-model", "eval ck --max-len 4096", ("--max-len", "max_seq_len"), CK),
    case("batch-size-not-int", "eval ck --batch-size abc", "--batch-size", CK),
    case("unknown-task", "eval ck --tasks nosuch", "nosuch", CK),
    case("context-not-string", "eval ck --tasks copa --data-dir d", ("copa.jsonl.gz:1", "context"),
         {**CK, "d/copa.jsonl.gz": gz(jsonl(BAD_CHOICE).encode())}),
    case("deep-json-task", "eval ck --tasks copa --data-dir d", "copa.jsonl.gz",
         {**CK, "d/copa.jsonl.gz": gz(DEEP_JSON.encode())}),
    case("task-file-missing", "eval ck --tasks copa --data-dir d", "copa.jsonl.gz", {**CK, "d/x": "x"}),
    case("checkpoint-missing", "eval nothere", "nothere"),
    case("checkpoint-data-not-mapping", "eval ck --tasks copa", ("config.yaml", "data"),
         {"ck": ckpt_data_section(5)}),
]

FROM_HF = "convert from-hf hf out"
CONVERT_FROM_HF = [
    case("zero-heads", FROM_HF, ("config.json", "num_attention_heads"),
         {"hf": hf_config(num_attention_heads=0)}, proc=True),
    case("hidden-size-string", FROM_HF, ("config.json", "hidden_size"), {"hf": hf_config(hidden_size="32")}),
    case("heads-do-not-divide", FROM_HF, ("config.json", "num_attention_heads"),
         {"hf": hf_config(num_attention_heads=3, num_key_value_heads=3)}),
    case("rope-theta-string", FROM_HF, ("config.json", "rope_theta"),
         {"hf": hf_config(rope_parameters={"rope_type": "default", "rope_theta": "abc"})}),
    case("rope-scaling-string", FROM_HF, ("config.json", "rope_parameters"),
         {"hf": hf_config(rope_scaling="linear")}),
    case("index-weight-map-list", FROM_HF, "model.safetensors.index.json", {"hf": copy("hf", _index_as_list)}),
    case("out-under-a-file", "convert from-hf hf f/out", "f/out", {"hf": copy("hf"), "f": "x"}),
    case("config-not-json", FROM_HF, "config.json", {"hf": copy("hf", write("config.json", "{"))}),
    case("config-deep-json", FROM_HF, "config.json", {"hf": copy("hf", write("config.json", DEEP_JSON))}),
    case("weights-garbage", FROM_HF, "model.safetensors",
         {"hf": copy("hf", lambda d: (d / "model.safetensors").write_bytes(b"\0" * 64))}),
    case("not-olmo", FROM_HF, "model_type", {"hf": hf_config(model_type="llama")}),
]

CONVERT_TO_HF = [
    case("out-under-a-file", "convert to-hf ck f/out", "f/out", {**CK, "f": "x"}),
    case("out-not-empty", "convert to-hf ck out", "out", {**CK, "out/x": "x"}),
    case("checkpoint-missing", "convert to-hf nothere out", "nothere"),
]

NODE = {"node": "n1", "backend": "rapl", "energy_j": 10.0, "duration_s": 1.0,
        "mean_power_w": 10.0, "peak_power_w": 12.0, "samples": 3, "devices": {}}
JOB = {"status": "done", "first_step": 1, "last_step": 2, "tokens": 100, "nodes": 1}


def energy_files(job: object = JOB, node: object = NODE) -> dict[str, Content]:
    a = "run/energy/attempt1/"
    return {a + "job.json": json.dumps(job), a + "node-n1.json": json.dumps(node)}


ENERGY_REPORT = [
    case("node-file-is-list", "energy report run", "node-n1.json", energy_files(node=[1]), proc=True),
    case("node-energy-not-number", "energy report run", ("node-n1.json", "energy_j"),
         energy_files(node={**NODE, "energy_j": "x"})),
    case("device-power-not-number", "energy report run", ("node-n1.json", "devices.gpu0", "peak_power_w"),
         energy_files(node={**NODE, "devices": {"gpu0": {"peak_power_w": [1]}}})),
    case("job-status-not-string", "energy report run", ("job.json", "status"),
         energy_files(job={**JOB, "status": 3})),
    case("png-under-a-file", "energy report run --png f/p.png", "f/p.png", {**energy_files(), "f": "x"}),
    case("png-not-png", "energy report run --png p.svg", ("p.svg", ".png"), energy_files()),
    case("no-energy-dir", "energy report run", "run", {"run/x": "x"}),
]

SMALL_CFG = ("model: {d_model: 32, n_layers: 1, n_heads: 2, max_seq_len: 64}\n"
             "train: {global_batch_size: 2, micro_batch_size: 2}\n")
SMALL = {"c.yaml": SMALL_CFG + "data: {seq_len: 16}\n"}
EST = "energy estimate c.yaml --tokens 1e9"
ENERGY_ESTIMATE = [
    case("tokens-nan", "energy estimate c.yaml --tokens nan --j-per-token 1", "--tokens", SMALL),
    case("j-per-token-negative", EST + " --j-per-token -1", "--j-per-token", SMALL),
    case("energy-json-is-list", EST + " --run run", "energy.json", {**SMALL, "run/energy.json": "[1]"}),
    case("j-per-token-string", EST + " --run run", ("energy.json", "j_per_token"),
         {**SMALL, "run/energy.json": json.dumps({"totals": {"j_per_token": "x", "tokens": 5}})}),
    case("run-and-j-per-token", EST + " --run r --j-per-token 1", "--run", SMALL),
    case("bad-key", EST + " --j-per-token 1", "model.d_modle", {"c.yaml": "model: {d_modle: 3}\n"}),
]

FP = {"format": "olmo-parity-fingerprint/1", "device": "cpu", "dtype": "fp32", "config": {},
      "exact": {}, "bits": {}, "quantities": {"b0/loss": {"value": 1.0, "scale": 1.0}}}
FP_B = {"b.json": json.dumps(FP)}
COMPARE = "parity compare a.json b.json"
PARITY_COMPARE = [
    case("missing-key", COMPARE, ("a.json", "quantities"),
         {**FP_B, "a.json": json.dumps({k: v for k, v in FP.items() if k != "quantities"})}, proc=True),
    case("quantity-not-number", COMPARE, ("a.json", "b0/loss", "value"),
         {**FP_B, "a.json": json.dumps({**FP, "quantities": {"b0/loss": {"value": "x", "scale": 1}}})}),
    case("not-json", COMPARE, "a.json", {**FP_B, "a.json": "{"}),
    case("rtol-negative", "parity compare b.json b.json --rtol-fp32 -1", "--rtol-fp32", FP_B),
]

STEP = {"step": 1, "loss": 2.0, "batch_hash": "ab"}


def two_runs(a: str) -> dict[str, Content]:
    """Run a's metrics.jsonl is `a`; run b's is one good record."""
    return {"a/metrics.jsonl": a, "b/metrics.jsonl": jsonl(STEP)}


PARITY_RUNS = [
    case("loss-not-number", "parity runs a b", ("metrics.jsonl:1", "loss"), two_runs(jsonl({**STEP, "loss": "x"}))),
    case("step-not-int", "parity runs a b", ("metrics.jsonl:1", "step"), two_runs(jsonl({**STEP, "step": "x"}))),
    case("deep-json-line", "parity runs a b", "metrics.jsonl:2", two_runs(jsonl(STEP) + DEEP_JSON)),
    case("png-under-a-file", "parity runs a b --png f/p.png", "f/p.png", {**two_runs(jsonl(STEP)), "f": "x"}),
    case("png-not-png", "parity runs a b --png p", ("--png", ".png"), two_runs(jsonl(STEP))),
    case("window-0", "parity runs a b --window 0", "--window", two_runs(jsonl(STEP))),
    case("band-nan", "parity runs a b --band nan", "--band", two_runs(jsonl(STEP))),
]

FPR = "parity fingerprint c.yaml --out fp.json"
PARITY_FINGERPRINT = [
    case("out-under-a-file", "parity fingerprint c.yaml --out f/fp.json", "f/fp.json",
         {"c.yaml": SMALL_CFG + "data: {paths: [nodata], seq_len: 16}\n", "f": "x"}),
    case("batches-0", FPR + " --batches 0", "--batches", SMALL),
    case("flip-bit-format", FPR + " --flip-bit x", "--flip-bit", SMALL),
    case("run-dir-without-config", "parity fingerprint run --out fp.json", "config.yaml", {"run/x": "x"}),
]

METRICS = jsonl({**STEP, "time": 1.0, "tokens_seen": 10, "attempt": 1})


def run_dir(metrics: str = METRICS, files: dict[str, Content] | None = None) -> dict[str, Content]:
    """A run dir with `metrics` as metrics.jsonl and `files` (names relative to it)."""
    return {"run/metrics.jsonl": metrics} | {f"run/{k}": v for k, v in (files or {}).items()}


REPORT = [
    case("config-bad-yaml", "report run", "config.yaml", run_dir(files={"config.yaml": "a: [\n"}), proc=True),
    case("config-not-mapping", "report run", "config.yaml", run_dir(files={"config.yaml": "- 1\n"})),
    case("time-not-number", "report run", ("metrics.jsonl:1", "time"), run_dir(jsonl({**STEP, "time": "x"}))),
    case("tokens-not-number", "report run", ("metrics.jsonl:1", "tokens_seen"),
         run_dir(jsonl({**STEP, "tokens_seen": "x"}))),
    case("attempt-not-int", "report run", ("metrics.jsonl:1", "attempt"), run_dir(jsonl({**STEP, "attempt": "x"}))),
    case("env-devices-not-objects", "report run", ("env.json", "devices"),
         run_dir(files={"env.json": '{"devices": [1]}'})),
    case("energy-totals-list", "report run", ("energy.json", "totals"),
         run_dir(files={"energy.json": '{"totals": [1]}'})),
    case("attempt-time-not-number", "report run", ("attempts.jsonl:1", "time"),
         run_dir(files={"attempts.jsonl": jsonl({"time": "x"})})),
    case("model-section-bad", "report run", ("config.yaml", "model.d_model"),
         run_dir(files={"config.yaml": "model: {d_model: x}\ndata: {seq_len: 8}\n"})),
    case("out-under-a-file", "report run --out f/rep", "f/rep", {**run_dir(), "f": "x"}),
    case("no-metrics", "report run", "metrics.jsonl", {"run/x": "x"}),
]

def event(**fields: Any) -> dict[str, Any]:
    """A well-formed logbook line with `fields` replaced."""
    base = {"time": 1.0, "attempt": 1, "event": "attempt_start", "step": None, "host": "h",
            "rank": None, "detail": {}}
    return base | fields


def logbook(*lines: str) -> dict[str, Content]:
    return {"run/logbook.jsonl": "".join(lines)}


ENDED = jsonl(event(time=2.0, event="attempt_end", detail={"reason": "completed"}))
LOGBOOK = [
    case("no-run-dir", "logbook nosuch", "nosuch"),
    case("no-logbook", "logbook run", "logbook.jsonl", {"run/x": "x"}),
    case("torn-middle-line", "logbook run", "logbook.jsonl:1", logbook('{"time": 1,\n', ENDED)),
    case("invalid-utf8", "logbook run", "logbook.jsonl:1", {"run/logbook.jsonl": b"\xff\xfe\n" + ENDED.encode()}),
    case("not-an-object", "logbook run", "logbook.jsonl:1", logbook("[1]\n", ENDED)),
    case("unknown-event", "logbook run", "logbook.jsonl:1", logbook(jsonl(event(event="bogus")), ENDED)),
    case("time-not-number", "logbook run", ("logbook.jsonl:1", "time"), logbook(jsonl(event(time="x")))),
    case("time-infinite", "logbook run", ("logbook.jsonl:1", "time"), logbook('{"time": 1e400, "event": "attempt_start"}\n')),
    case("attempt-not-int", "logbook run", ("logbook.jsonl:1", "attempt"), logbook(jsonl(event(attempt="one")))),
    case("detail-not-object", "logbook run --json", ("logbook.jsonl:1", "detail"), logbook(jsonl(event(detail=[1])))),
    case("detail-number-text", "logbook run", ("logbook.jsonl:1", "seconds_to_first_step"),
         logbook(jsonl(event(event="resume", detail={"seconds_to_first_step": "x"})))),
]

BENCH = [
    case("windows-0", "bench c.yaml --windows 0", "--windows", SMALL),
    case("steps-per-window-0", "bench c.yaml --steps-per-window 0", "--steps-per-window", SMALL),
    case("out-under-a-file", "bench c.yaml --out f/b.jsonl", "f/b.jsonl", {**SMALL, "f": "x"}),
    case("bad-override", "bench c.yaml --train.globl_batch_size=2", "globl_batch_size", SMALL),
]

ENV = [case("unknown-option", "env --bogus", "--bogus", proc=True)]

PARSER = [  # the parser itself: unknown commands and missing arguments are one line too
    case("unknown-command", "nosuch", "nosuch"),
    case("no-command", [], "COMMAND"),
    case("missing-argument", "convert from-hf", "OUT_DIR"),
]

# fmt: on

# Keyed by the command words as `olmo --help` shows them; "olmo" is the parser itself.
TABLES: dict[str, list[Case]] = {
    "olmo": PARSER,
    "train": CONFIG,
    "prepare-data": PREPARE,
    "data inspect": INSPECT,
    "eval": EVAL,
    "convert from-hf": CONVERT_FROM_HF,
    "convert to-hf": CONVERT_TO_HF,
    "energy report": ENERGY_REPORT,
    "energy estimate": ENERGY_ESTIMATE,
    "parity compare": PARITY_COMPARE,
    "parity runs": PARITY_RUNS,
    "parity fingerprint": PARITY_FINGERPRINT,
    "report": REPORT,
    "logbook": LOGBOOK,
    "bench": BENCH,
    "env": ENV,
}
# Commands whose bad inputs their own test files cover (the checkpoint and launch packages).
ELSEWHERE = {"checkpoint", "sbatch", "launch", "cluster", "doctor"}
ROWS = [c for table in TABLES.values() for c in table]
IDS = [f"{cmd}:{c.id}" for cmd, table in TABLES.items() for c in table]


# ---------------------------------------------------------------------------- running rows


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Assets:
    return Assets(tmp_path_factory.mktemp("assets"))


@pytest.fixture(autouse=True)
def _quiet_env(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("OLMO_CACHE", str(tmp_path_factory.mktemp("cache")))


def make_files(root: Path, files: dict[str, Content], assets: Assets) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path, assets)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root with its size and mtime: a row must leave it unchanged."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.relpath(os.path.join(dirpath, name), root)] = (st.st_size, st.st_mtime_ns)
    return out


def check_stderr(c: Case, code: int, err: str) -> None:
    lines = err.splitlines()
    assert code == c.code, f"exit {code}, expected {c.code}; stderr:\n{err}"
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].strip(), f"expected one stderr line, got:\n{err}"
    assert lines[0].startswith("error: "), lines[0]
    missing = [s for s in c.expect if s not in lines[0]]
    assert not missing, f"{missing} not in: {lines[0]}"


def run_in_process(argv: tuple[str, ...], capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse
        code = e.code if isinstance(e.code, int) else 1
    return code, capsys.readouterr().err


@pytest.mark.parametrize("c", ROWS, ids=IDS)
def test_bad_input(c: Case, tmp_path, assets, capsys, monkeypatch):
    make_files(tmp_path, c.files, assets)
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, err = run_in_process(c.argv, capsys)
    check_stderr(c, code, err)
    assert snapshot(tmp_path) == before, "the command wrote or changed files"


def test_real_processes(tmp_path, assets):
    """The rows marked proc=True as real `python -m olmo` processes (two at a time)."""
    rows = [(i, c) for i, c in enumerate(ROWS) if c.proc]
    env = {**os.environ, "OLMO_CACHE": str(tmp_path / "cache")}

    def run(row: tuple[int, Case]) -> tuple[Case, subprocess.CompletedProcess, bool]:
        i, c = row
        cwd = tmp_path / f"row{i}"
        cwd.mkdir()
        make_files(cwd, c.files, assets)
        before = snapshot(cwd)
        proc = subprocess.run([sys.executable, "-m", "olmo", *c.argv], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        return c, proc, snapshot(cwd) == before

    for name in ("tokens", "ckpt", "hf"):
        assets.get(name)  # built here, not by two threads at once
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, rows))
    assert len(results) >= 8  # a representative subset: one row of most entry points
    for c, proc, unchanged in results:
        check_stderr(c, proc.returncode, proc.stderr)
        assert unchanged, f"{c.id}: the command wrote or changed files"


def _leaf_commands(parser: argparse.ArgumentParser, prefix: str = "") -> set[str]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {prefix.strip()}
    return {name for a in subs for cmd, p in a.choices.items()
            for name in _leaf_commands(p, f"{prefix} {cmd}")}  # fmt: skip


def test_every_command_has_a_table():
    """A new command needs a table here (or an entry in ELSEWHERE)."""
    commands = _leaf_commands(build_parser())
    missing = [c for c in sorted(commands) if c not in TABLES and c.split()[0] not in ELSEWHERE]
    assert not missing, f"commands without a bad-input table: {missing}"
    assert set(TABLES) - {"olmo"} <= commands, "a table for a command that does not exist"
    assert len(set(IDS)) == len(IDS), "row ids must be unique within a table"
