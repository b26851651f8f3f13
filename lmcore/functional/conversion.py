"""Conversions that stay in the graph: dtype (``cast``) and device (``to_device``)."""

from __future__ import annotations

import numpy as np

from lmcore import backend
from lmcore.autograd import Function, Tensor
from lmcore.functional.common import (
    _as_tensor,
)


class Cast(Function):
    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, x):
        self.input_dtype = x.dtype
        return x.astype(self.dtype)

    def backward(self, grad):
        return grad.astype(self.input_dtype)


class ToDevice(Function):
    def __init__(self, device):
        self.device = device

    def forward(self, x):
        self.input_device = "cpu" if isinstance(x, np.ndarray) else "cuda"
        return backend.to_device(x, self.device)

    def backward(self, grad):
        return backend.to_device(grad, self.input_device)


def cast(input, dtype) -> Tensor:
    """A copy converted to ``dtype`` (e.g. "float64"); gradients are converted back."""
    return Cast(np.dtype(dtype))(_as_tensor(input))


def to_device(input, device: str) -> Tensor:
    """A copy on ``device`` ("cpu" or "cuda"); gradients travel back."""
    return ToDevice(device)(_as_tensor(input))
