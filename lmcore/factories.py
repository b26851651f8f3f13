"""Tensor factories with PyTorch's names: ``tensor``, ``zeros``, ``ones``, ``empty``,
``full``, ``arange``, ``randn``, ``rand`` and their ``*_like`` forms.

Floating tensors are float32 unless ``dtype`` says otherwise, and live on the active
device (:func:`lmcore.backend.device`) unless ``device`` says otherwise. Random ones
draw from lmcore's seeded generator (:func:`lmcore.rng.manual_seed`), or from ``generator``.

Example:
    >>> import lmcore
    >>> lmcore.zeros(2, 3).dtype, lmcore.ones((2, 3)).shape
    (dtype('float32'), (2, 3))
    >>> lmcore.arange(4).tolist(), lmcore.arange(0, 1, 0.25).dtype
    ([0, 1, 2, 3], dtype('float32'))
    >>> _ = lmcore.manual_seed(0); lmcore.randn(2, 2, requires_grad=True).requires_grad
    True
"""

from __future__ import annotations

import numpy as np

from lmcore import backend
from lmcore.autograd import Tensor
from lmcore.rng import default_generator

__all__ = [
    "arange", "empty", "empty_like", "full", "full_like", "ones", "ones_like", "rand",
    "rand_like", "randn", "randn_like", "tensor", "zeros", "zeros_like",
]  # fmt: skip


def _shape(size) -> tuple[int, ...]:
    """``zeros(2, 3)`` and ``zeros((2, 3))`` alike."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    return tuple(int(n) for n in size)


def _made(array, requires_grad: bool) -> Tensor:
    return Tensor(array, requires_grad=requires_grad)


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (numbers, nested lists, arrays, tensors).

    Python numbers and lists become float32 when they hold a float, int64 when only
    integers; arrays keep their dtype (as ``torch.tensor`` does).

    Example:
        >>> tensor([1, 2]).dtype, tensor([1.0, 2]).dtype
        (dtype('int64'), dtype('float32'))
    """
    device = device or backend.device()
    if isinstance(data, Tensor):
        data = data.data
    if not hasattr(data, "dtype"):
        array = np.asarray(data)
        data = array.astype(np.float32) if array.dtype.kind == "f" and dtype is None else array
    xp = backend.xp(device)
    array = xp.array(
        backend.to_device(data, device) if hasattr(data, "shape") else data, dtype=dtype
    )
    return _made(array, requires_grad)


def _filled(fill, size, dtype, device, requires_grad) -> Tensor:
    xp = backend.xp(device or backend.device())
    shape = _shape(size)
    dtype = np.dtype(dtype or np.float32)
    array = xp.empty(shape, dtype) if fill is None else xp.full(shape, fill, dtype)
    return _made(array, requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros of shape ``size``."""
    return _filled(0, size, dtype, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor of ones of shape ``size``."""
    return _filled(1, size, dtype, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor of shape ``size`` whose values are whatever the memory held."""
    return _filled(None, size, dtype, device, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor of shape ``size`` filled with ``fill_value``."""
    return _filled(fill_value, (size,), dtype, device, requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """``start, start + step, ...`` below ``end`` (``arange(n)`` counts from 0): int64 when
    every bound is an int, float32 otherwise."""
    start, end = (0, start) if end is None else (start, end)
    if dtype is None:
        dtype = np.int64 if all(isinstance(v, int) for v in (start, end, step)) else np.float32
    xp = backend.xp(device or backend.device())
    return _made(xp.arange(start, end, step, dtype=dtype), requires_grad)


def _random(kind: str, size, generator, dtype, device, requires_grad) -> Tensor:
    xp = backend.xp(device or backend.device())
    generator = generator or default_generator(xp)
    dtype = np.dtype(dtype or np.float32)
    shape = _shape(size)
    if kind == "normal":
        array = generator.standard_normal(shape, dtype=dtype)
    else:
        array = generator.random(shape, dtype=dtype)
    return _made(array, requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Samples of the standard normal distribution, of shape ``size``."""
    return _random("normal", size, generator, dtype, device, requires_grad)


def rand(*size, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Samples of the uniform distribution on [0, 1), of shape ``size``."""
    return _random("uniform", size, generator, dtype, device, requires_grad)


def _like(t: Tensor, dtype, device) -> dict:
    return {"dtype": dtype or t.dtype, "device": device or t.device}


def zeros_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Zeros of ``t``'s shape, dtype and device (each can be overridden)."""
    return zeros(t.shape, requires_grad=requires_grad, **_like(t, dtype, device))


def ones_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return ones(t.shape, requires_grad=requires_grad, **_like(t, dtype, device))


def empty_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return empty(t.shape, requires_grad=requires_grad, **_like(t, dtype, device))


def full_like(
    t: Tensor, fill_value, dtype=None, device=None, requires_grad: bool = False
) -> Tensor:
    return full(t.shape, fill_value, requires_grad=requires_grad, **_like(t, dtype, device))


def randn_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return randn(t.shape, requires_grad=requires_grad, **_like(t, dtype, device))


def rand_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return rand(t.shape, requires_grad=requires_grad, **_like(t, dtype, device))
