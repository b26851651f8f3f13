"""Byte-level BPE tokenizer: train it, encode and decode any text, save and load it.

The vocabulary has three parts, in id order: 256 byte tokens, one token per merge
(merge ``k`` makes id ``256 + k`` from the pair of ids it joins), then the special
tokens. A trained tokenizer gives byte ``b`` the id ``b``; GPT-2 orders its byte
tokens differently, which ``byte_ids`` records. Since every byte has a token, any
text can be encoded, and ``decode(encode(s)) == s`` for every ``str`` ``s`` that
UTF-8 can encode.

Encoding cuts the text into chunks with the pre-tokenization pattern, then applies
the merges inside each chunk in rank order: repeatedly join the adjacent pair whose
merge was learned first (chunks longer than :data:`LONG_CHUNK` bytes do the same
with a heap, :func:`merge_long`, so that a long run of letters stays fast). Chunks
recur (" the", " and"), so the ids of each chunk are kept in a dict cache of at
most :data:`CACHE_SIZE` chunks, emptied when full.

Example:
    >>> tok = BPETokenizer.train("the cat sat on the mat; the end", 261,
    ...                          special_tokens=["<|endoftext|>"])
    >>> tok.describe_merges(1)
    [{'id': 256, 'left': b'a', 'right': b't', 'token': b'at'}]
    >>> tok.encode("the mat<|endoftext|>", allowed_special="all")
    [258, 32, 109, 256, 260]
    >>> tok.decode([258, 32, 109, 256])
    'the mat'
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

from lmcore.tokenizers import bpe_train
from lmcore.tokenizers.base import Tokenizer
from lmcore.tokenizers.pretokenize import GPT2_PATTERN, compiled, special_splitter
from lmcore.tokenizers.unknown import check_ids, require_text

#: Most chunks whose ids the encoding cache holds before it is emptied.
CACHE_SIZE = 1 << 17

#: Chunks longer than this many bytes are merged with a heap (:func:`merge_long`).
LONG_CHUNK = 32


class BPETokenizer(Tokenizer):
    """A byte-level BPE tokenizer.

    Args:
        merges: list of ``(a, b)`` id pairs in rank order; merge ``k`` makes id ``256 + k``.
        special_tokens: names of special tokens (such as ``"<|endoftext|>"``); they get
            the ids after the merges, in this order.
        pattern: pre-tokenization regex (``regex`` syntax), GPT-2's by default.
        byte_ids: list of 256 ids, the id of each byte value; ``range(256)`` by default.

    Attributes:
        merges: dict ``(a, b) -> new id``, in rank order.
        vocab: dict ``id -> bytes`` for every id (special tokens as their UTF-8); read only.
        special_tokens: dict ``name -> id``.
    """

    def __init__(
        self,
        merges: Iterable[tuple[int, int]],
        special_tokens: Iterable[str] | None = None,
        pattern: str = GPT2_PATTERN,
        byte_ids: Iterable[int] | None = None,
    ):
        self.byte_ids = list(range(256)) if byte_ids is None else [int(i) for i in byte_ids]
        if sorted(self.byte_ids) != list(range(256)):
            raise ValueError(
                "byte_ids must give each of the 256 byte values a distinct id in 0..255"
            )
        table = [b""] * 256
        for byte, i in enumerate(self.byte_ids):
            table[i] = bytes([byte])
        self.merges: dict[tuple[int, int], int] = {}
        for k, (a, b) in enumerate(merges):
            new_id = 256 + k
            if not (0 <= a < new_id and 0 <= b < new_id):
                raise ValueError(f"merge {k} ({a}, {b}) refers to an id not defined before it")
            if (a, b) in self.merges:
                raise ValueError(f"merge {k} ({a}, {b}) appears twice")
            self.merges[(a, b)] = new_id
            table.append(table[a] + table[b])
        specials = list(special_tokens or [])
        if len(set(specials)) != len(specials) or not all(
            isinstance(s, str) and s for s in specials
        ):
            raise ValueError(f"special tokens must be distinct non-empty strings, got {specials}")
        self.special_tokens = {s: len(table) + i for i, s in enumerate(specials)}
        table += [s.encode("utf-8") for s in specials]
        self._table = table
        self.vocab: dict[int, bytes] = dict(enumerate(table))
        self.pattern = pattern
        self._regex = compiled(pattern)
        self._splitters: dict[frozenset, object] = {}
        self._cache: dict[str, list[int]] = {}

    # ----------------------------------------------------------------- training
    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        special_tokens: Iterable[str] | None = None,
        pattern: str = GPT2_PATTERN,
        progress: bool = False,
    ) -> BPETokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``.

        Uses the incremental trainer (:func:`~lmcore.tokenizers.bpe_train.train_incremental`). If the
        text runs out of pairs first, the vocabulary is smaller than asked.
        ``progress=True`` shows a progress bar.
        """
        words, num_merges, specials = _prepare(text, vocab_size, special_tokens, pattern)
        merges = bpe_train.train_incremental(words, num_merges, progress=progress)
        return cls(merges, specials, pattern)

    @classmethod
    def train_naive(
        cls,
        text: str,
        vocab_size: int,
        special_tokens: Iterable[str] | None = None,
        pattern: str = GPT2_PATTERN,
    ) -> BPETokenizer:
        """Like :meth:`train`, with the slow reference trainer that recounts every pair."""
        words, num_merges, specials = _prepare(text, vocab_size, special_tokens, pattern)
        return cls(bpe_train.train_naive(words, num_merges), specials, pattern)

    # ------------------------------------------------------------------ encoding
    @property
    def vocab_size(self) -> int:
        """The number of ids (the 256 bytes, the merges and the special tokens)."""
        return len(self._table)

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of ``text``, with special-token strings treated as plain text."""
        require_text(text, f"{type(self).__name__}.encode_ordinary")
        return self._encode_pieces(self._regex.findall(text))

    def encode_iterable(self, texts: Iterable[str]) -> Iterator[int]:
        """Ids of the concatenation of ``texts``, streamed (see
        :meth:`lmcore.tokenizers.base.Tokenizer.encode_iterable`); special-token strings are
        plain text here, as in :meth:`encode_ordinary`."""
        return super().encode_iterable(texts)

    @property
    def _pattern(self):
        return self._regex

    def _encode_pieces(self, pieces: list[str]) -> list[int]:
        """Ids of pre-tokenized chunks, each encoded once and remembered."""
        cache, ids = self._cache, []
        for chunk in pieces:
            try:
                ids += cache[chunk]
            except KeyError:
                if len(cache) >= CACHE_SIZE:
                    cache.clear()
                cache[chunk] = self._encode_chunk(chunk)
                ids += cache[chunk]
        return ids

    def clear_cache(self) -> None:
        """Forget the ids of the chunks encoded so far (for timing from a cold start)."""
        self._cache.clear()

    def _encode_chunk(self, chunk: str) -> list[int]:
        """Ids of one chunk: join the leftmost pair learned earliest, until none is left."""
        merges, never = self.merges, 1 << 62
        ids = [self.byte_ids[b] for b in chunk.encode("utf-8")]
        if len(ids) > LONG_CHUNK:
            return merge_long(ids, merges)
        # joined[i]: the id pair (ids[i], ids[i + 1]) merges into; an earlier merge has a lower id
        joined = [merges.get(p, never) for p in zip(ids, ids[1:])]
        while joined:
            best = min(joined)
            if best == never:
                break
            i = joined.index(best)
            ids[i : i + 2] = [best]
            del joined[i]
            if i > 0:
                joined[i - 1] = merges.get((ids[i - 1], best), never)
            if i < len(joined):
                joined[i] = merges.get((best, ids[i + 1]), never)
        return ids

    def encode(self, text: str, allowed_special="none_raise") -> list[int]:
        """Ids of ``text``.

        Args:
            text: str.
            allowed_special: which special-token strings in ``text`` become their ids:
                ``"all"``; a set of names; ``"none"`` (they are encoded as plain text);
                or ``"none_raise"`` (default), like ``"none"`` but a special-token
                string in the text raises ``ValueError``. With a set, a special token
                outside the set also raises.
        Returns:
            list[int].
        """
        require_text(text, f"{type(self).__name__}.encode")
        allowed = self._allowed(allowed_special, text)
        if not allowed:
            return self.encode_ordinary(text)
        key = frozenset(allowed)
        if key not in self._splitters:
            self._splitters[key] = special_splitter(key)
        ids = []
        for k, part in enumerate(self._splitters[key].split(text)):
            if k % 2:
                ids.append(self.special_tokens[part])
            elif part:
                ids += self.encode_ordinary(part)
        return ids

    def _allowed(self, allowed_special, text: str) -> set[str]:
        names = set(self.special_tokens)
        if allowed_special == "all":
            return names
        if allowed_special == "none":
            return set()
        if allowed_special == "none_raise":
            allowed = set()
        elif isinstance(allowed_special, (set, frozenset, list, tuple)):
            allowed = set(allowed_special)
            if allowed - names:
                raise ValueError(
                    f"allowed_special names {sorted(allowed - names)}, which are not special "
                    f"tokens of this tokenizer (it has {sorted(names)})"
                )
        else:
            raise ValueError(
                f"allowed_special must be 'all', 'none', 'none_raise' or a set of special "
                f"token names, not {allowed_special!r}"
            )
        for name in sorted(names - allowed):
            at = text.find(name)
            if at >= 0:
                raise ValueError(
                    f"the text contains the special token {name!r} at character {at}, which "
                    f"this call does not allow. Pass allowed_special='all' or {{{name!r}}} to "
                    f"encode it as its id ({self.special_tokens[name]}), or "
                    f"allowed_special='none' to encode it as plain text."
                )
        return allowed

    # ------------------------------------------------------------------ decoding
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of ``ids`` joined; an id outside ``range(vocab_size)`` raises ``ValueError``."""
        table = self._table
        return b"".join([table[i] for i in check_ids(ids, len(table), repr(self))])

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """The text of ``ids``.

        A run of ids can end inside a multi-byte UTF-8 character (a model may emit
        any sequence); ``errors="replace"`` turns such bytes into U+FFFD, ``"strict"``
        raises ``UnicodeDecodeError``.
        """
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    # ------------------------------------------------------------------ teaching
    def describe_merges(self, k: int | None = None) -> list[dict]:
        """The first ``k`` merges (all if None) as rows ``{"id", "left", "right", "token"}``.

        ``left``, ``right`` and ``token`` are bytes, e.g.
        ``{"id": 256, "left": b" ", "right": b"t", "token": b" t"}``.
        """
        table, rows = self._table, []
        for (a, b), new_id in list(self.merges.items())[:k]:
            rows.append({"id": new_id, "left": table[a], "right": table[b], "token": table[new_id]})
        return rows

    # ---------------------------------------------------------------- save/load
    kind = "bpe"

    def _settings(self) -> dict:
        """The file's contents beside its header (:mod:`lmcore.tokenizers.base`): the
        pre-tokenizer ``pattern``, ``byte_ids`` (256 ints), ``merges`` ([a, b] pairs in rank
        order) and ``special_tokens`` (names in id order); :meth:`load` reads them back."""
        return {
            "pattern": self.pattern,
            "byte_ids": self.byte_ids,
            "merges": [list(p) for p in self.merges],
            "special_tokens": list(self.special_tokens),
        }

    @classmethod
    def _from_settings(cls, data: dict) -> BPETokenizer:
        merges = [tuple(p) for p in data["merges"]]
        return cls(merges, data["special_tokens"], data["pattern"], data["byte_ids"])

    def __eq__(self, other) -> bool:
        return isinstance(other, BPETokenizer) and (
            self.merges,
            self.special_tokens,
            self.pattern,
            self.byte_ids,
        ) == (other.merges, other.special_tokens, other.pattern, other.byte_ids)

    __hash__ = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
            f"special_tokens={list(self.special_tokens)})"
        )


