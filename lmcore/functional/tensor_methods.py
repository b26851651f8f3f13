"""The operators and methods of :class:`~lmcore.autograd.Tensor` that run operations.

:mod:`lmcore.autograd` defines the tensor and the backward pass and imports nothing
above it; this module, part of the operation layer, gives ``Tensor`` its ``+``, ``@``,
``[]``, ``.sum()``, ``.reshape()``, ``.to()`` ... when :mod:`lmcore.functional` is
imported (as DeZero's ``setup_variable`` does), so the dependency runs one way.

Example:
    >>> from lmcore.autograd import Tensor
    >>> (Tensor([1.0, 2.0]) * 3).sum().item()
    9.0
"""

from __future__ import annotations

from lmcore import backend
from lmcore.autograd import Tensor
from lmcore.functional.activations import exp, gelu, log, log_softmax, relu, sigmoid, softmax, tanh
from lmcore.functional.arithmetic import add, div, matmul, mul, neg, pow, sub
from lmcore.functional.conversion import cast, to_device
from lmcore.functional.indexing import getitem, masked_fill
from lmcore.functional.reductions import argmax, max, mean, min, sum
from lmcore.functional.shapes import flatten, permute, reshape, squeeze, transpose, unsqueeze

__all__ = ["install"]


def _shape_args(args) -> tuple:
    """Accept both ``t.reshape(2, 3)`` and ``t.reshape((2, 3))``."""
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else args


class TensorMethods:
    """The methods :func:`install` copies onto ``Tensor`` (NumPy broadcasting throughout)."""

    # -- conversion ----------------------------------------------------------------
    def to(self, target) -> Tensor:
        """A copy on a device (``"cpu"``/``"cuda"``) or of a dtype (``"float64"``); differentiable.

        Example:
            >>> Tensor([1.0]).to("float64").dtype
            dtype('float64')
        """
        if target in backend.DEVICES:
            return to_device(self, target)
        return cast(self, target)

    def float(self) -> Tensor:
        return self.to("float32")

    def double(self) -> Tensor:
        return self.to("float64")

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self) -> Tensor:
        return self.to("cuda")

    # -- operators (NumPy broadcasting; see lmcore.functional) -----------------
    def __add__(self, other):
        return add(self, other)

    def __radd__(self, other):
        return add(other, self)

    def __sub__(self, other):
        return sub(self, other)

    def __rsub__(self, other):
        return sub(other, self)

    def __mul__(self, other):
        return mul(self, other)

    def __rmul__(self, other):
        return mul(other, self)

    def __truediv__(self, other):
        return div(self, other)

    def __rtruediv__(self, other):
        return div(other, self)

    def __pow__(self, exponent):
        return pow(self, exponent)

    def __rpow__(self, base):
        return pow(base, self)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)

    def __neg__(self):
        return neg(self)

    def __getitem__(self, index):
        return getitem(self, index)

    # -- methods with PyTorch's names -----------------------------------------
    @property
    def T(self) -> Tensor:
        """All dimensions reversed (a matrix transposed)."""
        return permute(self, tuple(range(self.ndim - 1, -1, -1)))

    def sum(self, dim=None, keepdim: bool = False) -> Tensor:
        return sum(self, dim, keepdim)

    def mean(self, dim=None, keepdim: bool = False) -> Tensor:
        return mean(self, dim, keepdim)

    def max(self, dim=None, keepdim: bool = False) -> Tensor:
        return max(self, dim, keepdim)

    def min(self, dim=None, keepdim: bool = False) -> Tensor:
        return min(self, dim, keepdim)

    def argmax(self, dim=None, keepdim: bool = False) -> Tensor:
        return argmax(self, dim, keepdim)

    def reshape(self, *shape) -> Tensor:
        return reshape(self, _shape_args(shape))

    def view(self, *shape) -> Tensor:
        return reshape(self, _shape_args(shape))

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        return flatten(self, start_dim, end_dim)

    def unsqueeze(self, dim: int) -> Tensor:
        return unsqueeze(self, dim)

    def squeeze(self, dim=None) -> Tensor:
        return squeeze(self, dim)

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        return transpose(self, dim0, dim1)

    def permute(self, *dims) -> Tensor:
        return permute(self, _shape_args(dims))

    def exp(self) -> Tensor:
        return exp(self)

    def log(self) -> Tensor:
        return log(self)

    def sqrt(self) -> Tensor:
        return pow(self, 0.5)

    def tanh(self) -> Tensor:
        return tanh(self)

    def sigmoid(self) -> Tensor:
        return sigmoid(self)

    def relu(self) -> Tensor:
        return relu(self)

    def gelu(self) -> Tensor:
        return gelu(self)

    def softmax(self, dim: int = -1) -> Tensor:
        return softmax(self, dim)

    def log_softmax(self, dim: int = -1) -> Tensor:
        return log_softmax(self, dim)

    def masked_fill(self, mask, value: float) -> Tensor:
        return masked_fill(self, mask, value)


def install(cls=Tensor) -> None:
    """Give ``cls`` (``Tensor``) the operators and methods of :class:`TensorMethods`."""
    for name, value in vars(TensorMethods).items():
        if name not in ("__module__", "__qualname__", "__doc__", "__dict__", "__weakref__"):
            setattr(cls, name, value)
