"""Tests of lmcore.tokenizers: char, word, byte-level BPE (trainers, encoding, files) and GPT-2."""

from __future__ import annotations

import json
import random
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmcore.data import DataError, shakespeare
from lmcore.tokenizers import (
    GPT2_PATTERN,
    BPETokenizer,
    CharTokenizer,
    WordTokenizer,
    bpe,
    bpe_train,
    bytes_to_unicode,
    gpt2,
    load_gpt2,
)
from lmcore.tokenizers.gpt2 import ASSETS, SHA256

SAMPLE = """First Citizen:
Before we proceed any further, hear me speak.

All:
Speak, speak. We'll o'er-leap it; 'tis 1,234 ducats' worth!

def f(x):\n\treturn x ** 2  # 你好，世界 🙂 café naïve Ωμέγα
"""


@pytest.fixture(scope="module")
def val_text() -> str:
    return shakespeare("val")


@pytest.fixture(scope="module")
def small_bpe() -> BPETokenizer:
    return BPETokenizer.train(SAMPLE * 3, 300, special_tokens=["<|endoftext|>"])


# --------------------------------------------------------------------------- GPT-2


def varied_strings(val_text: str) -> list[str]:
    """A few hundred strings of many kinds, deterministic."""
    fixed = [
        "Hello world",
        "",
        " ",
        "  ",
        "\n",
        "\n\n\n",
        "   leading spaces",
        "trailing spaces   ",
        "tabs\tand\ttabs\t\t",
        "mixed \t\n whitespace \r\n end",
        "I'm can't won't they're we've you'll he'd it's",
        "I'M CAN'T WON'T THEY'RE",
        "'s 't 're 've 'm 'll 'd ''",
        "1234567890 3.14159 -42 1e10 0x1F 2024-01-01",
        "$100,000.00 and 50% off!!!",
        "def f(x):\n    return x**2 + 1  # comment",
        "for (int i = 0; i < n; ++i) { a[i] = b[i] * c; }",
        "<html><body class='main'>Hi &amp; bye</body></html>",
        '{"key": [1, 2, 3], "nested": {"a": null}}',
        "你好，世界！这是一个测试。",
        "日本語のテキストとカタカナ",
        "한국어 텍스트",
        "Здравствуй, мир! Ёжик",
        "Γειά σου Κόσμε",
        "مرحبا بالعالم",
        "שלום עולם",
        "हिन्दी पाठ",
        "🙂🙃😀 emoji 👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵",
        "café naïve résumé façade Ångström",
        "e\u0301 combining, lone \u0301 mark, \u200b zero width",
        "control \x00\x01\x02\x7f\x1b[31m chars",
        "\ufeffBOM and \ufffd replacement",
        "𝕄𝕒𝕥𝕙 𝔽𝕣𝕒𝕜𝕥𝕦𝕣 ∑∫∂ √2 ≠ ∞",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "!!!!!!!!????????........,,,,,,;;;;",
        "<|endoftext|> as plain text",
        "Mixed中文and English混合text123数字",
        "ALL CAPS SHOUTING AND lower case whisper",
        "https://example.com/path?query=1&b=two#frag",
        "user@example.com  +1 (555) 123-4567",
    ]
    lines = [line for line in val_text[:60_000].splitlines() if line.strip()][:160]
    rng = random.Random(0)
    pieces = [*fixed, *lines]
    mixes = ["".join(rng.choice(pieces) for _ in range(rng.randint(2, 4))) for _ in range(100)]
    return fixed + lines + mixes


@pytest.fixture(scope="module")
def tiktoken_gpt2():
    """tiktoken's GPT-2 encoding, built from lmcore's vendored files."""
    tiktoken = pytest.importorskip("tiktoken")
    encoder = json.loads((ASSETS / "encoder.json").read_text(encoding="utf-8"))
    char_to_byte = {c: b for b, c in bytes_to_unicode().items()}
    ranks = {bytes(char_to_byte[c] for c in t): i for t, i in encoder.items() if i != 50256}
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 50256},
    )


def test_gpt2_known_ids():
    tok = gpt2()
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.encode("!") == [0]
    assert tok.encode(" the") == [262]
    assert tok.encode("\n") == [198]
    assert tok.encode("<|endoftext|>", allowed_special="all") == [50256]
    assert tok.vocab_size == 50257
    assert gpt2() is tok  # loaded once


