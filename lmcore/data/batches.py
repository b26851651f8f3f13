"""Batches of token ids for language models: windows, random blocks, and whole streams.

Two kinds of model read a token stream differently:

* a **fixed-window** model (the MLP language model) predicts one token from the
  ``context`` tokens before it: ``x = tokens[i : i + context]`` (B, context),
  ``y = tokens[i + context]`` (B,);
* a **sequence** model (RNN, GPT) predicts every next token of a block:
  ``x = tokens[i : i + T]`` (B, T), ``y = tokens[i + 1 : i + T + 1]`` (B, T).

For training, :class:`RandomWindows` and :class:`RandomBlocks` draw batches at random
positions, endlessly, from a seeded ``numpy.random.Generator`` whose state a
checkpoint saves. For exact evaluation, :class:`SequentialWindows` and
:class:`SequentialBlocks` visit the whole stream once, in order, with no sampling
noise. :class:`ContiguousBatches` cuts the stream into B parallel streams read in
consecutive chunks, so a recurrent model can carry its hidden state from one batch to
the next (truncated backpropagation through time).

Arrays come back on the active device (``backend.xp()``); start positions are drawn on
the CPU, so the same seed gives the same batches on every device.

Example:
    >>> import numpy as np
    >>> tokens = np.arange(10)
    >>> x, y = windows(tokens, context=3)
    >>> x[0].tolist(), y[0].tolist()
    ([0, 1, 2], 3)
    >>> x, y = next(RandomBlocks(tokens, block_size=4, batch_size=2, seed=0))
    >>> x.shape, y.shape, bool((y[:, :-1] == x[:, 1:]).all())
    ((2, 4), (2, 4), True)
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from lmcore import backend

__all__ = [
    "ContiguousBatches",
    "RandomBlocks",
    "RandomWindows",
    "SequentialBlocks",
    "SequentialWindows",
    "as_token_array",
    "sample_blocks",
    "sample_windows",
    "windows",
]


def as_token_array(tokens, length: int, name: str = "context"):
    """``tokens`` (a list or a 1-D integer array) as an int64 array on the active device,
    checked to hold at least ``length + 1`` tokens; ``name`` is the argument that asked
    for ``length`` (it is named in the error)."""
    xp = backend.xp()
    array = xp.asarray(tokens)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ValueError(
            f"tokens must be a 1-D sequence of integer ids, got shape {array.shape} and "
            f"dtype {array.dtype}; encode the text first, e.g. tokenizer.encode(text)."
        )
    _check_positive(**{name: length})
    if array.size < length + 1:
        raise ValueError(
            f"the token stream has {array.size} tokens, but {name}={length} needs at least "
            f"{length + 1} ({length} inputs and the token after them); use a longer text "
            f"or a smaller {name}."
        )
    return array.astype(np.int64, copy=False)


def _check_positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _gather(tokens, starts, length: int):
    """Rows ``tokens[s : s + length]`` for each start ``s``: (len(starts), length)."""
    xp = backend.get_array_module(tokens)
    return tokens[xp.asarray(starts)[:, None] + xp.arange(length)]


def windows(tokens, context: int):
    """Every (window, next token) pair of the stream, in order.

    Returns ``x`` (N, context) and ``y`` (N,), N = len(tokens) - context. Memory grows
    as N * context; for a long stream use :class:`RandomWindows` or
    :class:`SequentialWindows`.

    Example:
        >>> x, y = windows([5, 6, 7, 8], context=2)
        >>> x.tolist(), y.tolist()
        ([[5, 6], [6, 7]], [7, 8])
    """
    tokens = as_token_array(tokens, context)
    starts = np.arange(tokens.size - context)
    return _gather(tokens, starts, context), tokens[starts + context]


def sample_windows(tokens, context: int, batch_size: int, generator: np.random.Generator):
    """``batch_size`` (window, next token) pairs at random positions: (B, context), (B,).

    Example:
        >>> x, y = sample_windows(np.arange(100), 8, 4, np.random.default_rng(0))
        >>> x.shape, y.shape, bool((y == x[:, -1] + 1).all())
        ((4, 8), (4,), True)
    """
    tokens = as_token_array(tokens, context)
    _check_positive(batch_size=batch_size)
    starts = generator.integers(0, tokens.size - context, size=batch_size)
    return _gather(tokens, starts, context), tokens[backend.xp().asarray(starts) + context]


def sample_blocks(tokens, block_size: int, batch_size: int, generator: np.random.Generator):
    """``batch_size`` blocks at random positions, targets shifted by one: (B, T), (B, T).

    Example:
        >>> x, y = sample_blocks(np.arange(100), 8, 4, np.random.default_rng(0))
        >>> x.shape, bool((y == x + 1).all())
        ((4, 8), True)
    """
    tokens = as_token_array(tokens, block_size, name="block_size")
    _check_positive(batch_size=batch_size)
    starts = generator.integers(0, tokens.size - block_size, size=batch_size)
    return _gather(tokens, starts, block_size), _gather(tokens, starts + 1, block_size)


class _RandomBatches:
    """An endless iterator of random batches with a seeded generator; ``state_dict()``
    saves the generator's state so that a resumed run draws the same batches."""

    def __init__(self, tokens, length: int, batch_size: int, seed: int | None, name: str):
        self.tokens = as_token_array(tokens, length, name)
        _check_positive(batch_size=batch_size)
        self.length, self.batch_size = length, batch_size
        self.generator = np.random.default_rng(seed)

    def __iter__(self) -> Iterator:
        return self

    def state_dict(self) -> dict:
        return {"generator": self.generator.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.generator.bit_generator.state = state["generator"]


class RandomWindows(_RandomBatches):
    """Endless random batches for a fixed-window model: ``x`` (B, context), ``y`` (B,).

    Example:
        >>> batches = RandomWindows(np.arange(50), context=4, batch_size=8, seed=0)
        >>> x, y = next(batches)
        >>> x.shape, y.shape
        ((8, 4), (8,))
    """

    def __init__(self, tokens, context: int, batch_size: int, seed: int | None = None):
        super().__init__(tokens, context, batch_size, seed, name="context")

    def __next__(self):
        return sample_windows(self.tokens, self.length, self.batch_size, self.generator)


class RandomBlocks(_RandomBatches):
    """Endless random batches for a sequence model, as nanoGPT's ``get_batch``:
    ``x`` (B, T) and ``y`` (B, T) = ``x`` shifted by one token.

    Example:
        >>> x, y = next(RandomBlocks(np.arange(50), block_size=6, batch_size=3, seed=0))
        >>> x.shape, bool((y == x + 1).all())
        ((3, 6), True)
    """

    def __init__(self, tokens, block_size: int, batch_size: int, seed: int | None = None):
        super().__init__(tokens, block_size, batch_size, seed, name="block_size")

    def __next__(self):
        return sample_blocks(self.tokens, self.length, self.batch_size, self.generator)


class SequentialWindows:
    """Every (window, next token) pair once, in order, ``batch_size`` at a time (the last
    batch may be smaller): an exact evaluation set for a fixed-window model. Each pass
    (``for x, y in ...``) starts again from the beginning.

    Example:
        >>> val = SequentialWindows(np.arange(10), context=3, batch_size=4)
        >>> len(val), [y.tolist() for _, y in val]
        (2, [[3, 4, 5, 6], [7, 8, 9]])
    """

    def __init__(self, tokens, context: int, batch_size: int):
        self.tokens = as_token_array(tokens, context)
        _check_positive(batch_size=batch_size)
        self.context, self.batch_size = context, batch_size
        self.num_windows = self.tokens.size - context

    def __len__(self) -> int:
        return -(-self.num_windows // self.batch_size)

    def __iter__(self) -> Iterator:
        for first in range(0, self.num_windows, self.batch_size):
            starts = np.arange(first, min(first + self.batch_size, self.num_windows))
            x = _gather(self.tokens, starts, self.context)  # (B, context)
            yield x, self.tokens[backend.xp().asarray(starts) + self.context]  # (B,)


class SequentialBlocks:
    """The stream cut into consecutive blocks of ``block_size``, ``batch_size`` blocks at a
    time, so that every token after the first is a target exactly once: an exact
    evaluation set for a sequence model. A last, shorter block comes alone, as (1, r).

    Each block starts with no earlier context, as in training on random blocks.

    Example:
        >>> val = SequentialBlocks(np.arange(11), block_size=3, batch_size=2)
        >>> [x.shape for x, _ in val]
        [(2, 3), (1, 3), (1, 1)]
    """

    def __init__(self, tokens, block_size: int, batch_size: int):
        self.tokens = as_token_array(tokens, block_size, name="block_size")
        _check_positive(batch_size=batch_size)
        self.block_size, self.batch_size = block_size, batch_size
        self.num_targets = self.tokens.size - 1
        self.num_blocks = self.num_targets // block_size  # full blocks

    def __len__(self) -> int:
        return -(-self.num_blocks // self.batch_size) + (self.num_targets % self.block_size > 0)

    def __iter__(self) -> Iterator:
        T = self.block_size
        for first in range(0, self.num_blocks, self.batch_size):
            starts = np.arange(first, min(first + self.batch_size, self.num_blocks)) * T
            yield _gather(self.tokens, starts, T), _gather(self.tokens, starts + 1, T)
        rest = self.num_targets % T
        if rest:
            start = self.num_blocks * T
            yield (
                self.tokens[None, start : start + rest],  # (1, rest)
                self.tokens[None, start + 1 : start + 1 + rest],
            )


class ContiguousBatches:
    """Batches for truncated backpropagation through time: the stream is split into
    ``batch_size`` parallel streams of equal length, read ``block_size`` tokens at a time,
    so row ``b`` of one batch continues row ``b`` of the batch before it and a recurrent
    model can carry its hidden state across batches. ``x`` and ``y`` are (B, T), the last
    batch may be shorter in T; the final ``(len(tokens) - 1) % batch_size`` targets are
    left out (none with ``batch_size=1``). Each pass starts again from the beginning.

    Example:
        >>> batches = ContiguousBatches(np.arange(13), block_size=2, batch_size=2)
        >>> [x.tolist() for x, _ in batches]
        [[[0, 1], [6, 7]], [[2, 3], [8, 9]], [[4, 5], [10, 11]]]
    """

    def __init__(self, tokens, block_size: int, batch_size: int):
        _check_positive(block_size=block_size, batch_size=batch_size)
        self.tokens = as_token_array(tokens, batch_size, "batch_size")
        self.block_size, self.batch_size = block_size, batch_size
        self.stream_length = (self.tokens.size - 1) // batch_size  # targets per stream

    def __len__(self) -> int:
        return -(-self.stream_length // self.block_size)

    def __iter__(self) -> Iterator:
        B, L = self.batch_size, self.stream_length
        inputs = self.tokens[: B * L].reshape(B, L)  # (B, L)
        targets = self.tokens[1 : B * L + 1].reshape(B, L)
        for first in range(0, L, self.block_size):
            last = first + self.block_size
            yield inputs[:, first:last], targets[:, first:last]
