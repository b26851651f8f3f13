"""Word-level tokenizer: one id per word or punctuation mark seen in a text.

Tokens are matched by :data:`WORD_PATTERN`: a run of letters, digits or underscores
with optional inner apostrophes (``don't``, ``o'er``), a single punctuation mark, or
a newline. Spaces and tabs are not tokens, so they are lost: ``decode`` joins the
tokens with one space, attaches closing punctuation (``. , ; : ! ? ) ] }``) to the
word before it and opening brackets to the word after, and puts no space around
newlines. ``decode(encode(s))`` is therefore a readable normalisation of ``s``,
not ``s`` itself.

Example:
    >>> tok = WordTokenizer("To be, or not to be:\\nthat is the question.")
    >>> tok.encode("to be, or not")
    [12, 0, 2, 8, 7]
    >>> tok.decode(tok.encode("To be,  or not to be:\\nthat is"))
    'To be, or not to be:\\nthat is'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import regex

from lmcore.tokenizers.base import Tokenizer
from lmcore.tokenizers.unknown import check_ids, check_policy, require_text, unseen_error

#: A word (with inner apostrophes), one punctuation mark, or a newline.
WORD_PATTERN = r"\w+(?:'\w+)*|[^\w\s]|\n"

_WORD_RE = regex.compile(WORD_PATTERN)
_NO_SPACE_BEFORE = set(".,;:!?)]}\n")
_NO_SPACE_AFTER = set("([{\n")


class WordTokenizer(Tokenizer):
    """Ids for the words of a text, most frequent first (ties in alphabetical order).

    Args:
        text: str with at least one word; its words are the vocabulary.
        min_count: keep only words seen at least this many times.
        max_vocab: keep at most this many ids (the unknown token included).
        unk: ``"error"`` (default) raises on an unseen word; any other string names
            an extra token, with the last id, that unseen words map to. When
            ``min_count`` or ``max_vocab`` leave words out, ``unk`` must name a token.

    Attributes:
        itos: list[str], id → word; stoi: dict[str, int], word → id.
    """

    kind = "word"
    _pattern = _WORD_RE

    def __init__(
        self, text: str, min_count: int = 1, max_vocab: int | None = None, unk: str = "error"
    ):
        counts = Counter(tokenize(text))
        if not counts:
            raise ValueError("WordTokenizer needs a text with at least one word")
        words = sorted(counts, key=lambda w: (-counts[w], w))
        kept = [w for w in words if counts[w] >= min_count]
        if max_vocab is not None:
            kept = kept[: max_vocab - (unk != "error")]
        if len(kept) < len(words) and unk == "error":
            raise ValueError(
                f"min_count={min_count} and max_vocab={max_vocab} leave {len(words) - len(kept)} "
                f"words of the text out of the vocabulary, so unk='error' could not encode the "
                f"text itself; pass unk='<unk>'"
            )
        self._setup(kept, unk)

    @classmethod
    def from_vocab(cls, words: Iterable[str], unk: str = "error") -> WordTokenizer:
        """A tokenizer whose ids are the positions of ``words``, in order."""
        tok = cls.__new__(cls)
        tok._setup(list(words), unk)
        return tok

    def _setup(self, words: list[str], unk: str) -> None:
        if not words or len(set(words)) != len(words):
            raise ValueError("the vocabulary must be a non-empty list of distinct words")
        self.unk = check_policy(unk)
        self.itos = list(words)
        if unk != "error":
            if unk in self.itos:
                raise ValueError(f"the unknown token {unk!r} is also a word of the vocabulary")
            self.itos.append(unk)
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.unk_id = self.stoi.get(unk)

    @property
    def vocab_size(self) -> int:
        """Number of ids, the unknown token included."""
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """Ids of the tokens of ``text`` (see :data:`WORD_PATTERN`)."""
        require_text(text, "WordTokenizer.encode")
        stoi, ids, first_seen = self.stoi, [], {}
        for m in _WORD_RE.finditer(text):
            i = stoi.get(m.group(), self.unk_id)
            if i is None:
                first_seen.setdefault(m.group(), m.start())
            ids.append(i)
        if first_seen:
            raise unseen_error("word", first_seen, "a text that contains them")
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Readable text of ``ids``: one space between words, none before punctuation."""
        words = [self.itos[i] for i in check_ids(ids, len(self.itos), repr(self))]
        return detokenize(words)

    def _settings(self) -> dict:
        return {"words": self.itos[: -1 if self.unk_id is not None else None], "unk": self.unk}

    @classmethod
    def _from_settings(cls, data: dict) -> WordTokenizer:
        return cls.from_vocab(data["words"], unk=data["unk"])

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={self.vocab_size}, unk={self.unk!r})"


def tokenize(text: str) -> list[str]:
    """The tokens of ``text`` matched by :data:`WORD_PATTERN`."""
    return _WORD_RE.findall(text)


def detokenize(words: list[str]) -> str:
    """Join tokens into readable text (the spacing rules of the module docstring)."""
    parts = []
    for k, w in enumerate(words):
        if k and w not in _NO_SPACE_BEFORE and words[k - 1] not in _NO_SPACE_AFTER:
            parts.append(" ")
        parts.append(w)
    return "".join(parts)
