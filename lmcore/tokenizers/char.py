"""Character-level tokenizer: one id per distinct character of a text.

Example:
    >>> tok = CharTokenizer("hello world")
    >>> tok.vocab_size, tok.encode("hello")
    (8, [3, 2, 4, 4, 5])
    >>> tok.decode([3, 2, 4, 4, 5])
    'hello'
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from lmcore.tokenizers.base import Tokenizer
from lmcore.tokenizers.unknown import check_ids, check_policy, require_text, unseen_error


class CharTokenizer(Tokenizer):
    """Ids are the positions of the text's characters in sorted (code point) order.

    Args:
        text: str, non-empty; its set of characters is the vocabulary.
        unk: ``"error"`` (default) raises on a character outside the vocabulary;
            any other string names an extra token, with the last id, that unseen
            characters map to (and that ``decode`` writes back as that name).

    Attributes:
        itos: list[str], id → character (the unknown token's name last, if any).
        stoi: dict[str, int], character → id.
    """

    kind = "char"

    def __init__(self, text: str, unk: str = "error"):
        if not isinstance(text, str) or not text:
            raise ValueError("CharTokenizer needs a non-empty str to take its characters from")
        self._setup(sorted(set(text)), unk)

    @classmethod
    def from_vocab(cls, symbols: Iterable[str], unk: str = "error") -> CharTokenizer:
        """A tokenizer whose ids are the positions of ``symbols`` (single characters), in order."""
        tok = cls.__new__(cls)
        tok._setup(list(symbols), unk)
        return tok

    def _setup(self, symbols: list[str], unk: str) -> None:
        bad = [s for s in symbols if not isinstance(s, str) or len(s) != 1]
        if bad or len(set(symbols)) != len(symbols) or not symbols:
            raise ValueError(f"the vocabulary must be distinct single characters; got {bad[:5]}")
        self.unk = check_policy(unk)
        self.itos = list(symbols)
        if unk != "error":
            if unk in self.itos:
                raise ValueError(f"the unknown token {unk!r} is also a character of the text")
            self.itos.append(unk)
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.unk_id = self.stoi.get(unk)

    @property
    def vocab_size(self) -> int:
        """Number of ids, the unknown token included."""
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """Ids of the characters of ``text``, one per character."""
        require_text(text, "CharTokenizer.encode")
        stoi = self.stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            pass
        if self.unk_id is not None:
            return [stoi.get(c, self.unk_id) for c in text]
        first_seen: dict[str, int] = {}
        for i, c in enumerate(text):
            if c not in stoi:
                first_seen.setdefault(c, i)
        raise unseen_error("character", first_seen, "a text that contains them")

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; an id outside ``range(vocab_size)`` raises ``ValueError``."""
        itos = self.itos
        return "".join([itos[i] for i in check_ids(ids, len(itos), repr(self))])

    def encode_iterable(self, texts: Iterable[str]) -> Iterator[int]:
        """Ids of the concatenation of ``texts``, one text at a time (a character never
        spans two texts)."""
        for text in texts:
            yield from self.encode(text)

    def _settings(self) -> dict:
        return {"symbols": self.itos[: -1 if self.unk_id is not None else None], "unk": self.unk}

    @classmethod
    def _from_settings(cls, data: dict) -> CharTokenizer:
        return cls.from_vocab(data["symbols"], unk=data["unk"])

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size}, unk={self.unk!r})"
