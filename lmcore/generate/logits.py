"""From next-token logits to a token: the repetition penalty, temperature, top-k and top-p
(nucleus) filtering, and the draw itself.

Each filter takes logits (B, V) and returns new logits of the same shape, with the
tokens it rules out set to -inf, exactly as the logits processors of Hugging Face
``transformers`` do (``RepetitionPenaltyLogitsProcessor``, ``TopKLogitsWarper``,
``TopPLogitsWarper``). :func:`sample_next` chains them in ``transformers``' order:
temperature, then top-k, then top-p.

Example:
    >>> import numpy as np
    >>> logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))      # (B, V)
    >>> np.isfinite(top_p_filter(logits, 0.75))                   # 0.5 + 0.3 reach 0.75
    array([[ True,  True, False, False]])
    >>> np.isfinite(top_k_filter(logits, 3))
    array([[ True,  True,  True, False]])
"""

from __future__ import annotations

import numpy as np

from lmcore import backend
from lmcore.rng import default_generator

__all__ = [
    "apply_repetition_penalty",
    "check_sampling",
    "sample_next",
    "top_k_filter",
    "top_p_filter",
]


def check_sampling(
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
) -> None:
    """A clear error for a setting no sampler can follow.

    Example:
        >>> check_sampling(top_p=1.5)
        Traceback (most recent call last):
        ...
        ValueError: top_p must lie in (0, 1] (the share of probability to keep), got 1.5
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be a positive number of tokens, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(
            f"top_p must lie in (0, 1] (the share of probability to keep), got {top_p}"
        )
    if not repetition_penalty > 0:
        raise ValueError(
            f"repetition_penalty must be > 0 (1.0 leaves the logits as they are, above 1 "
            f"discourages repeats), got {repetition_penalty}"
        )


def apply_repetition_penalty(logits, input_ids, penalty: float):
    """Make every token already in ``input_ids`` (B, T) less likely in ``logits`` (B, V):
    a positive logit is divided by ``penalty``, a negative one multiplied by it (the rule
    of CTRL, Keskar et al. 2019, as ``transformers`` applies it). A token counts once,
    however often it appeared.

    Example:
        >>> import numpy as np
        >>> apply_repetition_penalty(np.array([[2.0, -2.0, 1.0]]), np.array([[0, 1, 1]]), 2.0)
        array([[ 1., -4.,  1.]])
    """
    if penalty == 1.0:
        return logits
    xp = backend.get_array_module(logits)
    seen = xp.zeros(logits.shape, dtype=bool)  # (B, V)
    seen[xp.arange(logits.shape[0])[:, None], input_ids] = True
    penalized = xp.where(logits < 0, logits * penalty, logits / penalty)
    return xp.where(seen, penalized, logits).astype(logits.dtype, copy=False)


def top_k_filter(logits, top_k: int):
    """Keep the ``top_k`` largest logits of each row (B, V), and every logit tied with the
    k-th; the rest become -inf.

    Example:
        >>> import numpy as np
        >>> top_k_filter(np.array([[1.0, 3.0, 2.0]]), 2)
        array([[-inf,   3.,   2.]])
    """
    if top_k >= logits.shape[-1]:
        return logits
    xp = backend.get_array_module(logits)
    kth = xp.sort(logits, axis=-1)[:, -top_k][:, None]  # (B, 1), the k-th largest
    return xp.where(logits < kth, -xp.inf, logits).astype(logits.dtype, copy=False)


def top_p_filter(logits, top_p: float, min_tokens_to_keep: int = 1):
    """Nucleus filtering (Holtzman et al. 2020): keep the most likely tokens of each row
    (B, V) whose probabilities first add up to ``top_p``; the rest become -inf.

    As in ``transformers``, tokens are sorted by logit, ascending, and a token is dropped
    when the probability of it and of all tokens below it is at most ``1 - top_p``; at
    least ``min_tokens_to_keep`` tokens stay.

    Example:
        >>> import numpy as np
        >>> logits = np.log(np.array([[0.1, 0.6, 0.3]]))
        >>> np.isfinite(top_p_filter(logits, 0.6))                # the 0.6 token alone
        array([[False,  True, False]])
        >>> np.isfinite(top_p_filter(logits, 0.61))               # 0.6 is not enough
        array([[False,  True,  True]])
    """
    if min_tokens_to_keep < 1:
        raise ValueError(f"min_tokens_to_keep must be at least 1, got {min_tokens_to_keep}")
    if top_p >= 1.0:
        return logits
    xp = backend.get_array_module(logits)
    order = xp.argsort(logits, axis=-1)  # (B, V), ascending
    ascending = xp.take_along_axis(logits, order, axis=-1)
    probs = xp.exp(ascending - ascending[:, -1:])  # the row max is last
    cumulative = xp.cumsum(probs / probs.sum(axis=-1, keepdims=True), axis=-1)
    drop_sorted = cumulative <= 1 - top_p  # (B, V), in sorted order
    drop_sorted[:, -min_tokens_to_keep:] = False
    drop = xp.take_along_axis(drop_sorted, xp.argsort(order, axis=-1), axis=-1)
    return xp.where(drop, -xp.inf, logits).astype(logits.dtype, copy=False)


def sample_next(
    logits,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator=None,
    top_p: float | None = None,
):
    """One token id per row of ``logits`` (B, V) → (B, 1).

    ``temperature=0`` takes the most likely token (greedy); otherwise the logits are
    divided by the temperature, filtered by :func:`top_k_filter` when ``top_k`` is set and
    by :func:`top_p_filter` when ``top_p`` is, and a token is drawn from their softmax
    with ``generator`` (a NumPy or CuPy Generator; lmcore.rng's when None). The draw runs
    in float64, whatever the dtype of the logits.

    Example:
        >>> import numpy as np
        >>> logits = np.array([[0.0, 5.0, 1.0], [2.0, 0.0, 0.0]])
        >>> sample_next(logits, temperature=0)
        array([[1],
               [0]])
        >>> sample_next(logits, top_k=1, generator=np.random.default_rng(0))
        array([[1],
               [0]])
    """
    check_sampling(temperature, top_k, top_p)
    xp = backend.get_array_module(logits)
    logits = logits.astype(np.float64)
    if temperature == 0:
        return logits.argmax(axis=-1)[:, None]
    logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probs = xp.exp(logits - logits.max(axis=-1, keepdims=True))
    cumulative = xp.cumsum(probs, axis=-1)  # (B, V), unnormalized
    generator = default_generator(xp) if generator is None else generator
    draws = generator.random((logits.shape[0], 1)) * cumulative[:, -1:]  # (B, 1)
    choice = (cumulative <= draws).sum(axis=-1, keepdims=True)  # inverse of the CDF
    return xp.minimum(choice, logits.shape[-1] - 1)
