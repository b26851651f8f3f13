"""Counting n-grams with sorted integer keys, one table per order.

Each n-gram is stored as one int64 key built from two numbers: the row of its
context (the n-gram minus its last token) in the table of order n - 1, and its
last token::

    key = context_id * base + token        base = vocab_size + 1 (the extra id is BOS)

The table of order n is the sorted array of distinct keys; an n-gram's *id* is its
index in that array, and that id is in turn the context id of the (n + 1)-grams
that extend it. Counting is a sort plus ``np.bincount``; looking up is
``np.searchsorted``. Keys stay small (below ``num_positions * base``) for any
order and any vocabulary, and memory grows with the number of distinct n-grams.

Documents are padded on the left with ``order - 1`` BOS ids, so that the first
tokens have full contexts; BOS is a context symbol only and is never predicted.
Every order is counted at the same positions (each real token once), so
``count(context) = sum over w of count(context, w)`` holds exactly at every order.

Example:
    >>> counts = NGramCounts([np.array([0, 1, 0, 2])], order=2, vocab_size=3)
    >>> counts.count((0, 1)), counts.count((0,))
    (1, 2)
"""

from __future__ import annotations

import numpy as np


def pad_documents(documents: list[np.ndarray], order: int, bos: int):
    """Concatenate documents, each preceded by ``order - 1`` BOS ids.

    Returns ``padded`` (L,) int64, the token at each position, and ``offset`` (L,)
    int64, each position's index inside its padded document; a position holds a
    real token exactly when ``offset >= order - 1``.
    """
    pad = np.full(order - 1, bos, dtype=np.int64)
    padded = np.concatenate([np.concatenate([pad, doc]) for doc in documents])
    offset = np.concatenate([np.arange(order - 1 + len(doc)) for doc in documents])
    return padded, offset


def distinct(keys: np.ndarray) -> np.ndarray:
    """The sorted distinct values of ``keys``: ``np.unique(keys)``, by one sort (faster here)."""
    ordered = np.sort(keys)
    first = np.ones(len(ordered), dtype=bool)  # (K,) True where a new value starts
    first[1:] = ordered[1:] != ordered[:-1]
    return ordered[first]


def _keys(context_ids: np.ndarray, padded: np.ndarray, offset: np.ndarray, n: int, base: int):
    """Keys of the order-``n`` n-grams ending at each position, and where they exist.

    ``context_ids`` (L,) holds the id of the (n - 1)-gram ending at each position
    (-1 where absent); the context of position j is the one ending at j - 1.
    An n-gram exists at j when it lies inside one document and its context was found.
    """
    before = np.empty_like(context_ids)  # (L,) id of the (n-1)-gram ending at j - 1
    before[0] = 0
    before[1:] = context_ids[:-1]
    inside = (offset >= n - 1) & (before >= 0)
    return before * base + padded, inside


class NGramCounts:
    """The counts of all n-grams of orders 1 to ``order`` in a list of documents.

    Each attribute is a list whose index ``n - 1`` holds order n.

    Attributes:
        keys: sorted distinct keys, int64 (G_n,)
        counts: how often each n-gram occurs, int64 (G_n,)
        continuation: for n < order, the number of distinct tokens seen just before
            each n-gram, int64 (G_n,); the Kneser-Ney counts of the lower orders

    Example:
        >>> counts = NGramCounts([np.array([0, 1, 0, 2])], order=2, vocab_size=3)
        >>> counts.continuation[0]  # 0 follows BOS and 1; 1 and 2 follow 0; BOS follows nothing
        array([2, 1, 1, 0])
    """

    def __init__(self, documents: list[np.ndarray], order: int, vocab_size: int):
        self.order = order
        self.vocab_size = vocab_size
        self.bos = vocab_size
        self.base = vocab_size + 1
        padded, offset = pad_documents(documents, order, self.bos)
        real = offset >= order - 1  # (L,) positions whose token is counted
        self.keys: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []
        self.continuation: list[np.ndarray] = []
        ids = np.zeros(len(padded), dtype=np.int64)  # the empty context precedes every token
        for n in range(1, order + 1):
            keys, inside = _keys(ids, padded, offset, n, self.base)
            table = distinct(keys[inside])
            longer = np.full(len(padded), -1, dtype=np.int64)
            longer[inside] = np.searchsorted(table, keys[inside])
            self.keys.append(table)
            self.counts.append(np.bincount(longer[real], minlength=len(table)))
            if n > 1:  # the (n-1)-gram at each real position is the suffix of the n-gram there
                suffix = np.full(len(table), -1, dtype=np.int64)
                suffix[longer[real]] = ids[real]
                seen = suffix[suffix >= 0]
                self.continuation.append(np.bincount(seen, minlength=len(self.keys[n - 2])))
            ids = longer

    def find(self, n: int, keys: np.ndarray) -> np.ndarray:
        """Ids of the order-``n`` n-grams with these keys, -1 for those never seen."""
        table = self.keys[n - 1]
        where = np.searchsorted(table, keys)
        found = where < len(table)
        found[found] = table[where[found]] == keys[found]
        return np.where(found, where, -1)

    def ids(self, documents: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Context and n-gram ids at every real token of ``documents``, for each order.

        Returns ``(contexts, grams)``, both int64 (order, T) with T the number of
        tokens: ``contexts[n - 1, t]`` is the id of token t's context of length n - 1,
        ``grams[n - 1, t]`` the id of the n-gram ending at token t; -1 when unseen.
        """
        padded, offset = pad_documents(documents, self.order, self.bos)
        real = offset >= self.order - 1
        contexts, grams = [], []
        ids = np.zeros(len(padded), dtype=np.int64)
        for n in range(1, self.order + 1):
            keys, inside = _keys(ids, padded, offset, n, self.base)
            contexts.append(np.concatenate([[0], ids[:-1]])[real])
            ids = np.where(inside, self.find(n, np.where(inside, keys, 0)), -1)
            grams.append(ids[real])
        return np.stack(contexts), np.stack(grams)

    def count(self, ngram) -> int:
        """How often ``ngram`` (a sequence of token ids, BOS allowed) occurs.

        Example:
            >>> NGramCounts([np.array([0, 1, 0])], 2, 2).count((0, 1))
            1
        """
        gram_id = 0
        for n, token in enumerate(ngram, start=1):
            gram_id = int(self.find(n, np.array([gram_id * self.base + token]))[0])
            if gram_id < 0:
                return 0
        return int(self.counts[len(ngram) - 1][gram_id]) if len(ngram) else 0

    def num_ngrams(self, n: int) -> int:
        """The number of distinct n-grams of order ``n`` seen in training."""
        return int(np.count_nonzero(self.counts[n - 1]))

    @property
    def nbytes(self) -> int:
        """Bytes held by the count tables."""
        return sum(a.nbytes for a in (*self.keys, *self.counts, *self.continuation))
