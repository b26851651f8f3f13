"""Evaluation metrics: numbers computed from a model's predictions, outside the autograd graph.

Example:
    >>> import numpy as np
    >>> logits = np.array([[[0.1, 2.0, 0.3], [1.0, 0.0, 0.0], [0.0, 0.0, 3.0]]])  # (B, T, V)
    >>> masked_accuracy(logits, np.array([[1, -100, 0]]))       # right at 1 of 2 labelled
    0.5
    >>> distinct_n(["abab", "abab"], 2)                          # 2 distinct of 6 bigrams
    0.3333333333333333
"""

from __future__ import annotations

from collections.abc import Sequence

from lmcore import backend
from lmcore.autograd import Tensor

__all__ = ["distinct_n", "masked_accuracy"]


def masked_accuracy(logits, labels, ignore_index: int = -100) -> float:
    """The share of labelled positions where the highest logit is the label.

    ``logits`` (..., V) and ``labels`` (...), NumPy or CuPy arrays or Tensors; positions
    whose label is ``ignore_index`` (-100, as in masked-LM labels) are not counted. With
    no labelled position at all the accuracy is undefined: NaN.
    """
    logits = logits.data if isinstance(logits, Tensor) else logits
    labels = labels.data if isinstance(labels, Tensor) else labels
    xp = backend.get_array_module(logits)
    labels = xp.asarray(labels)
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"masked_accuracy: logits of shape {logits.shape} need labels of shape "
            f"{logits.shape[:-1]} (classes on the last axis), got {labels.shape}"
        )
    scored = labels != ignore_index
    count = int(scored.sum())
    if count == 0:
        return float("nan")
    right = (logits.argmax(axis=-1) == labels) & scored
    return int(right.sum()) / count


def distinct_n(sequences: Sequence, n: int) -> float:
    """Distinct-n (Li et al. 2016): the number of different n-grams in ``sequences``
    divided by the number of n-grams they hold, counted together over all of them.

    ``sequences`` is a list of strings (n-grams of characters) or of sequences of token
    ids; an n-gram never spans two sequences. 1.0 means no n-gram repeats, and a value
    near 0 means the same few n-grams again and again (a decoder stuck in a loop, or the
    same text sampled many times). With no n-gram at all the value is undefined: NaN.

    Example:
        >>> distinct_n(["to be or not to be"], 1)     # t, o, b, e, r, n and the space: 7 of 18
        0.3888888888888889
        >>> distinct_n([[1, 2, 3], [1, 2, 4]], 2)                # (1, 2) twice: 3 of 4
        0.75
    """
    if n < 1:
        raise ValueError(f"distinct_n: n must be a positive integer, got {n}")
    if isinstance(sequences, str):
        raise TypeError("distinct_n takes a list of sequences; wrap one string as [text]")
    seen, total = set(), 0
    for sequence in sequences:
        items = sequence if isinstance(sequence, str) else [int(t) for t in sequence]
        for i in range(len(items) - n + 1):
            seen.add(tuple(items[i : i + n]))
            total += 1
    return len(seen) / total if total else float("nan")
