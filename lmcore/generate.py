"""Generating text with a language model: the one loop every model's ``generate`` runs,
and the choice of each next token from the logits (greedy, temperature, top-k).

A model plugs in through one method, ``next_token_logits(idx, state)``: given all the
ids so far (B, T) and what it returned the step before (None at first), it returns the
logits of the next token (B, V) and a new state. A GPT recomputes from the (cropped)
context and keeps no state; a recurrent model reads the whole prompt once, then one
token a step, carrying its hidden state.

Example:
    >>> import numpy as np
    >>> logits = np.array([[0.0, 5.0, 1.0]])               # (B, V)
    >>> sample_next(logits, temperature=0, top_k=None, generator=None)
    array([[1]])
"""

from __future__ import annotations

import numpy as np

from lmcore import backend
from lmcore.nn.module import evaluation_mode
from lmcore.rng import default_generator

__all__ = ["check_sampling", "generate", "sample_next"]


def check_sampling(temperature: float, top_k: int | None) -> None:
    """A clear error for a temperature below 0 or a top_k below 1."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be a positive number of tokens, got {top_k}")


def generate(model, idx, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, seed: int | None = None):  # fmt: skip
    """Continue each row of ``idx`` (B, T) by ``max_new_tokens`` tokens drawn from
    ``model.next_token_logits``; returns the ids (B, T + max_new_tokens) on the model's
    device. ``seed`` fixes the draws (else lmcore.rng's generator is used)."""
    check_sampling(temperature, top_k)
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    idx = model._checked_ids(idx)
    if idx.shape[1] == 0:
        raise ValueError(
            "generate needs a prompt of at least one token per row, got shape "
            f"{tuple(idx.shape)}; start from a token such as a newline or <|endoftext|>."
        )
    xp = backend.get_array_module(idx)
    generator = default_generator(xp) if seed is None else xp.random.default_rng(seed)
    state = None
    with evaluation_mode(model):
        for _ in range(max_new_tokens):
            logits, state = model.next_token_logits(idx, state)  # (B, V)
            next_ids = sample_next(logits, temperature, top_k, generator)  # (B, 1)
            idx = xp.concatenate([idx, next_ids.astype(idx.dtype)], axis=1)
    return idx


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
