"""Dropout."""

from __future__ import annotations

import numpy as np

from lmcore import backend
from lmcore.autograd import Function, Tensor
from lmcore.functional.common import (
    _as_tensor,
)
from lmcore.rng import default_generator


class Dropout(Function):
    def __init__(self, p, generator):
        self.p, self.generator = p, generator

    def forward(self, x):
        # Generators draw float32 or float64 only; a float16 input draws float32.
        draw = np.float32 if x.dtype == np.float16 else x.dtype
        keep = self.generator.random(x.shape, dtype=draw) >= self.p
        self.scaled_mask = keep * x.dtype.type(1 / (1 - self.p))
        return x * self.scaled_mask

    def backward(self, grad):
        return grad * self.scaled_mask


def dropout(input, p: float = 0.5, training: bool = True, generator=None) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1 / (1 - p).

    The identity when ``training`` is False or ``p`` is 0. Random numbers come
    from ``generator`` (a ``numpy``/``cupy`` ``random.Generator``), by default the
    generator of :mod:`lmcore.rng`, which ``lmcore.rng.manual_seed`` reseeds.

    Example:
        >>> import numpy as np
        >>> y = dropout(Tensor(np.ones(1000)), 0.1, generator=np.random.default_rng(0))
        >>> bool(abs(y.numpy().mean() - 1) < 0.1)
        True
    """
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability must be between 0 and 1, got {p}")
    input = _as_tensor(input)
    if not training or p == 0:
        return input
    if p == 1:
        return input * 0.0
    generator = generator or default_generator(backend.get_array_module(input.data))
    return Dropout(p, generator)(input)
