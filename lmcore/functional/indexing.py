"""Indexing and gathering: ``getitem``, ``embedding``, ``where``, ``masked_fill``."""

from __future__ import annotations

import builtins

import numpy as np

from lmcore import backend
from lmcore.autograd import Function, Tensor, _data_of
from lmcore.functional.arithmetic import linear
from lmcore.functional.common import (
    _as_tensor,
    _sum_rows,
    _tensors,
    _unbroadcast,
)


def _scatter_add_rows(xp, num_rows: int, index, values):
    """``out[index[i]] += values[i]`` for a 1-D integer ``index`` and (N, D) ``values``.

    Small tables use a one-hot matrix product (V, N) @ (N, D): NumPy's ``add.at`` is slow
    on rows, and on a GPU atomic adds into a few rows wait on each other. Large tables use
    ``add.at`` (on flat indices on the CPU).
    """
    n, d = values.shape
    if num_rows <= 128:  # also on a GPU: atomic adds into few rows collide
        one_hot = xp.zeros((num_rows, n), dtype=values.dtype)
        one_hot[index, xp.arange(n)] = 1
        return one_hot @ values
    if xp is not np:
        out = xp.zeros((num_rows, d), dtype=values.dtype)
        xp.add.at(out, index, values)
        return out
    out = np.zeros(num_rows * d, dtype=values.dtype)
    np.add.at(out, (index[:, None] * d + np.arange(d)).ravel(), values.ravel())
    return out.reshape(num_rows, d)


def _is_integer_array(part) -> bool:
    return hasattr(part, "dtype") and part.dtype.kind in "iu"


class GetItem(Function):
    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.shape = x.shape
        return x[self.index]

    def backward(self, grad):
        xp = backend.get_array_module(grad)
        index = self.index
        parts = index if isinstance(index, tuple) else (index,)
        if _is_integer_array(index) and index.ndim == 1 and len(self.shape) >= 1:
            rows = _scatter_add_rows(
                xp, self.shape[0], index % self.shape[0], grad.reshape(len(index), -1)
            )
            return rows.reshape(self.shape)
        out = xp.zeros(self.shape, dtype=grad.dtype)
        if builtins.any(_is_integer_array(p) for p in parts):
            xp.add.at(out, index, grad)  # repeated indices add up
        else:
            out[index] = grad  # ints, slices, boolean masks: each element at most once
        return out


def getitem(input, index) -> Tensor:
    """``input[index]`` with ints, slices, None, Ellipsis, boolean masks and integer arrays.

    Example:
        >>> x = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
        >>> x[:, np.array([0, 0, 2])].sum().backward()
        >>> x.grad
        tensor([[2., 0., 1.],
                [2., 0., 1.]])
    """
    like = input.data
    xp = backend.get_array_module(like)

    def plain(part):
        part = _data_of(part)
        if isinstance(part, list):
            return xp.asarray(part)
        return part

    index = tuple(plain(p) for p in index) if isinstance(index, tuple) else plain(index)
    return GetItem(index)(input)


class Embedding(Function):
    def __init__(self, indices):
        self.indices = indices

    def forward(self, weight):
        self.weight_shape = weight.shape  # (V, D)
        return weight[self.indices]  # (..., D)

    def backward(self, grad):
        xp = backend.get_array_module(grad)
        num_rows, dim = self.weight_shape
        flat = self.indices.reshape(-1)  # (N,)
        return _scatter_add_rows(xp, num_rows, flat, grad.reshape(flat.size, dim))


def embedding(input, weight: Tensor) -> Tensor:
    """Rows of ``weight`` (V, D) picked by the integer array ``input`` (...,) -> (..., D).

    Example:
        >>> table = Tensor(np.eye(4), requires_grad=True)
        >>> embedding(np.array([[1, 3], [1, 1]]), table).shape
        (2, 2, 4)
    """
    indices = _data_of(input)
    xp = backend.get_array_module(weight.data)
    indices = xp.asarray(indices)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"embedding indices must be integers, got dtype {indices.dtype}")
    return Embedding(indices)(weight)


