"""The protocol every lmcore tokenizer follows, and its one file format.

A tokenizer has ``encode(text) -> ids``, ``decode(ids) -> text``, ``vocab_size`` and
``special_tokens`` (name → id), and from this base class: ``encode_batch`` for many
texts, ``encode_iterable`` for a stream of text larger than memory (the lines of a
file, say: ids come out lazily, and equal those of encoding the whole text at once),
``save`` and ``load``. Every tokenizer writes the same JSON file (``"format":
"lmcore-tokenizer"``, a ``"version"`` and its ``"type"``), atomically, and
:func:`load` reads any of them back as the right class.

Example:
    >>> import tempfile, pathlib
    >>> from lmcore.tokenizers import CharTokenizer, load
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "chars.json"
    >>> CharTokenizer("hello world").save(path)
    >>> tok = load(path)
    >>> tok, tok.encode_batch(["hello", "world"])
    (CharTokenizer(vocab_size=8, unk='error'), [[3, 2, 4, 4, 5], [7, 5, 6, 4, 1]])
    >>> list(tok.encode_iterable(iter(["hel", "lo"]))) == tok.encode("hello")
    True
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from lmcore.atomic import write_atomically
from lmcore.tokenizers.unknown import require_text

__all__ = ["FORMAT", "VERSION", "Tokenizer", "load"]

FORMAT = "lmcore-tokenizer"
VERSION = 2  # 1: each class's own layout (still read)
_CLASSES: dict[str, type[Tokenizer]] = {}  # "type" in the file -> class


class Tokenizer:
    """Base class: subclasses define ``kind``, ``encode``, ``decode``, ``vocab_size``,
    ``_settings()`` (what the file stores) and ``_from_settings(data)``. Streaming uses
    ``_pattern`` (the regex that cuts text into pieces encoded independently) and
    ``_encode_pieces(pieces)``."""

    kind = ""  # the "type" written in the file
    special_tokens: dict[str, int] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _CLASSES[cls.kind] = cls

    # -- encoding ------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        """The ids of each text."""
        if isinstance(texts, str):
            raise TypeError("encode_batch takes a list of texts; for one text call encode")
        return [self.encode(text) for text in texts]

    def encode_iterable(self, texts: Iterable[str]) -> Iterator[int]:
        """Ids of the concatenation of ``texts``, yielded as soon as they are final.

        Only the last two pieces of text seen so far (what the next text could still
        extend: a word cut in two, a run of spaces) wait in memory, so a file larger than
        memory streams through: ``encode_iterable(open(path))``.
        """
        pending = ""
        for text in texts:
            pending += require_text(text, f"{type(self).__name__}.encode_iterable")
            # All matches but the last two are final: the text after them is known. The
            # last may grow (a word cut in two); the one before may still join it (a word
            # cut at its apostrophe, "distill" + "'d"). Matching only a prefix would not do:
            # a run of spaces matches differently at the end of a string.
            matches = list(self._pattern.finditer(pending))
            if len(matches) < 3:
                continue
            yield from self._encode_pieces([m.group() for m in matches[:-2]])
            pending = pending[matches[-2].start() :]
        if pending:
            yield from self._encode_pieces([m.group() for m in self._pattern.finditer(pending)])

    def _encode_pieces(self, pieces: list[str]) -> list[int]:
        return [i for piece in pieces for i in self.encode(piece)]

    # -- files ---------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the tokenizer as UTF-8 JSON (written to a temporary file, then renamed)."""
        data = {"format": FORMAT, "version": VERSION, "type": self.kind, **self._settings()}
        text = json.dumps(data, ensure_ascii=False)
        write_atomically(Path(path), lambda temporary: Path(temporary).write_text(text, "utf-8"))

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Read a tokenizer written by ``save`` (by this class, or any with ``Tokenizer.load``)."""
        data = _read(path)
        try:
            kind = _kind(data, path)
        except ValueError:
            if cls is Tokenizer:
                raise
            raise ValueError(
                f"{path} is not an lmcore-{cls.kind} file (written by {cls.__name__}.save)"
            ) from None
        if cls is not Tokenizer and kind != cls.kind:
            raise ValueError(
                f"{path} holds a {kind!r} tokenizer, not a {cls.kind!r} one; "
                "lmcore.tokenizers.load reads any kind."
            )
        return _CLASSES[kind]._from_settings(data)

    def _settings(self) -> dict:
        raise NotImplementedError

    @classmethod
    def _from_settings(cls, data: dict) -> Tokenizer:
        raise NotImplementedError


def load(path: str | Path) -> Tokenizer:
    """Any tokenizer written by ``save``, as its own class."""
    return Tokenizer.load(path)


def _read(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer file at {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{path} is not a tokenizer file (JSON written by save): {error}"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a tokenizer file (JSON written by save)")
    return data


def _kind(data: dict, path) -> str:
    """The tokenizer type of a file, of this format or of the earlier layouts."""
    if data.get("format") == FORMAT:
        if data.get("version") != VERSION:
            raise ValueError(
                f"{path} has format version {data.get('version')}; this lmcore reads "
                f"{VERSION} (and the layouts before it); upgrade lmcore to read it."
            )
        kind = data.get("type")
    elif data.get("format") == "lmcore-bpe" and data.get("version") == 1:
        kind = "bpe"
    else:
        kind = data.get("type")
    if kind not in _CLASSES:
        raise ValueError(f"{path} is not an lmcore tokenizer file (unknown type {kind!r})")
    return kind
