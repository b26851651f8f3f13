"""Shapes: reshape, flatten, (un)squeeze, transpose, permute; cat, stack and split."""

from __future__ import annotations

import builtins

import numpy as np

from lmcore import backend
from lmcore.autograd import Function, Tensor
from lmcore.functional.common import (
    _as_tensor,
    _axes,
)


class Reshape(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.input_shape = x.shape
        return x.reshape(self.shape)

    def backward(self, grad):
        return grad.reshape(self.input_shape)


class Permute(Function):
    def __init__(self, dims):
        self.dims = dims

    def forward(self, x):
        return x.transpose(self.dims)

    def backward(self, grad):
        inverse = sorted(range(len(self.dims)), key=self.dims.__getitem__)
        return grad.transpose(inverse)


def reshape(input, shape) -> Tensor:
    """The same elements in a new shape (one entry may be -1)."""
    return Reshape(tuple(shape))(_as_tensor(input))


def flatten(input, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Dimensions ``start_dim`` to ``end_dim`` merged into one."""
    shape = input.shape
    start, end = start_dim % len(shape), end_dim % len(shape)
    return reshape(input, shape[:start] + (-1,) + shape[end + 1 :])


def unsqueeze(input, dim: int) -> Tensor:
    """A new dimension of size 1 at ``dim``."""
    shape = list(input.shape)
    shape.insert(dim % (len(shape) + 1), 1)
    return reshape(input, shape)


def squeeze(input, dim=None) -> Tensor:
    """Dimensions of size 1 removed (all of them, or only ``dim``)."""
    axes = (
        [i for i, n in enumerate(input.shape) if n == 1] if dim is None else _axes(dim, input.ndim)
    )
    return reshape(input, [n for i, n in enumerate(input.shape) if i not in axes or n != 1])


def transpose(input, dim0: int, dim1: int) -> Tensor:
    """``dim0`` and ``dim1`` swapped."""
    dims = list(range(input.ndim))
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return permute(input, dims)


def permute(input, dims) -> Tensor:
    """Dimensions reordered: output dimension ``i`` is input dimension ``dims[i]``."""
    return Permute(_axes(dims, input.ndim))(_as_tensor(input))


class Concat(Function):
    def __init__(self, dim):
        self.dim = dim

    def forward(self, *xs):
        xp = backend.get_array_module(xs[0])
        self.boundaries = np.cumsum([x.shape[self.dim] for x in xs[:-1]]).tolist()
        return xp.concatenate(xs, axis=self.dim)

    def backward(self, grad):
        xp = backend.get_array_module(grad)
        return tuple(xp.split(grad, self.boundaries, axis=self.dim))


class Stack(Function):
    def __init__(self, dim):
        self.dim = dim

    def forward(self, *xs):
        return backend.get_array_module(xs[0]).stack(xs, axis=self.dim)

    def backward(self, grad):
        xp = backend.get_array_module(grad)
        return tuple(xp.moveaxis(grad, self.dim, 0))


class Split(Function):
    def __init__(self, boundaries, dim):
        self.boundaries, self.dim = boundaries, dim

    def forward(self, x):
        xp = backend.get_array_module(x)
        outputs = xp.split(x, self.boundaries, axis=self.dim)
        self.shapes = [y.shape for y in outputs]
        return tuple(outputs)

    def backward(self, *grads):
        xp = backend.get_array_module(next(g for g in grads if g is not None))
        dtype = next(g.dtype for g in grads if g is not None)
        filled = [
            xp.zeros(s, dtype) if g is None else g for g, s in zip(grads, self.shapes, strict=True)
        ]
        return xp.concatenate(filled, axis=self.dim)


def cat(tensors, dim: int = 0) -> Tensor:
    """Tensors joined along an existing dimension."""
    tensors = [_as_tensor(t) for t in tensors]
    return Concat(dim % tensors[0].ndim)(*tensors)


def stack(tensors, dim: int = 0) -> Tensor:
    """Tensors of one shape joined along a new dimension."""
    tensors = [_as_tensor(t) for t in tensors]
    return Stack(dim % (tensors[0].ndim + 1))(*tensors)


def split(tensor, split_size_or_sections, dim: int = 0) -> tuple[Tensor, ...]:
    """Pieces along ``dim``: of ``split_size_or_sections`` each (the last may be smaller),
    or of the sizes in a list, as ``torch.split``.

    Example:
        >>> [p.shape for p in split(Tensor(np.zeros((5, 2))), 2)]
        [(2, 2), (2, 2), (1, 2)]
    """
    length = tensor.shape[dim]
    if isinstance(split_size_or_sections, int):
        boundaries = list(range(split_size_or_sections, length, split_size_or_sections))
    else:
        if builtins.sum(split_size_or_sections) != length:
            raise ValueError(
                f"split sizes {list(split_size_or_sections)} add up to "
                f"{builtins.sum(split_size_or_sections)}, but dimension {dim} has size {length}"
            )
        boundaries = np.cumsum(split_size_or_sections)[:-1].tolist()
    return Split(boundaries, dim % tensor.ndim)(tensor)
