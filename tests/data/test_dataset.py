"""TokenDataset: instances over shard boundaries and every check done when opening a dir."""

import json

import numpy as np
import pytest
from tokenizers import Tokenizer, models

from olmo.data.dataset import TokenDataset
from olmo.data.prepare import write_token_dir
from olmo.errors import OlmoError
from olmo.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def _token_dir(path, tok, n=1000, shard_tokens=97, seed=0):
    stream = np.random.default_rng(seed).integers(0, tok.vocab_size, n).astype(np.uint32)
    write_token_dir([stream[: n // 3], stream[n // 3 :]], path, tok, shard_tokens=shard_tokens)
    return stream


def test_instances_span_shards_in_dir_order(tmp_path, tok):
    a = _token_dir(tmp_path / "a", tok, n=1000, seed=1)
    b = _token_dir(tmp_path / "b", tok, n=555, seed=2)
    ds = TokenDataset([tmp_path / "a", str(tmp_path / "b")], seq_len=64, tokenizer=tok)
    stream = np.concatenate([a, b]).astype(np.int64)
    assert len(ds) == 1555 // 64 == 24
    for i in range(len(ds)):  # seq_len 64 vs shard 97: many instances cross a boundary
        assert ds[i].dtype == np.int64
        np.testing.assert_array_equal(ds[i], stream[i * 64 : (i + 1) * 64])
    idx = np.array([23, 0, 15, 15, 3])
    batch = ds.get_batch(idx)
    assert batch.shape == (5, 64) and batch.dtype == np.int64
    np.testing.assert_array_equal(batch, np.stack([stream[i * 64 : (i + 1) * 64] for i in idx]))
    np.testing.assert_array_equal(ds[-1], ds[23])
    with pytest.raises(IndexError):
        ds[24]
    with pytest.raises(IndexError):
        ds.get_batch([0, 24])


def _assert_open_fails(path, tok, pattern, seq_len=8):
    with pytest.raises(OlmoError, match=pattern) as err:
        TokenDataset([path], seq_len, tok)
    assert "\n" not in str(err.value)


def test_ids_beyond_vocab_in_shard(tmp_path, tok):
    _token_dir(tmp_path / "d", tok)
    bad = np.load(tmp_path / "d" / "part-00001.npy")
    bad[5] = 60000  # same size and dtype: only the id check can notice
    np.save(tmp_path / "d" / "part-00001.npy", bad)
    _assert_open_fails(tmp_path / "d", tok, r"d/part-00001\.npy: token id 60000 >= vocab size")


def test_recorded_max_disagreeing_with_data(tmp_path, tok):
    _token_dir(tmp_path / "d", tok)
    meta = json.loads((tmp_path / "d" / "metadata.json").read_text())
    meta["shards"][2]["max_id"] = 7
    (tmp_path / "d" / "metadata.json").write_text(json.dumps(meta))
    _assert_open_fails(tmp_path / "d", tok, r"d/part-00002\.npy: largest token id is \d+ but")


def test_truncated_and_missing_shards(tmp_path, tok):
    _token_dir(tmp_path / "d", tok)
    shard = tmp_path / "d" / "part-00003.npy"
    raw = shard.read_bytes()
    shard.write_bytes(raw[:-10])
    _assert_open_fails(tmp_path / "d", tok, r"d/part-00003\.npy: missing, truncated or corrupt")
    shard.write_bytes(raw + b"\0\0")
    _assert_open_fails(tmp_path / "d", tok, r"d/part-00003\.npy: 97 tokens in \d+ bytes")
    shard.unlink()
    _assert_open_fails(tmp_path / "d", tok, r"d/part-00003\.npy: missing")


def test_dtype_disagreeing_with_file(tmp_path, tok):
    _token_dir(tmp_path / "d", tok)
    np.save(tmp_path / "d" / "part-00000.npy", np.zeros(97, dtype=np.uint32))
    _assert_open_fails(tmp_path / "d", tok, r"d/part-00000\.npy: holds uint32\[97\], metadata")


def test_tokenizer_mismatch(tmp_path, tok):
    vocab = {"<|endoftext|>": 0, "<|padding|>": 1, "[UNK]": 2}
    Tokenizer(models.WordLevel(vocab, unk_token="[UNK]")).save(str(tmp_path / "tiny.json"))
    tiny = load_tokenizer(str(tmp_path / "tiny.json"))
    write_token_dir([np.array([2, 2, 0] * 10)], tmp_path / "d", tiny)
    TokenDataset([tmp_path / "d"], 8, tiny)  # opens with its own tokenizer
    _assert_open_fails(
        tmp_path / "d", tok, r"d: prepared with tokenizer .*tiny\.json.*prepare-data"
    )


def test_not_a_token_dir_and_too_little_data(tmp_path, tok):
    _assert_open_fails(tmp_path / "nope", tok, r"nope: not a prepared token directory \(does not")
    (tmp_path / "empty").mkdir()
    _assert_open_fails(tmp_path / "empty", tok, r"empty: not a prepared .*no metadata\.json")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metadata.json").write_text("{")
    _assert_open_fails(tmp_path / "bad", tok, r"bad/metadata\.json: corrupt metadata")
    _token_dir(tmp_path / "d", tok, n=100)
    _assert_open_fails(
        tmp_path / "d", tok, r"d: only 100 tokens, fewer than data\.seq_len=128", 128
    )
