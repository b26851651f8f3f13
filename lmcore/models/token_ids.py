"""The one check every language model runs on its input: integer token ids (B, T) on the
model's device, inside its vocabulary.

Example:
    >>> import numpy as np
    >>> checked_token_ids([[1, 2, 3]], np.zeros(1), "GPT", vocab_size=10).shape
    (1, 3)
    >>> checked_token_ids(np.array([1, 2]), np.zeros(1), "GPT")
    Traceback (most recent call last):
    ...
    ValueError: GPT takes integer token ids of shape (B, T), got int64 (2,); add a batch dimension with ids[None] for one sequence.
"""

from __future__ import annotations

from lmcore import backend
from lmcore.autograd import Tensor
from lmcore.cuda.graphs import capturing

__all__ = ["checked_token_ids"]


def checked_token_ids(idx, like, model: str, vocab_size: int | None = None):
    """``idx`` as an integer array (B, T) on the device of the array ``like``, or a clear
    error naming ``model``. With ``vocab_size``, ids outside ``[0, vocab_size)`` are an
    IndexError too; that check reads the ids back from the device, so it is skipped while
    a CUDA graph is being captured (:func:`lmcore.cuda.graphs.capturing`)."""
    xp = backend.get_array_module(like)
    idx = xp.asarray(idx.data if isinstance(idx, Tensor) else idx)
    if idx.ndim != 2 or idx.dtype.kind not in "iu":
        raise ValueError(
            f"{model} takes integer token ids of shape (B, T), got {idx.dtype} {idx.shape}; "
            "add a batch dimension with ids[None] for one sequence."
        )
    if vocab_size is not None and idx.size and not capturing():
        low, high = int(idx.min()), int(idx.max())  # reading the ids waits for the device
        if low < 0 or high >= vocab_size:
            raise IndexError(
                f"{model} got token id {low if low < 0 else high}, outside its vocabulary of "
                f"{vocab_size} ids (0 to {vocab_size - 1}); use the tokenizer the model was "
                "built for, or a larger vocab_size."
            )
    return idx