def test_gpt2_matches_tiktoken(tiktoken_gpt2, val_text):
    tok = gpt2()
    strings = varied_strings(val_text)
    assert len(strings) >= 300
    for s in strings:
        assert tok.encode(s, allowed_special="none") == tiktoken_gpt2.encode_ordinary(s), s
    big = val_text[:100_000]
    assert tok.encode(big) == tiktoken_gpt2.encode_ordinary(big)
    rng = random.Random(1)
    letters = "".join(rng.choice("abcdefghijklmnopqrstuvwxyzé") for _ in range(5000))
    for long in ("a" * 5000, letters, " " * 3000, "!?" * 2000, "1" * 3000):
        assert tok.encode(long) == tiktoken_gpt2.encode_ordinary(long)
    text = "a<|endoftext|>b"
    assert tok.encode(text, allowed_special="all") == tiktoken_gpt2.encode(
        text, allowed_special="all"
    )


def test_gpt2_checksum_errors(tmp_path):
    for name in SHA256:
        shutil.copy(ASSETS / name, tmp_path / name)
    assert load_gpt2(tmp_path).encode("Hello world") == [15496, 995]
    with (tmp_path / "vocab.bpe").open("a", encoding="utf-8") as f:
        f.write("x y\n")
    with pytest.raises(DataError, match="vocab.bpe.*altered.*" + SHA256["vocab.bpe"]):
        load_gpt2(tmp_path)
    (tmp_path / "encoder.json").unlink()
    with pytest.raises(DataError, match="encoder.json.*missing.*restore"):
        load_gpt2(tmp_path)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_gpt2_round_trip(s):
    assert gpt2().decode(gpt2().encode(s, allowed_special="none")) == s


# ----------------------------------------------------------------------- BPE training

TRAIN_TEXTS = [
    SAMPLE,
    "aaaaaaaaaaaaaaaa aaaaaaa aaa a aa aaaa ab ab abab ba baba bbbb",
    "low lower lowest newer newest wider wide " * 5,
    "你好世界你好你好 🙂🙂🙂 👍👍 ééé",
]


@pytest.mark.parametrize("text", TRAIN_TEXTS)
def test_incremental_matches_naive(text):
    fast = BPETokenizer.train(text, 256 + 60)
    slow = BPETokenizer.train_naive(text, 256 + 60)
    assert fast.merges == slow.merges


def test_incremental_matches_naive_on_shakespeare(val_text):
    words = bpe_train.count_words(val_text[:20_000])
    assert bpe_train.train_incremental(words, 150) == bpe_train.train_naive(words, 150)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab c\n!é", max_size=80))
def test_incremental_matches_naive_property(text):
    words = bpe_train.count_words(text)
    assert bpe_train.train_incremental(words, 25) == bpe_train.train_naive(words, 25)


def test_tie_breaking_is_documented_rule():
    # (97, 98) "ab" and (99, 100) "cd" both occur twice: the lower pair wins the tie
    tok = BPETokenizer.train("cd,ab,cd,ab", 257)
    assert tok.describe_merges() == [{"id": 256, "left": b"a", "right": b"b", "token": b"ab"}]


def test_vocab_size_and_determinism():
    tok = BPETokenizer.train(SAMPLE * 3, 300, special_tokens=["<|endoftext|>", "<|pad|>"])
    assert tok.vocab_size == 300
    assert tok.special_tokens == {"<|endoftext|>": 298, "<|pad|>": 299}
    assert len(tok.merges) == 300 - 256 - 2
    assert tok == BPETokenizer.train(SAMPLE * 3, 300, special_tokens=["<|endoftext|>", "<|pad|>"])
    # a text that runs out of pairs gives a smaller vocabulary
    assert BPETokenizer.train("abc", 300).vocab_size == 258


def test_train_progress_bar(capsys):
    BPETokenizer.train(SAMPLE, 270, progress=True)
    assert "BPE merges" in capsys.readouterr().err


def test_training_ignores_special_tokens():
    text = "hello<|endoftext|>" * 20
    tok = BPETokenizer.train(text, 300, special_tokens=["<|endoftext|>"])
    tokens = {row["token"] for row in tok.describe_merges()}
    assert not any(b"|" in t or b"<" in t for t in tokens)


