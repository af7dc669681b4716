"""Tokenizer: bundled OLMo ids, round trips on real text, custom files and their errors."""

import gzip
import itertools
import json
import unicodedata

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from olmo.data.corpus import bundled_corpus_path
from olmo.errors import OlmoError
from olmo.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def _tiny_tokenizer_file(path, specials=("<|endoftext|>", "<|padding|>")):
    vocab = {t: i for i, t in enumerate([*specials, "hello", "world", "[UNK]"])}
    t = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    t.save(str(path))
    return path


def test_bundled_ids_match_olmo(tok):
    assert (tok.eos_id, tok.pad_id) == (50279, 1)
    assert tok.vocab_size == 50280
    assert tok.padded_vocab_size == 50304
    assert len(tok.hash) == 16 and int(tok.hash, 16) >= 0
    assert load_tokenizer("gpt-neox-olmo-pii").hash == tok.hash


def test_known_ids_and_no_special_tokens_added(tok):
    assert tok.encode("Hello world") == [12092, 1533]
    assert tok.encode_batch(["Hello world", "Hello"]) == [[12092, 1533], [12092]]
    assert tok.encode("") == []


def test_round_trip_real_english_and_unicode(tok):
    with gzip.open(bundled_corpus_path(), "rt", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in itertools.islice(f, 20)]
    texts += ["naïve café — 日本語, emoji 🤖, Ελληνικά, tab\tand\nnewline  two spaces"]
    for text in texts:
        text = unicodedata.normalize("NFC", text)  # the tokenizer normalizes to NFC
        ids = tok.encode(text)
        assert ids and max(ids) < tok.vocab_size
        assert tok.decode(ids) == text
    assert sum(len(tok.encode(t)) for t in texts) < sum(len(t) for t in texts) / 2  # real BPE


def test_custom_file_looks_up_specials(tmp_path):
    t = load_tokenizer(str(_tiny_tokenizer_file(tmp_path / "tiny.json")))
    assert (t.eos_id, t.pad_id, t.vocab_size, t.padded_vocab_size) == (0, 1, 5, 128)
    assert t.encode("hello world") == [2, 3]
    assert load_tokenizer(str(tmp_path / "tiny.json"), eos_id=3, pad_id=2).eos_id == 3


def test_custom_file_errors(tmp_path):
    no_specials = _tiny_tokenizer_file(tmp_path / "nospec.json", specials=("x", "y"))
    with pytest.raises(OlmoError, match=r"nospec\.json.*<\|endoftext\|>.*eos_id"):
        load_tokenizer(str(no_specials))
    assert load_tokenizer(str(no_specials), eos_id=0, pad_id=1).eos_id == 0
    with pytest.raises(OlmoError, match=r"nospec\.json.*eos_id 99 is not in"):
        load_tokenizer(str(no_specials), eos_id=99, pad_id=1)
    with pytest.raises(OlmoError, match=r"missing\.json.*cannot read"):
        load_tokenizer(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text('{"version": "1.0", "model": ')
    with pytest.raises(OlmoError, match=r"bad\.json.*not a valid tokenizers JSON"):
        load_tokenizer(str(tmp_path / "bad.json"))
    assert "\n" not in str(
        pytest.raises(OlmoError, load_tokenizer, str(tmp_path / "bad.json")).value
    )
