"""Choosing the next token from a model's logits: greedy, temperature and top-k sampling.

Example:
    >>> import numpy as np
    >>> logits = np.array([[0.0, 5.0, 1.0]])               # (B, V)
    >>> sample_next(logits, temperature=0, top_k=None, generator=None)
    array([[1]])
"""

from __future__ import annotations

import numpy as np

from lmcore import backend


def sample_next(logits, temperature: float, top_k: int | None, generator):
    """One token id per row of ``logits`` (B, V) → (B, 1).

    ``temperature=0`` takes the most likely token; otherwise the logits are divided by
    the temperature, all but the ``top_k`` largest are dropped when ``top_k`` is set, and
    a token is drawn from the softmax with ``generator`` (a NumPy or CuPy Generator).
    """
    xp = backend.get_array_module(logits)
    logits = logits.astype(np.float64)
    if temperature == 0:
        return logits.argmax(axis=-1)[:, None]
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = xp.sort(logits, axis=-1)[:, -top_k][:, None]  # (B, 1), the k-th largest
        logits = xp.where(logits < kth, -xp.inf, logits)
    probs = xp.exp(logits - logits.max(axis=-1, keepdims=True))
    cumulative = xp.cumsum(probs, axis=-1)  # (B, V), unnormalized
    draws = generator.random((logits.shape[0], 1)) * cumulative[:, -1:]  # (B, 1)
    choice = (cumulative <= draws).sum(axis=-1, keepdims=True)  # inverse of the CDF
    return xp.minimum(choice, logits.shape[-1] - 1)