def merge_long(ids: list[int], merges: dict[tuple[int, int], int]) -> list[int]:
    """The merges of ``BPETokenizer._encode_chunk`` in O(n log n) for a long chunk.

    The simple loop rescans the whole chunk after each merge, which is quadratic
    (a run of 100,000 letters would take minutes). Here the tokens form a linked
    list, and a heap holds ``(new id, position)`` for every mergeable neighbour
    pair, so the lowest new id, then the leftmost position, comes out first.
    Entries whose pair has changed since they were pushed are skipped.
    """
    n = len(ids)
    tokens: list[int | None] = list(ids)  # None: absorbed into the token on its left
    nxt, prv = list(range(1, n + 1)), list(range(-1, n - 1))
    heap = [(merges[p], i) for i, p in enumerate(zip(ids, ids[1:])) if p in merges]
    heapq.heapify(heap)
    while heap:
        new_id, i = heapq.heappop(heap)
        j = nxt[i]
        if tokens[i] is None or j >= n or merges.get((tokens[i], tokens[j])) != new_id:
            continue
        tokens[i], tokens[j] = new_id, None
        nxt[i] = nxt[j]
        if nxt[j] < n:
            prv[nxt[j]] = i
        if prv[i] >= 0 and (tokens[prv[i]], new_id) in merges:
            heapq.heappush(heap, (merges[(tokens[prv[i]], new_id)], prv[i]))
        if nxt[i] < n and (new_id, tokens[nxt[i]]) in merges:
            heapq.heappush(heap, (merges[(new_id, tokens[nxt[i]])], i))
    return [t for t in tokens if t is not None]


def _prepare(text, vocab_size, special_tokens, pattern):
    """Check the training arguments; return (words, number of merges, special tokens)."""
    if not isinstance(text, str) or not text:
        raise ValueError("BPE training needs a non-empty str of training text")
    specials = list(special_tokens or [])
    if not isinstance(vocab_size, int) or vocab_size < 256 + len(specials):
        raise ValueError(
            f"vocab_size={vocab_size!r} is too small: a byte-level BPE has 256 byte tokens "
            f"plus {len(specials)} special tokens, so vocab_size must be at least "
            f"{256 + len(specials)}"
        )
    words = bpe_train.count_words(text, pattern, specials)
    return words, vocab_size - 256 - len(specials), specials
