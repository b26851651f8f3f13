"""Helpers shared by the operation families: numbers and arrays as constant tensors, gradients summed back over broadcast axes, axes and indices normalized."""

from __future__ import annotations

from lmcore import backend
from lmcore.autograd import Tensor, as_array


def _constant(value, like: Tensor) -> Tensor:
    """A non-differentiable tensor from a number or array; numbers and integer arrays
    take ``like``'s floating dtype (so ``x * 2`` stays float32)."""
    floating = like.dtype.kind == "f"
    if floating and isinstance(value, (int, float)):
        array = backend.get_array_module(like.data).asarray(value, dtype=like.dtype)
    else:
        array = as_array(value, like=like.data)
        if floating and array.dtype.kind != "f":
            array = array.astype(like.dtype)
    return Tensor._make(array, None, 0)


def _tensors(a, b) -> tuple[Tensor, Tensor]:
    if isinstance(a, Tensor):
        return a, b if isinstance(b, Tensor) else _constant(b, a)
    if isinstance(b, Tensor):
        return _constant(a, b), b
    a = Tensor(a)
    return a, _constant(b, a)


def _as_tensor(value) -> Tensor:
    return value if isinstance(value, Tensor) else Tensor(value)


def _unbroadcast(grad, shape: tuple[int, ...]):
    """Sum ``grad`` over the axes that broadcasting added or stretched, back to ``shape``."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1
    )
    return grad.sum(axis=axes, keepdims=True).reshape(shape)


def _sum_rows(a):
    """``a.sum(axis=0)`` of an (N, D) array as one matrix-vector product, which BLAS runs
    several times faster than NumPy's reduction over the rows."""
    return backend.get_array_module(a).ones(a.shape[0], dtype=a.dtype) @ a


def _axes(dim, ndim: int) -> tuple[int, ...]:
    """``dim`` (None, an int or a tuple) as a tuple of non-negative axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    return tuple(d % ndim if ndim else 0 for d in dims)
