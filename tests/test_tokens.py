"""Token arrays on disk: tokenized once, memory-mapped, keyed by text and tokenizer,
checked against damage, and read by the batch samplers like any array."""

import json
from pathlib import Path

import numpy as np
import pytest

from lmcore import data
from lmcore.data.batches import RandomBlocks, RandomWindows
from lmcore.data.tokens import default_cache_dir, shakespeare_tokens, token_array, token_dtype
from lmcore.tokenizers import BPETokenizer, CharTokenizer

TEXT = data.shakespeare("val")[:30_000]


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train(TEXT, vocab_size=300)


@pytest.fixture
def char():
    return CharTokenizer(TEXT)


def entry_files(cache):
    return sorted(p.name for p in (cache / "tokens").iterdir())


def refuse_to_encode(tokenizer, monkeypatch):
    def fail(texts):
        raise AssertionError("the text was tokenized again")

    monkeypatch.setattr(tokenizer, "encode_iterable", fail)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_the_array_holds_the_tokenizers_ids_memory_mapped(kind, char, bpe, tmp_path):
    tokenizer = char if kind == "char" else bpe
    ids = token_array(TEXT, tokenizer, cache_dir=tmp_path)
    assert isinstance(ids, np.memmap) and not ids.flags.writeable
    assert ids.dtype == np.uint16 and ids.ndim == 1
    assert ids.tolist() == tokenizer.encode(TEXT)
    sidecar = json.loads(next((tmp_path / "tokens").glob("*.json")).read_text())
    assert sidecar["length"] == len(ids) and sidecar["dtype"] == "uint16"
    assert sidecar["tokenizer"]["type"] == kind
    assert sidecar["tokenizer"]["vocab_size"] == tokenizer.vocab_size


def test_a_second_call_reads_the_cache_without_tokenizing(char, tmp_path, monkeypatch):
    first = token_array(TEXT, char, cache_dir=tmp_path)
    refuse_to_encode(char, monkeypatch)
    again = token_array(TEXT, char, cache_dir=tmp_path)
    assert again.filename == first.filename
    assert np.array_equal(again, first)
    assert len(entry_files(tmp_path)) == 2  # one array, one sidecar


def test_a_changed_text_or_tokenizer_makes_a_new_entry(char, bpe, tmp_path):
    token_array(TEXT, char, cache_dir=tmp_path)
    other_text = token_array(TEXT[:-1], char, cache_dir=tmp_path)
    assert other_text.tolist() == char.encode(TEXT[:-1])
    token_array(TEXT, bpe, cache_dir=tmp_path)
    # Same vocabulary size, different ids: another tokenizer, another entry.
    reordered = CharTokenizer.from_vocab(reversed(char.itos))
    ids = token_array(TEXT, reordered, cache_dir=tmp_path)
    assert ids.tolist() == reordered.encode(TEXT)
    assert len(entry_files(tmp_path)) == 8


def test_the_dtype_is_uint16_up_to_65536_ids_then_uint32(tmp_path):
    assert token_dtype(2**16) == np.uint16 and token_dtype(2**16 + 1) == np.uint32
    symbols = [chr(c) for c in range(0x100, 0x100 + 70_000) if not 0xD800 <= c < 0xE000]
    wide = CharTokenizer.from_vocab(symbols)
    text = symbols[0] + symbols[-1] + symbols[65_536]
    ids = token_array(text, wide, cache_dir=tmp_path)
    assert ids.dtype == np.uint32
    assert ids.tolist() == [0, len(symbols) - 1, 65_536]


def damage_truncate(path):
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def damage_flip_a_byte(path):
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))


def damage_sidecar(path):
    path.with_suffix(".json").write_text("{not json")


def damage_remove_sidecar(path):
    path.with_suffix(".json").unlink()


@pytest.mark.parametrize(
    "damage, message",
    [
        (damage_truncate, "damaged"),
        (damage_flip_a_byte, "altered"),
        (damage_sidecar, "damaged"),
        (damage_remove_sidecar, "no sidecar"),
    ],
)
def test_a_damaged_entry_is_reported_and_tokenized_again(char, tmp_path, damage, message):
    path = Path(token_array(TEXT, char, cache_dir=tmp_path).filename)
    damage(path)
    with pytest.warns(UserWarning, match=message) as caught:
        ids = token_array(TEXT, char, cache_dir=tmp_path)
    assert str(path.with_suffix("")) in str(caught[0].message)  # names the entry
    assert ids.tolist() == char.encode(TEXT)
    assert token_array(TEXT, char, cache_dir=tmp_path).tolist() == char.encode(TEXT)


def test_random_batches_read_a_memory_mapped_array_as_an_in_memory_one(char, tmp_path):
    ids = token_array(TEXT, char, cache_dir=tmp_path)
    in_memory = np.array(char.encode(TEXT), dtype=np.int64)
    for make in (
        lambda tokens: RandomBlocks(tokens, block_size=16, batch_size=4, seed=3),
        lambda tokens: RandomWindows(tokens, context=8, batch_size=4, seed=3),
    ):
        mapped, reference = make(ids), make(in_memory)
        for _ in range(3):
            (x, y), (x_ref, y_ref) = next(mapped), next(reference)
            assert x.dtype == np.int64 and np.array_equal(x, x_ref) and np.array_equal(y, y_ref)


def test_shakespeare_splits_hold_whole_plays(tmp_path):
    tokenizer = CharTokenizer(data.shakespeare("train"))
    val = shakespeare_tokens("val", tokenizer, cache_dir=tmp_path)
    assert tokenizer.decode(val.tolist()) == data.shakespeare("val")
    assert tokenizer.decode(val[-200:].tolist()) == data.shakespeare("val")[-200:]
    assert [p.name for p in (tmp_path / "tokens").glob("*.npy")][0].startswith(
        f"shakespeare-val-char{tokenizer.vocab_size}-"
    )


def test_the_default_cache_follows_lmcore_cache(char, tmp_path, monkeypatch):
    monkeypatch.setenv("LMCORE_CACHE", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere"
    token_array("to be", char)
    assert len(entry_files(tmp_path / "elsewhere")) == 2


def test_an_empty_text_is_refused(char, tmp_path):
    with pytest.raises(ValueError, match="non-empty"):
        token_array("", char, cache_dir=tmp_path)