class EmbeddingLinear(Function):
    """``embedding(ids, table) @ weight.T + bias`` through the product table: every row of
    ``table @ weight.T + bias`` (V, out) is computed once and the output gathers them, and
    the backward sums the gradient rows per token (a (V, N) one-hot product) before two
    small products give the gradients of ``table`` and ``weight``. The same numbers as the
    two operations in turn, with V instead of N rows in every product."""

    def __init__(self, indices):
        self.indices = indices

    def forward(self, table, weight, bias=None):
        self.table, self.weight = table, weight  # (V, D), (out, D)
        rows = table @ weight.T  # (V, out): the output of every token id
        if bias is not None:
            rows += bias
        return rows[self.indices]  # (..., out)

    def backward(self, grad):
        xp = backend.get_array_module(grad)
        flat = self.indices.reshape(-1)  # (N,)
        per_token = _scatter_add_rows(xp, self.table.shape[0], flat, grad.reshape(flat.size, -1))
        grads = (  # per_token (V, out)
            per_token @ self.weight if self.needs_grad[0] else None,  # (V, D)
            per_token.T @ self.table if self.needs_grad[1] else None,  # (out, D)
        )
        if len(self.needs_grad) == 3:
            grads += (_sum_rows(per_token) if self.needs_grad[2] else None,)  # (out,)
        return grads


def embedding_linear(input, table: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``linear(embedding(input, table), weight, bias)``: the rows of ``table`` (V, D)
    picked by the integer ids ``input`` (...,), then projected by ``weight`` (out, D) →
    (..., out).

    An embedding followed by a linear map is a lookup in their product: token v always
    becomes ``table[v] @ weight.T + bias``. When the vocabulary is small against the
    number of ids (a character model's 76 symbols against a batch of 2,048 positions),
    projecting the V rows of the table once, and summing the gradient per token before
    the backward products, does several times fewer multiply-adds than projecting N
    gathered rows; otherwise the two operations run in turn. Both give the same values.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> table = Tensor(rng.standard_normal((5, 3)), requires_grad=True)
        >>> weight = Tensor(rng.standard_normal((4, 3)), requires_grad=True)
        >>> ids = rng.integers(0, 5, (2, 100))
        >>> fused = embedding_linear(ids, table, weight)
        >>> bool(np.allclose(fused.data, embedding(ids, table).data @ weight.data.T))
        True
    """
    indices = _data_of(input)
    xp = backend.get_array_module(table.data)
    indices = xp.asarray(indices)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"embedding indices must be integers, got dtype {indices.dtype}")
    (V, D), N = table.shape, indices.size
    # Multiply-adds of forward and backward: 3·N·D·out in turn; 3·V·D·out + V·N·out fused
    # (the one-hot sum, used for tables of up to 128 rows).
    if V <= 128 and V * (3 * D + N) < 3 * N * D:
        inputs = (table, weight) if bias is None else (table, weight, bias)
        return EmbeddingLinear(indices)(*inputs)
    return linear(embedding(indices, table), weight, bias)


class Where(Function):
    def __init__(self, condition):
        self.condition = condition

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return backend.get_array_module(a).where(self.condition, a, b)

    def backward(self, grad):
        xp = backend.get_array_module(grad)
        (sa, sb), (na, nb) = self.shapes, self.needs_grad
        return (
            _unbroadcast(xp.where(self.condition, grad, 0), sa) if na else None,
            _unbroadcast(xp.where(self.condition, 0, grad), sb) if nb else None,
        )


def where(condition, input, other) -> Tensor:
    """Elements of ``input`` where ``condition`` is true, else of ``other`` (broadcast)."""
    a, b = _tensors(input, other)
    return Where(_data_of(condition))(a, b)


class MaskedFill(Function):
    def __init__(self, mask, value):
        self.mask, self.value = mask, value

    def forward(self, x):
        xp = backend.get_array_module(x)
        self.shape = x.shape
        return xp.where(self.mask, x.dtype.type(self.value), x)

    def backward(self, grad):
        xp = backend.get_array_module(grad)
        return _unbroadcast(xp.where(self.mask, 0, grad), self.shape)


def masked_fill(input, mask, value: float) -> Tensor:
    """``input`` with ``value`` where the boolean ``mask`` (broadcast to it) is true.

    Example:
        >>> causal = np.triu(np.ones((3, 3), bool), k=1)
        >>> masked_fill(Tensor(np.zeros((3, 3))), causal, -np.inf).numpy()[0]
        array([  0., -inf, -inf])
    """
    return MaskedFill(_data_of(mask), value)(_as_tensor(input))
