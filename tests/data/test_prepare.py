"""prepare-data: token layout, input formats, determinism, errors that leave nothing behind."""

import argparse
import gzip
import json
import subprocess
import sys

import numpy as np
import pytest

from olmo.data.prepare import add_cli, prepare_bundled, prepare_data, write_token_dir
from olmo.errors import OlmoError
from olmo.tokenizer import load_tokenizer

DOCS = [
    "The quick brown fox jumps over the lazy dog.",
    "Unicode survives: naïve café, 日本語, 🤖.",
    "A third document,\nwith two lines.",
]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def _write_jsonl(path, docs):
    lines = [json.dumps({"id": str(i), "text": d}) for i, d in enumerate(docs)]
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def _tokens(out, meta):
    return np.concatenate([np.load(out / s["file"], mmap_mode="r") for s in meta["shards"]])


def test_eos_after_every_document_and_metadata(tmp_path, tok):
    src = _write_jsonl(tmp_path / "docs.jsonl", DOCS)
    out = tmp_path / "out"
    meta = prepare_data([str(src)], str(out))
    stream = _tokens(out, meta)
    assert stream.dtype == np.uint16 and meta["dtype"] == "uint16"
    assert meta["documents"] == 3 and meta["tokens"] == len(stream)
    assert meta["tokenizer_hash"] == tok.hash and meta["eos_id"] == 50279
    assert meta["inputs"] == [str(src)]
    eos_at = np.flatnonzero(stream == tok.eos_id)
    assert eos_at[-1] == len(stream) - 1 and len(eos_at) == 3
    docs = np.split(stream, eos_at[:-1] + 1)  # each piece ends with its EOS
    assert [tok.decode(d[:-1]) for d in docs] == DOCS
    assert [list(d[:-1]) for d in docs] == [tok.encode(t) for t in DOCS]
    on_disk = json.loads((out / "metadata.json").read_text())
    assert on_disk == meta and on_disk["shards"][0]["max_id"] == int(stream.max())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl", "out"]


def test_formats_directory_order_and_sharding(tmp_path, tok):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    _write_jsonl(d / "b.jsonl.gz", DOCS[1:2])
    (d / "a.txt").write_text(DOCS[0])
    _write_jsonl(d / "sub" / "c.jsonl", ["", DOCS[2]])  # empty text is skipped
    (d / "notes.md").write_text("ignored")
    meta = prepare_data([str(d)], str(tmp_path / "out"), shard_tokens=7)
    assert [f.rsplit("/", 1)[-1] for f in meta["inputs"]] == ["a.txt", "b.jsonl.gz", "c.jsonl"]
    assert meta["documents"] == 3 and meta["skipped_empty_documents"] == 1
    assert [s["tokens"] for s in meta["shards"][:-1]] == [7] * (len(meta["shards"]) - 1)
    stream = _tokens(tmp_path / "out", meta)
    expected = [t for doc in DOCS for t in [*tok.encode(doc), tok.eos_id]]
    assert stream.tolist() == expected


@pytest.mark.slow
def test_workers_give_identical_output(tmp_path):
    docs = [f"Document number {i}: " + "words " * (i % 13) for i in range(700)]
    src = _write_jsonl(tmp_path / "many.jsonl", docs)
    one = prepare_data([str(src)], str(tmp_path / "w1"), shard_tokens=1000)
    two = prepare_data([str(src)], str(tmp_path / "w2"), workers=2, shard_tokens=1000)
    assert one["shards"] == two["shards"] and one["documents"] == 700  # same sha256 per shard


@pytest.mark.parametrize(
    ("name", "content", "where", "what"),
    [
        ("bad_utf8.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n', ":2:", "invalid UTF-8"),
        ("no_text.jsonl", b'{"text": "a"}\n\n{"id": 1}\n', ":3:", '"text" string'),
        ("int_text.jsonl", b'{"text": 5}\n', ":1:", "text=int"),
        ("bad_json.jsonl", b'{"text": "a"}\n{"text": \n', ":2:", "invalid JSON"),
        ("bad_utf8.txt", b"line one\nline two \xff\n", ":2:", "invalid UTF-8"),
        ("empty.jsonl", b'{"text": ""}\n', "", "no non-empty documents"),
        ("not_gzip.jsonl.gz", b"plain text", ":1:", "cannot read"),
    ],
)
def test_bad_input_names_file_and_line_and_leaves_nothing(tmp_path, name, content, where, what):
    src = tmp_path / name
    src.write_bytes(content)
    with pytest.raises(OlmoError) as err:
        prepare_data([str(src)], str(tmp_path / "out"))
    msg = str(err.value)
    assert f"{src}{where}" in msg and what in msg and "\n" not in msg
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no output, no temp dir


def test_missing_and_empty_inputs(tmp_path):
    with pytest.raises(OlmoError, match=r"nope\.jsonl: input path does not exist"):
        prepare_data([str(tmp_path / "nope.jsonl")], str(tmp_path / "out"))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(OlmoError, match=r"empty_dir: no input files"):
        prepare_data([str(tmp_path / "empty_dir")], str(tmp_path / "out"))
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(OlmoError, match=r"x\.csv: unsupported input type"):
        prepare_data([str(tmp_path / "x.csv")], str(tmp_path / "out"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty_dir", "x.csv"]


def test_existing_output_refused_unless_overwrite(tmp_path):
    src = _write_jsonl(tmp_path / "d.jsonl", DOCS)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(OlmoError, match=r"out: output directory is not empty.*--overwrite"):
        prepare_data([str(src)], str(out))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    meta = prepare_data([str(src)], str(out), overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "part-00000.npy"]
    assert meta["documents"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "out"]


def test_write_token_dir_rejects_ids_beyond_vocab(tmp_path, tok):
    good = np.array([5, 6, tok.eos_id], dtype=np.uint32)
    meta = write_token_dir([good, good], tmp_path / "ok", tok)
    assert meta["documents"] == 2 and meta["tokens"] == 6
    with pytest.raises(OlmoError, match=r"bad: token id 60000 >= vocab size 50280"):
        write_token_dir([np.array([1, 60000], dtype=np.uint32)], tmp_path / "bad", tok)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok"]


def test_cli_handler(tmp_path, capsys):
    src = _write_jsonl(tmp_path / "d.jsonl", DOCS)
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers())
    args = parser.parse_args(["prepare-data", str(src), "--output", str(tmp_path / "o")])
    assert args.func(args) == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and "3 documents" in line and "uint16" in line


@pytest.mark.slow
def test_bundled_cache_concurrent_first_use(tmp_path, monkeypatch):
    monkeypatch.setenv("OLMO_CACHE", str(tmp_path))
    code = "from olmo.data.prepare import prepare_bundled; print(prepare_bundled())"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE) for _ in "ab"]
    outs = [p.communicate(timeout=120)[0].decode().strip() for p in procs]
    assert all(p.returncode == 0 for p in procs) and outs[0] == outs[1]
    assert outs[0] == str(prepare_bundled())
    entries = list((tmp_path / "data").iterdir())
    assert [e.name for e in entries] == [outs[0].rsplit("/", 1)[-1]]  # no temp dirs left
    meta = json.loads((entries[0] / "metadata.json").read_text())
    assert meta["documents"] > 200 and meta["tokens"] > 300_000
