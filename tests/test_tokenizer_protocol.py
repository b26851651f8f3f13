"""One protocol for every tokenizer: encode_batch, encode_iterable (streams equal to
encoding the whole text), one versioned file format read back by lmcore.tokenizers.load,
and the earlier layouts still read."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmcore import data
from lmcore.tokenizers import BPETokenizer, CharTokenizer, Tokenizer, WordTokenizer, gpt2, load

TEXT = data.shakespeare("train")[:20_000]
TOKENIZERS = {
    "char": CharTokenizer(TEXT),
    "word": WordTokenizer(TEXT, unk="<unk>"),
    "bpe": BPETokenizer.train(TEXT, vocab_size=300, special_tokens=["<|endoftext|>"]),
    "gpt2": gpt2(),
}


@pytest.mark.parametrize("name", TOKENIZERS)
def test_every_tokenizer_follows_the_protocol(name, tmp_path):
    tokenizer = TOKENIZERS[name]
    assert isinstance(tokenizer, Tokenizer) and tokenizer.vocab_size > 0
    assert isinstance(tokenizer.special_tokens, dict)
    texts = [TEXT[:100], TEXT[100:250], ""]
    assert tokenizer.encode_batch(texts) == [tokenizer.encode(t) for t in texts]
    with pytest.raises(TypeError, match="list of texts"):
        tokenizer.encode_batch("one text")
    path = tmp_path / f"{name}.json"
    tokenizer.save(path)
    header = json.loads(path.read_text(encoding="utf-8"))
    assert (header["format"], header["version"]) == ("lmcore-tokenizer", 2)
    again = load(path)
    assert type(again) is type(tokenizer)
    assert again.encode(TEXT[:2000]) == tokenizer.encode(TEXT[:2000])
    assert type(tokenizer).load(path).vocab_size == tokenizer.vocab_size


@pytest.mark.parametrize("name", TOKENIZERS)
def test_streaming_equals_encoding_the_whole_text(name):
    tokenizer = TOKENIZERS[name]
    text = TEXT[:5000]
    lines = text.splitlines(keepends=True)
    expected = (
        tokenizer.encode_ordinary(text) if name in ("bpe", "gpt2") else tokenizer.encode(text)
    )
    assert list(tokenizer.encode_iterable(iter(lines))) == expected
    pieces = [text[i : i + 7] for i in range(0, len(text), 7)]  # cuts words and spaces
    assert list(tokenizer.encode_iterable(pieces)) == expected


@settings(max_examples=80, deadline=None)
@given(st.lists(st.text(alphabet=" \n\tab'!é1", max_size=8), max_size=8))
def test_any_cut_streams_exactly(pieces):
    gpt, words = TOKENIZERS["gpt2"], TOKENIZERS["word"]
    assert list(gpt.encode_iterable(pieces)) == gpt.encode_ordinary("".join(pieces))
    assert list(words.encode_iterable(pieces)) == words.encode("".join(pieces))


def test_encode_iterable_is_lazy():
    def lines():
        yield "To be, or not to be"
        raise RuntimeError("read too far")

    stream = TOKENIZERS["gpt2"].encode_iterable(lines())
    assert next(stream) == TOKENIZERS["gpt2"].encode("To")[0]


def test_earlier_layouts_still_load(tmp_path):
    old_char = tmp_path / "char.json"
    old_char.write_text(json.dumps({"type": "char", "symbols": ["a", "b"], "unk": "error"}))
    assert load(old_char).encode("ba") == [1, 0]
    bpe = TOKENIZERS["bpe"]
    old_bpe = tmp_path / "bpe.json"
    old_bpe.write_text(json.dumps({"format": "lmcore-bpe", "version": 1, **bpe._settings()}))
    assert load(old_bpe) == bpe


def test_load_names_what_is_wrong(tmp_path):
    path = tmp_path / "t.json"
    with pytest.raises(FileNotFoundError, match="no tokenizer file"):
        load(path)
    path.write_text("not json")
    with pytest.raises(ValueError, match="not a tokenizer file"):
        load(path)
    CharTokenizer("ab").save(path)
    with pytest.raises(ValueError, match="holds a 'char' tokenizer, not a 'word' one"):
        WordTokenizer.load(path)
    path.write_text(json.dumps({"format": "lmcore-tokenizer", "version": 99, "type": "char"}))
    with pytest.raises(ValueError, match="format version 99"):
        load(path)