def test_bad_training_inputs():
    with pytest.raises(ValueError, match="at least 256"):
        BPETokenizer.train(SAMPLE, 200)
    with pytest.raises(ValueError, match="at least 257"):
        BPETokenizer.train(SAMPLE, 256, special_tokens=["<|endoftext|>"])
    with pytest.raises(ValueError, match="non-empty"):
        BPETokenizer.train("", 300)


def test_compression_improves_with_vocab_size(val_text):
    train = shakespeare("train")[:300_000]
    big = BPETokenizer.train(train, 1024)
    merges = list(big.merges)
    sample = val_text[:50_000]
    n_bytes = len(sample.encode())
    ratios = []
    for k in (0, 100, 300, 768):
        tok = BPETokenizer(merges[:k])
        ids = tok.encode(sample)
        assert tok.decode(ids) == sample
        ratios.append(n_bytes / len(ids))
    assert ratios[0] == 1.0
    assert all(a < b for a, b in zip(ratios, ratios[1:])), ratios
    assert ratios[-1] > 2.0
    # greedy training is prefix-consistent: a smaller vocabulary is a prefix of the merges
    assert list(BPETokenizer.train(train, 400).merges) == merges[:144]


# ----------------------------------------------------------------------- BPE encoding


def test_encode_decode_small(small_bpe):
    ids = small_bpe.encode(SAMPLE)
    assert len(ids) < len(SAMPLE.encode())
    assert small_bpe.decode(ids) == SAMPLE
    assert small_bpe.encode("") == []
    assert small_bpe.decode([]) == ""


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_bpe_round_trip(small_bpe, s):
    assert small_bpe.decode(small_bpe.encode(s, allowed_special="none")) == s


def test_long_chunks_merge_like_short_ones(monkeypatch):
    rng = random.Random(2)
    chunks = ["a" * 300, "".join(rng.choice("abcdefghij klmnop") for _ in range(400))]
    tok = gpt2()
    monkeypatch.setattr(bpe, "LONG_CHUNK", 10**9)
    simple = [tok._encode_chunk(c) for c in chunks]
    monkeypatch.setattr(bpe, "LONG_CHUNK", 0)
    assert [tok._encode_chunk(c) for c in chunks] == simple


def test_special_tokens(small_bpe):
    eot = small_bpe.special_tokens["<|endoftext|>"]
    text = "Speak<|endoftext|>hear"
    with pytest.raises(ValueError, match=r"'<\|endoftext\|>' at character 5.*allowed_special"):
        small_bpe.encode(text)
    ids = small_bpe.encode(text, allowed_special="all")
    assert ids.count(eot) == 1
    assert small_bpe.encode(text, allowed_special={"<|endoftext|>"}) == ids
    plain = small_bpe.encode(text, allowed_special="none")
    assert eot not in plain
    assert small_bpe.decode(ids) == small_bpe.decode(plain) == text
    with pytest.raises(ValueError, match="not special tokens"):
        small_bpe.encode(text, allowed_special={"<|pad|>"})
    with pytest.raises(ValueError, match="allowed_special must be"):
        small_bpe.encode(text, allowed_special="yes")


def test_set_of_allowed_specials_raises_on_others():
    tok = BPETokenizer([], special_tokens=["<a>", "<b>"])
    assert tok.encode("x<a>", allowed_special={"<a>"}) == [ord("x"), 256]
    with pytest.raises(ValueError, match="'<b>'"):
        tok.encode("x<a><b>", allowed_special={"<a>"})


def test_decode_errors(small_bpe):
    e_acute = "é".encode()
    assert small_bpe.decode([e_acute[0]]) == "\ufffd"
    with pytest.raises(UnicodeDecodeError):
        small_bpe.decode([e_acute[0]], errors="strict")
    assert small_bpe.decode_bytes([e_acute[0], e_acute[1]]) == e_acute
    for bad in (300, -1):
        with pytest.raises(ValueError, match=f"id {bad} at position 1 is not in range"):
            small_bpe.decode([104, bad])
    with pytest.raises(ValueError, match="integers"):
        small_bpe.decode([1.5])


