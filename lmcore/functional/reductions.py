"""Reductions: ``sum``, ``mean``, ``max``, ``min`` (and ``argmax``, without gradient)."""

from __future__ import annotations

import builtins

from lmcore import backend
from lmcore.autograd import Function, Tensor
from lmcore.functional.arithmetic import neg
from lmcore.functional.common import (
    _as_tensor,
    _axes,
)


class Sum(Function):
    def __init__(self, dim, keepdim):
        self.dim, self.keepdim = dim, keepdim

    def forward(self, x):
        self.shape = x.shape
        self.axes = _axes(self.dim, x.ndim)
        return x.sum(axis=self.axes, keepdims=self.keepdim)

    def backward(self, grad):
        xp = backend.get_array_module(grad)
        if not self.keepdim:
            grad = xp.expand_dims(grad, self.axes)
        return xp.broadcast_to(grad, self.shape)


class Mean(Sum):
    def forward(self, x):
        y = super().forward(x)
        self.count = x.size // builtins.max(y.size, 1)
        return y / x.dtype.type(self.count)

    def backward(self, grad):
        return super().backward(grad / grad.dtype.type(self.count))


class Max(Function):
    """Maximum values; the gradient is shared equally among tied maxima."""

    def __init__(self, dim, keepdim):
        self.dim, self.keepdim = dim, keepdim

    def forward(self, x):
        self.axes = _axes(self.dim, x.ndim)
        y = x.max(axis=self.axes, keepdims=True)
        self.mask = x == y
        return y if self.keepdim else backend.get_array_module(y).squeeze(y, axis=self.axes)

    def backward(self, grad):
        xp = backend.get_array_module(grad)
        if not self.keepdim:
            grad = xp.expand_dims(grad, self.axes)
        count = self.mask.sum(axis=self.axes, keepdims=True)
        return self.mask * (grad / count.astype(grad.dtype))


def sum(input, dim=None, keepdim: bool = False) -> Tensor:
    """Sum over ``dim`` (an int, a tuple, or None for all).

    Example:
        >>> import numpy as np
        >>> Tensor(np.ones((2, 3))).sum(dim=1).shape
        (2,)
    """
    return Sum(dim, keepdim)(_as_tensor(input))


def mean(input, dim=None, keepdim: bool = False) -> Tensor:
    """Mean over ``dim`` (an int, a tuple, or None for all)."""
    return Mean(dim, keepdim)(_as_tensor(input))


def max(input, dim=None, keepdim: bool = False) -> Tensor:
    """Maximum over ``dim``: the values only, like ``torch.amax`` (use ``argmax`` for indices)."""
    return Max(dim, keepdim)(_as_tensor(input))


def min(input, dim=None, keepdim: bool = False) -> Tensor:
    """Minimum over ``dim``: the values only, like ``torch.amin``."""
    return neg(max(neg(input), dim, keepdim))


def argmax(input, dim=None, keepdim: bool = False) -> Tensor:
    """Indices of the maxima along ``dim`` (flattened when None); not differentiable."""
    data = _as_tensor(input).data
    return Tensor._make(data.argmax(axis=dim, keepdims=keepdim), None, 0)
