"""Batches of sequences of different lengths: padding, masks, and buckets by length.

:func:`pad_sequences` pads token lists on the right into (B, T) with a mask that is True
at real tokens. :class:`BucketBatches` groups examples of similar length, so little of a
batch is padding, and yields ``(ids, labels)`` pairs for :class:`~lmcore.train.loop.Trainer`
(the model finds the padding from ``pad_token_id``; with ``with_mask=True`` it yields
``(ids, labels, mask)``). A label is one class per sequence, or one per token (padded
with -100, which the loss skips).

Example:
    >>> ids, mask = pad_sequences([[5, 6, 7], [8]], pad_token_id=0)
    >>> ids
    array([[5, 6, 7],
           [8, 0, 0]])
    >>> mask.sum(axis=1)
    array([3, 1])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmcore import backend

__all__ = ["BucketBatches", "pad_sequences"]


def pad_sequences(
    sequences: Sequence[Sequence[int]],
    pad_token_id: int,
    max_length: int | None = None,
    pad_to_multiple_of: int | None = None,
    dtype=np.int64,
) -> tuple[np.ndarray, np.ndarray]:
    """Token lists -> ``ids`` (B, T) padded on the right with ``pad_token_id`` and ``mask``
    (B, T), True at real tokens. T is the longest length (rounded up to a multiple of
    ``pad_to_multiple_of``); longer sequences than ``max_length`` raise.

    Example:
        >>> pad_sequences([[1, 2], [3]], pad_token_id=-100, pad_to_multiple_of=4)[0]
        array([[   1,    2, -100, -100],
               [   3, -100, -100, -100]])
    """
    if len(sequences) == 0:
        raise ValueError("pad_sequences got no sequence")
    lengths = [len(s) for s in sequences]
    if min(lengths) == 0:
        raise ValueError(
            f"sequence {lengths.index(0)} is empty; drop empty examples before batching"
        )
    length = max(lengths)
    if max_length is not None and length > max_length:
        raise ValueError(
            f"a sequence of {length} tokens is longer than max_length={max_length}; "
            "truncate the examples first (e.g. ids[:max_length])"
        )
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    ids = np.full((len(sequences), length), pad_token_id, dtype=dtype)
    mask = np.zeros((len(sequences), length), bool)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = sequence
        mask[row, : len(sequence)] = True
    return ids, mask


class BucketBatches:
    """Batches of ``(ids, labels)`` from examples of different lengths, grouped by length.

    Each pass shuffles the examples (with ``seed`` and the pass number, so every pass is
    reproducible and a resumed run sees the same batches), cuts them into pools of
    ``bucket_size`` batches, sorts each pool by length, cuts it into batches, and
    shuffles the order of the batches. With ``shuffle=False`` the examples are batched
    in their order of length (for evaluation).

    Args:
        sequences: token id lists.
        labels: one int per sequence, or one list of ints per sequence (per-token tags,
            of the sequence's length).
        batch_size, pad_token_id: as they say; ``drop_last`` drops a short last batch.
        device: "cpu" or "cuda" for the arrays (default: the active device).

    Example:
        >>> batches = BucketBatches([[1, 2, 3], [4], [5, 6], [7]], [0, 1, 0, 1],
        ...                         batch_size=2, pad_token_id=0, shuffle=False)
        >>> [(ids.shape, labels.tolist()) for ids, labels in batches]
        [((2, 1), [1, 1]), ((2, 3), [0, 0])]
        >>> batches.padding_fraction()          # share of padded positions
        0.125
    """

    def __init__(
        self,
        sequences: Sequence[Sequence[int]],
        labels: Sequence,
        batch_size: int,
        pad_token_id: int,
        shuffle: bool = True,
        seed: int = 0,
        bucket_size: int = 50,
        drop_last: bool = False,
        with_mask: bool = False,
        max_length: int | None = None,
        device: str | None = None,
    ):
        if len(sequences) != len(labels):
            raise ValueError(
                f"BucketBatches got {len(sequences)} sequences and {len(labels)} labels; "
                "give one label (or one list of tags) per sequence"
            )
        if batch_size < 1 or bucket_size < 1:
            raise ValueError("batch_size and bucket_size must be positive")
        if len(sequences) == 0:
            raise ValueError("BucketBatches got no examples")
        self.sequences = [list(s) for s in sequences]
        self.per_token = not np.isscalar(labels[0])
        if self.per_token:
            bad = [i for i, (s, t) in enumerate(zip(self.sequences, labels)) if len(s) != len(t)]
            if bad:
                raise ValueError(
                    f"example {bad[0]} has {len(self.sequences[bad[0]])} tokens and "
                    f"{len(labels[bad[0]])} tags; per-token labels need one tag per token"
                )
        self.labels = list(labels)
        self.batch_size, self.pad_token_id, self.shuffle = batch_size, pad_token_id, shuffle
        self.seed, self.bucket_size, self.drop_last = seed, bucket_size, drop_last
        self.with_mask, self.max_length, self.device = with_mask, max_length, device
        self.passes = 0  # passes begun, which seeds each pass's order

    def batch_indices(self, pass_number: int = 0) -> list[np.ndarray]:
        """The example indices of each batch of pass ``pass_number``."""
        lengths = np.array([len(s) for s in self.sequences])
        if not self.shuffle:
            order = np.argsort(lengths, kind="stable")
            batches = [
                order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)
            ]
        else:
            generator = np.random.default_rng([self.seed, pass_number])
            order = generator.permutation(len(lengths))
            pool = self.batch_size * self.bucket_size
            batches = []
            for start in range(0, len(order), pool):
                chunk = order[start : start + pool]
                chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
                batches += [
                    chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)
                ]
            batches = [batches[i] for i in generator.permutation(len(batches))]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        return batches

    def collate(self, indices) -> tuple:
        """The arrays of the examples ``indices``: ids (B, T), labels (B,) or (B, T) with
        -100 at padding, and the mask (B, T) with ``with_mask``."""
        xp = backend.xp(self.device)
        ids, mask = pad_sequences(
            [self.sequences[i] for i in indices], self.pad_token_id, self.max_length
        )
        if self.per_token:
            labels, _ = pad_sequences([self.labels[i] for i in indices], -100)
        else:
            labels = np.array([self.labels[i] for i in indices], dtype=np.int64)
        arrays = (ids, labels, mask) if self.with_mask else (ids, labels)
        return tuple(xp.asarray(a) for a in arrays)

    def __iter__(self):
        pass_number, self.passes = self.passes, self.passes + 1
        for indices in self.batch_indices(pass_number):
            yield self.collate(indices)

    def __len__(self) -> int:
        return len(self.batch_indices(0))

    def padding_fraction(self, pass_number: int = 0) -> float:
        """The share of positions that are padding over one pass."""
        lengths = np.array([len(s) for s in self.sequences])
        batches = self.batch_indices(pass_number)
        real = sum(int(lengths[b].sum()) for b in batches)
        return 1 - real / sum(len(b) * int(lengths[b].max()) for b in batches)