def test_describe_merges(small_bpe):
    rows = small_bpe.describe_merges(5)
    assert len(rows) == 5
    for row in rows:
        assert row["left"] + row["right"] == row["token"] == small_bpe.vocab[row["id"]]
    assert len(small_bpe.describe_merges()) == len(small_bpe.merges)


def test_bpe_save_load(tmp_path, small_bpe):
    path = tmp_path / "bpe.json"
    small_bpe.save(path)
    loaded = BPETokenizer.load(path)
    assert loaded == small_bpe
    assert loaded.vocab == small_bpe.vocab
    assert loaded.encode(SAMPLE) == small_bpe.encode(SAMPLE)
    custom = BPETokenizer.train(SAMPLE, 270, pattern=r"\S+|\s+")
    custom.save(path)
    assert BPETokenizer.load(path).pattern == r"\S+|\s+"
    gpt2().save(path)
    assert BPETokenizer.load(path).encode("Hello world") == [15496, 995]
    path.write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not an lmcore-bpe file"):
        BPETokenizer.load(path)


def test_bad_constructor_inputs():
    with pytest.raises(ValueError, match="not defined before it"):
        BPETokenizer([(1, 300)])
    with pytest.raises(ValueError, match="byte_ids"):
        BPETokenizer([], byte_ids=[0] * 256)


# ----------------------------------------------------------------------- char and word


def test_char_tokenizer():
    tok = CharTokenizer("hello world")
    assert tok.vocab_size == 8
    assert tok.itos == sorted(set("hello world"))
    assert tok.decode(tok.encode("hello")) == "hello"
    with pytest.raises(ValueError, match=r"'é' \(first at character 4.*unk='<unk>'"):
        tok.encode("hellé")
    with pytest.raises(ValueError, match="non-empty"):
        CharTokenizer("")
    with pytest.raises(ValueError, match="not in range"):
        tok.decode([8])


def test_char_unk():
    tok = CharTokenizer("abc", unk="<unk>")
    assert tok.vocab_size == 4
    assert tok.encode("axb") == [0, 3, 1]
    assert tok.decode(tok.encode("axb")) == "a<unk>b"
    with pytest.raises(ValueError, match="unk must be"):
        CharTokenizer("abc", unk="")


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_char_round_trip(data):
    alphabet = data.draw(st.text(min_size=1))
    tok = CharTokenizer(alphabet)
    s = data.draw(st.text(alphabet=sorted(set(alphabet))))
    assert tok.decode(tok.encode(s)) == s


def test_word_tokenizer():
    text = "To be, or not to be: that is the question.\nWhether 'tis nobler"
    tok = WordTokenizer(text)
    assert tok.decode(tok.encode(text)) == (
        "To be, or not to be: that is the question.\nWhether ' tis nobler"
    )
    assert tok.itos[0] == "be"  # most frequent first
    with pytest.raises(ValueError, match=r"'sleep' \(first at character 3"):
        tok.encode("to sleep")
    with pytest.raises(ValueError, match="at least one word"):
        WordTokenizer("   ")


def test_word_vocab_limits():
    text = "a a a b b c"
    with pytest.raises(ValueError, match="unk='<unk>'"):
        WordTokenizer(text, min_count=2)
    tok = WordTokenizer(text, min_count=2, unk="<unk>")
    assert tok.itos == ["a", "b", "<unk>"]
    assert tok.encode("a c z") == [0, 2, 2]
    tok = WordTokenizer(text, max_vocab=2, unk="<unk>")
    assert tok.itos == ["a", "<unk>"]


def test_char_word_save_load(tmp_path):
    for tok in (
        CharTokenizer(SAMPLE),
        CharTokenizer(SAMPLE, unk="<unk>"),
        WordTokenizer(SAMPLE),
        WordTokenizer(SAMPLE, min_count=2, unk="<?>"),
    ):
        path = tmp_path / "tok.json"
        tok.save(path)
        loaded = type(tok).load(path)
        assert (loaded.itos, loaded.unk) == (tok.itos, tok.unk)
        assert loaded.encode(SAMPLE) == tok.encode(SAMPLE)
    with pytest.raises(ValueError, match="not a 'char' one"):
        CharTokenizer.load(path)
