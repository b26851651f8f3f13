"""Differentiable operations on :class:`~lmcore.autograd.Tensor`.

Each operation is a :class:`~lmcore.autograd.Function` with ``forward`` and
``backward`` on raw arrays, written against the array module of its inputs
(``xp``: numpy or cupy), plus a small function with PyTorch's name and argument
order that wraps its inputs into tensors and calls it. Binary operations follow
NumPy broadcasting; their backward sums each gradient back to its input's shape.

Python numbers and arrays mixed with tensors are constants of the tensor's dtype.

Example:
    >>> import numpy as np
    >>> from lmcore.autograd import Tensor
    >>> x = Tensor(np.ones((2, 3)), requires_grad=True)
    >>> loss = softmax(x * 2.0, dim=-1).sum()
    >>> loss.backward()
    >>> x.grad.shape
    (2, 3)
"""

from __future__ import annotations

import builtins
import math
import warnings

import numpy as np

from lmcore import backend, cuda
from lmcore.autograd import Function, Tensor, as_array
from lmcore.rng import default_generator

__all__ = [
    "add", "sub", "mul", "div", "pow", "neg", "matmul", "linear",
    "sum", "mean", "max", "min", "argmax",
    "reshape", "flatten", "unsqueeze", "squeeze", "transpose", "permute",
    "getitem", "embedding", "cat", "stack", "split",
    "exp", "log", "tanh", "sigmoid", "relu", "gelu", "softmax", "log_softmax",
    "dropout", "where", "masked_fill", "cross_entropy", "mse_loss", "layer_norm",
    "cast", "to_device",
]  # fmt: skip


# ---------------------------------------------------------------------------
# Helpers


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


def _indices(value):
    """An index array (from a Tensor, list or array) for gathering."""
    return value.data if isinstance(value, Tensor) else value


# ---------------------------------------------------------------------------
# Arithmetic with broadcasting


class Add(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, grad):
        (sa, sb), (na, nb) = self.shapes, self.needs_grad
        return _unbroadcast(grad, sa) if na else None, _unbroadcast(grad, sb) if nb else None


class Sub(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, grad):
        (sa, sb), (na, nb) = self.shapes, self.needs_grad
        return _unbroadcast(grad, sa) if na else None, _unbroadcast(-grad, sb) if nb else None


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):
        a, b = self.a, self.b
        na, nb = self.needs_grad
        return (
            _unbroadcast(grad * b, a.shape) if na else None,
            _unbroadcast(grad * a, b.shape) if nb else None,
        )


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, grad):
        a, b = self.a, self.b
        na, nb = self.needs_grad
        grad_a = grad / b
        return (
            _unbroadcast(grad_a, a.shape) if na else None,
            _unbroadcast(-grad_a * a / b, b.shape) if nb else None,
        )


class Pow(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        self.y = a**b
        return self.y

    def backward(self, grad):
        a, b = self.a, self.b
        na, nb = self.needs_grad
        xp = backend.get_array_module(a)
        return (
            _unbroadcast(grad * b * a ** (b - 1), a.shape) if na else None,
            _unbroadcast(grad * self.y * xp.log(a), b.shape) if nb else None,
        )


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, grad):
        return -grad


def add(input, other) -> Tensor:
    """``input + other`` with broadcasting."""
    return Add()(*_tensors(input, other))


def sub(input, other) -> Tensor:
    """``input - other`` with broadcasting."""
    return Sub()(*_tensors(input, other))


def mul(input, other) -> Tensor:
    """``input * other`` with broadcasting."""
    return Mul()(*_tensors(input, other))


def div(input, other) -> Tensor:
    """``input / other`` with broadcasting."""
    return Div()(*_tensors(input, other))


def pow(input, exponent) -> Tensor:
    """``input ** exponent``; a tensor exponent gets a gradient too (needs ``input > 0``)."""
    return Pow()(*_tensors(input, exponent))


def neg(input) -> Tensor:
    """``-input``."""
    return Neg()(_as_tensor(input))


# ---------------------------------------------------------------------------
# Matrix products


class MatMul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, grad):
        a, b = self.a, self.b
        na, nb = self.needs_grad
        # Treat vectors as matrices: a (n,) is (1, n), b (n,) is (n, 1).
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = grad.reshape(grad.shape[:-1] + (1,) + grad.shape[-1:]) if a.ndim == 1 else grad
        g2 = g2[..., None] if b.ndim == 1 else g2
        grad_a = grad_b = None
        if na:  # (..., n, m) @ (..., m, k)^T
            grad_a = _unbroadcast(g2 @ b2.swapaxes(-1, -2), a2.shape).reshape(a.shape)
        if nb:
            if b2.ndim == 2 and a2.ndim > 2:  # a shared weight: one big product, no batch sum
                grad_b = a2.reshape(-1, a2.shape[-1]).T @ g2.reshape(-1, g2.shape[-1])
            else:
                grad_b = _unbroadcast(a2.swapaxes(-1, -2) @ g2, b2.shape)
            grad_b = grad_b.reshape(b.shape)
        return grad_a, grad_b


class Linear(Function):
    """x @ weight.T + bias with the leading dims of x flattened, so that each product is
    one large matrix multiply (BLAS) rather than a batch of small ones."""

    def forward(self, x, weight, bias=None):
        self.x_shape = x.shape
        self.x_2d, self.weight = x.reshape(-1, x.shape[-1]), weight  # (N, in), (out, in)
        y = self.x_2d @ weight.T  # (N, out)
        if bias is not None:
            y += bias
        return y.reshape(x.shape[:-1] + (weight.shape[0],))  # (..., out)

    def backward(self, grad):
        grad_2d = grad.reshape(-1, grad.shape[-1])  # (N, out)
        grads = (
            (grad_2d @ self.weight).reshape(self.x_shape) if self.needs_grad[0] else None,
            grad_2d.T @ self.x_2d if self.needs_grad[1] else None,  # (out, in)
        )
        if len(self.needs_grad) == 3:
            grads += (_sum_rows(grad_2d) if self.needs_grad[2] else None,)  # (out,)
        return grads


def matmul(input, other) -> Tensor:
    """Matrix product with NumPy's rules: batched over leading dims, 1-D operands as vectors.

    Example:
        >>> matmul(Tensor(np.ones((4, 2, 3))), Tensor(np.ones((3, 5)))).shape
        (4, 2, 5)
    """
    input, other = _tensors(input, other)
    inner_a = input.shape[-1] if input.ndim else None
    inner_b = other.shape[-2] if other.ndim >= 2 else other.shape[0] if other.ndim else None
    if input.ndim == 0 or other.ndim == 0 or inner_a != inner_b:
        raise ValueError(
            f"matmul: shapes {input.shape} and {other.shape} do not chain; the last dimension of "
            "the first must equal the second-to-last of the second (the only one of a vector), "
            "and neither may be a scalar."
        )
    return MatMul()(input, other)


def linear(input, weight, bias=None) -> Tensor:
    """``input @ weight.T + bias`` in one operation; ``weight`` is (out, in) as in PyTorch.

    Example:
        >>> linear(Tensor(np.ones((8, 3))), Tensor(np.ones((5, 3))), Tensor(np.zeros(5))).shape
        (8, 5)
    """
    inputs = (input, weight) if bias is None else (input, weight, bias)
    return Linear()(*map(_as_tensor, inputs))


# ---------------------------------------------------------------------------
# Reductions


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


# ---------------------------------------------------------------------------
# Shapes


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


# ---------------------------------------------------------------------------
# Indexing and gathering


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
        array([[2., 0., 1.],
               [2., 0., 1.]])
    """
    like = input.data
    xp = backend.get_array_module(like)

    def plain(part):
        part = _indices(part)
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
    indices = _indices(input)
    xp = backend.get_array_module(weight.data)
    indices = xp.asarray(indices)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"embedding indices must be integers, got dtype {indices.dtype}")
    return Embedding(indices)(weight)


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


# ---------------------------------------------------------------------------
# Element-wise functions


class Exp(Function):
    def forward(self, x):
        self.y = backend.get_array_module(x).exp(x)
        return self.y

    def backward(self, grad):
        return grad * self.y


class Log(Function):
    def forward(self, x):
        self.x = x
        return backend.get_array_module(x).log(x)

    def backward(self, grad):
        return grad / self.x


class Tanh(Function):
    def forward(self, x):
        self.y = backend.get_array_module(x).tanh(x)
        return self.y

    def backward(self, grad):
        return grad * (1 - self.y * self.y)


class Sigmoid(Function):
    def forward(self, x):
        xp = backend.get_array_module(x)
        self.y = 0.5 * (xp.tanh(0.5 * x) + 1)  # = 1 / (1 + e^-x), without overflow
        return self.y

    def backward(self, grad):
        return grad * self.y * (1 - self.y)


class ReLU(Function):
    def forward(self, x):
        self.y = backend.get_array_module(x).maximum(x, 0)
        return self.y

    def backward(self, grad):
        return grad * (self.y > 0)


_GELU_C = math.sqrt(2 / math.pi)
_GELU_K = 0.044715
_GELU_FORMS = ("none", "tanh")

# W. J. Cody's rational Chebyshev approximations of erf and erfc ("Rational Chebyshev
# approximations for the error function", Math. Comp. 23, 1969; Netlib's CALERF), good
# to double precision: erf(x) = x A(x^2) / B(x^2) for |x| <= 0.46875; erfc(x) =
# exp(-x^2) C(x) / D(x) up to 4; beyond, exp(-x^2) / x (1/sqrt(pi) - t P(t) / Q(t)), t = 1/x^2.
_ERF_SMALL = 0.46875
# fmt: off
_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
          3.20937758913846947e03, 1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
          2.84423683343917062e03)
_ERF_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
          2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
          2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_ERF_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
          1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
          3.43936767414372164e03, 1.23033935480374942e03)
_ERF_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
          1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_ERF_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
          6.05183413124413191e-2, 2.33520497626869185e-3)
# fmt: on


def _rational(t, numerator: tuple, denominator: tuple):
    """Cody's ratio of polynomials in ``t``, by Horner's rule: the numerator's last
    coefficient leads, the denominator is monic."""
    degree = len(denominator)
    top, bottom = numerator[-1] * t, t
    for a, b in zip(numerator[: degree - 1], denominator[:-1]):
        top = (top + a) * t
        bottom = (bottom + b) * t
    return (top + numerator[degree - 1]) / (bottom + denominator[-1])


def _erfc_outside(y):
    """erfc(y) for y >= 0.46875 (float64 array), to about 1e-15 relative error; smaller
    y are computed as if they were 0.46875 (the caller takes another branch there)."""
    xp = backend.get_array_module(y)
    with np.errstate(over="ignore", under="ignore"):  # far tails: 1/y^2 and exp give 0
        middle = xp.clip(y, _ERF_SMALL, 4.0)
        far = xp.maximum(y, 4.0)
        t = 1 / (far * far)
        ratio = xp.where(
            y <= 4.0,
            _rational(middle, _ERF_C, _ERF_D),
            (1 / math.sqrt(math.pi) - t * _rational(t, _ERF_P, _ERF_Q)) / far,
        )
        # exp(-y^2) as exp(-r^2) exp(-(y - r)(y + r)), r = y rounded down to 1/16: exact
        # r^2 keeps the relative error of the product small where y^2 is large.
        y = xp.minimum(y, 30.0)  # erfc is 0 in float64 from 27.3 on; inf would give nan
        rounded = xp.trunc(y * 16) / 16
        return xp.exp(-rounded * rounded) * xp.exp(-(y - rounded) * (y + rounded)) * ratio


def _erf(x):
    """erf of a float64 array (NumPy or CuPy), accurate to about 1e-16 (abs)."""
    xp = backend.get_array_module(x)
    y = xp.abs(x)
    inner = xp.clip(x, -_ERF_SMALL, _ERF_SMALL)
    return xp.where(
        y <= _ERF_SMALL,
        inner * _rational(inner * inner, _ERF_A, _ERF_B),
        xp.copysign(1 - _erfc_outside(y), x),
    )


def _normal_cdf(x):
    """Phi(x) = 0.5 erfc(-x / sqrt(2)) of a float64 array, with a small relative error
    also far in the left tail (where 0.5 (1 + erf(x / sqrt(2))) would lose it)."""
    xp = backend.get_array_module(x)
    z = x * -(1 / math.sqrt(2))
    y = xp.abs(z)
    inner = xp.clip(z, -_ERF_SMALL, _ERF_SMALL)
    tail = _erfc_outside(y)  # erfc(|z|)
    erfc = xp.where(
        y <= _ERF_SMALL,
        1 - inner * _rational(inner * inner, _ERF_A, _ERF_B),
        xp.where(z > 0, tail, 2 - tail),
    )
    return 0.5 * erfc


class GELU(Function):
    """GELU, x Phi(x) with Phi the standard normal CDF, in one of PyTorch's two forms.

    ``approximate="tanh"`` (GPT-2's): 0.5 x (1 + tanh(u)) with u = sqrt(2/pi) (x + 0.044715 x^3).
    It is x s with s = 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)), and the slope is
    s (1 + 2 x du/dx (1 - s)), so only s is kept for the backward pass. float32 computes
    s from exp, which NumPy runs up to twice as fast as its float32 tanh (exp(-2u)
    overflows to inf for very negative x, giving the limit s = 0); other dtypes use tanh,
    which keeps float64 results equal to the textbook formula to rounding. Every step is
    done in place in one or two buffers.

    ``approximate="none"`` (exact): Phi from erf (:func:`_erf`, W. J. Cody's rational
    approximations), computed in float64 and rounded once to the input's dtype; the
    slope is d/dx [x Phi(x)] = Phi(x) + x phi(x), phi the normal density.
    """

    def __init__(self, approximate: str = "tanh"):
        self.approximate = approximate

    def forward(self, x):
        if self.approximate == "none":
            return self._exact_forward(x)
        if cuda.wanted(x):  # the CUDA kernel: one pass, nothing kept but x
            from lmcore.cuda import ops

            self.x, self.s = x, None
            return ops.gelu_forward(x)
        xp = backend.get_array_module(x)
        s = xp.multiply(x, x, out=xp.empty_like(x))  # out=: stays an array when 0-d
        s *= _GELU_C * _GELU_K
        s += _GELU_C
        s *= x  # u = sqrt(2/pi) x (1 + k x^2)
        if x.dtype == np.float32:
            s *= -2
            with np.errstate(over="ignore"):
                xp.exp(s, out=s)
            s += 1
            xp.reciprocal(s, out=s)
        else:
            xp.tanh(s, out=s)
            s += 1
            s *= 0.5
        self.x, self.s = x, s
        return x * s

    def backward(self, grad):
        if self.approximate == "none":
            return self._exact_backward(grad)
        if self.s is None:
            from lmcore.cuda import ops

            return ops.gelu_backward(self.x, grad if grad.flags.c_contiguous else grad.copy())
        xp = backend.get_array_module(grad)
        x, s = self.x, self.s
        slope = xp.multiply(x, x, out=xp.empty_like(x))
        slope *= 6 * _GELU_C * _GELU_K
        slope += 2 * _GELU_C
        slope *= x  # 2 x du/dx, du/dx = sqrt(2/pi) (1 + 3 k x^2)
        slope *= 1 - s
        slope += 1
        slope *= s
        slope *= grad
        return slope

    def _exact_forward(self, x):
        xp = backend.get_array_module(x)
        wide = x.astype(np.float64, copy=False)
        cdf = _normal_cdf(wide)  # Phi(x), float64
        self.x, self.cdf = x, cdf.astype(x.dtype, copy=False)
        return xp.asarray(wide * cdf).astype(x.dtype, copy=False)

    def _exact_backward(self, grad):
        xp = backend.get_array_module(grad)
        x = self.x
        with np.errstate(over="ignore", under="ignore"):  # phi(x) is 0 for |x| > 39
            slope = xp.multiply(x, x, out=xp.empty_like(x))  # out=: stays an array when 0-d
            slope *= -0.5
            xp.exp(slope, out=slope)
        slope *= x
        slope *= 1 / math.sqrt(2 * math.pi)  # x phi(x)
        slope += self.cdf  # Phi(x) + x phi(x)
        slope *= grad
        return slope


def exp(input) -> Tensor:
    return Exp()(_as_tensor(input))


def log(input) -> Tensor:
    return Log()(_as_tensor(input))


def tanh(input) -> Tensor:
    return Tanh()(_as_tensor(input))


def sigmoid(input) -> Tensor:
    """1 / (1 + exp(-x)), computed as 0.5 (1 + tanh(x / 2)) so it never overflows."""
    return Sigmoid()(_as_tensor(input))


def relu(input) -> Tensor:
    """max(x, 0); its gradient at exactly 0 is taken as 0."""
    return ReLU()(_as_tensor(input))


def gelu(input, approximate: str = "tanh") -> Tensor:
    """GELU, x Phi(x) with Phi the standard normal CDF, in either of PyTorch's forms:
    ``approximate="tanh"``, GPT-2's approximation and lmcore's default (its GPT uses
    it), or ``"none"``, the exact erf form and PyTorch's default. They differ by at
    most 5e-4.

    Example:
        >>> x = Tensor(np.array([-1.0, 0.0, 1.0]))
        >>> np.round(gelu(x, approximate="none").numpy(), 6)
        array([-0.158655,  0.      ,  0.841345])
        >>> np.round(gelu(x).numpy(), 6)  # the tanh form
        array([-0.158808,  0.      ,  0.841192])
    """
    if approximate not in _GELU_FORMS:
        raise ValueError(
            "gelu's approximate is 'none' (the exact erf form, PyTorch's default) or 'tanh' "
            f"(GPT-2's approximation, lmcore's default), got {approximate!r}"
        )
    return GELU(approximate)(_as_tensor(input))


# ---------------------------------------------------------------------------
# Softmax family


class Softmax(Function):
    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        self.kernel = self.dim in (-1, x.ndim - 1) and x.ndim > 0 and cuda.wanted(x)
        if self.kernel:
            from lmcore.cuda import ops

            self.y = ops.softmax_forward(x)
            return self.y
        xp = backend.get_array_module(x)
        y = xp.exp(x - x.max(axis=self.dim, keepdims=True))  # max subtracted: no overflow
        y /= y.sum(axis=self.dim, keepdims=True)
        self.y = y
        return y

    def backward(self, grad):
        y = self.y
        if self.kernel and cuda.wanted(grad):
            from lmcore.cuda import ops

            return ops.softmax_backward(y, grad)
        return y * (grad - (grad * y).sum(axis=self.dim, keepdims=True))


class LogSoftmax(Function):
    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        xp = backend.get_array_module(x)
        shifted = x - x.max(axis=self.dim, keepdims=True)
        self.y = shifted - xp.log(xp.exp(shifted).sum(axis=self.dim, keepdims=True))
        return self.y

    def backward(self, grad):
        xp = backend.get_array_module(grad)
        return grad - xp.exp(self.y) * grad.sum(axis=self.dim, keepdims=True)


def softmax(input, dim: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim``, stable for large logits and -inf (masked) entries.

    Example:
        >>> softmax(Tensor([0.0, 1e4, -np.inf])).numpy()
        array([0., 1., 0.], dtype=float32)
    """
    return Softmax(dim)(_as_tensor(input))


def log_softmax(input, dim: int = -1) -> Tensor:
    """log(softmax(x)) along ``dim``, computed as x - logsumexp(x) so it stays finite."""
    return LogSoftmax(dim)(_as_tensor(input))


# ---------------------------------------------------------------------------
# Dropout, where, masked_fill


class Dropout(Function):
    def __init__(self, p, generator):
        self.p, self.generator = p, generator

    def forward(self, x):
        keep = self.generator.random(x.shape, dtype=x.dtype) >= self.p
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
    return Where(_indices(condition))(a, b)


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
    return MaskedFill(_indices(mask), value)(_as_tensor(input))


# ---------------------------------------------------------------------------
# Fused cross-entropy and layer norm


class CrossEntropy(Function):
    def __init__(self, targets, ignore_index, label_smoothing, reduction):
        self.targets = targets
        self.ignore_index, self.smoothing, self.reduction = ignore_index, label_smoothing, reduction

    def forward(self, logits):
        xp = backend.get_array_module(logits)
        num_classes = logits.shape[-1]
        x = logits.reshape(-1, num_classes)  # (N, C)
        targets = self.targets.reshape(-1)  # (N,)
        valid = targets != self.ignore_index
        safe_targets = xp.where(valid, targets, 0)
        bad = valid & ((targets < 0) | (targets >= num_classes))
        if bad.any():
            raise IndexError(
                f"cross_entropy targets must lie in [0, {num_classes}) or equal ignore_index="
                f"{self.ignore_index}; found {targets[bad][:5].tolist()}"
            )
        self.logits_shape = logits.shape
        self.count = xp.maximum(valid.sum(), 1).astype(logits.dtype)
        self.kernel = cuda.wanted(x)
        if self.kernel:  # the fused CUDA kernel: no (N, C) array is written here
            from lmcore.cuda import ops

            loss, self.lse = ops.cross_entropy_forward(
                x, targets, self.ignore_index, self.smoothing
            )
            self.x, self.flat_targets, self.valid = x, targets, valid
            return self._reduce(xp, loss, valid, logits.dtype)
        rows = xp.arange(x.shape[0])
        # log p_c = x_c - logsumexp(x); the loss needs it only at the target and, for
        # label smoothing, summed over classes, so the (N, C) log-probs are never kept.
        peak = x.max(axis=1, keepdims=True)  # (N, 1)
        probs = xp.exp(x - peak)  # (N, C), normalized below
        total = probs.sum(axis=1, keepdims=True)
        logsumexp = (peak + xp.log(total))[:, 0]  # (N,)
        loss = logsumexp - x[rows, safe_targets]
        if self.smoothing:
            loss = (1 - self.smoothing) * loss + self.smoothing * (logsumexp - x.mean(axis=1))
        loss = xp.where(valid, loss, 0).astype(logits.dtype)
        probs /= total
        self.probs, self.rows, self.safe_targets, self.valid = probs, rows, safe_targets, valid
        return self._reduce(xp, loss, valid, logits.dtype)

    def _reduce(self, xp, loss, valid, dtype):
        # The count of counted targets stays an array: no wait for the GPU here.
        if self.reduction == "none":
            return loss.reshape(self.targets.shape)
        if self.reduction == "sum":
            return loss.sum()
        return xp.where(valid.any(), loss.sum() / self.count, xp.nan).astype(dtype)

    def backward(self, grad):
        xp = backend.get_array_module(grad)
        if self.kernel:
            from lmcore.cuda import ops

            # Each row's weight: grad per row ("none"), grad ("sum"), grad / count ("mean").
            weight = grad.reshape(-1) if self.reduction == "none" else grad
            if self.reduction == "mean":
                weight = grad / self.count
            grad_x = ops.cross_entropy_backward(
                self.x, self.flat_targets, self.lse, weight, self.ignore_index, self.smoothing
            )
            return grad_x.reshape(self.logits_shape)
        if self.reduction == "none":
            weight = grad.reshape(-1)  # (N,)
        elif self.reduction == "sum":
            weight = xp.broadcast_to(grad, self.valid.shape)
        else:
            weight = xp.broadcast_to(grad / self.count, self.valid.shape)
        weight = xp.where(self.valid, weight, 0)[:, None]  # (N, 1), zero for ignored rows
        # d loss / d x = softmax - (1 - s) onehot(target) - s / C, each row times its weight.
        grad_x = self.probs * weight
        grad_x[self.rows, self.safe_targets] -= (1 - self.smoothing) * weight[:, 0]
        if self.smoothing:
            grad_x -= (self.smoothing / self.probs.shape[1]) * weight
        return grad_x.reshape(self.logits_shape)


def cross_entropy(
    logits: Tensor,
    targets,
    *,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    """Softmax cross-entropy from raw logits, in one fused operation.

    ``logits`` are (N, C) or (B, T, C), classes on the LAST axis (PyTorch wants
    (B, C, T)); ``targets`` are integers of shape (N,) or (B, T). Targets equal to
    ``ignore_index`` add nothing and are not counted by the mean. With
    ``label_smoothing`` s the target distribution is (1 - s) one-hot + s / C.
    ``reduction`` is "mean", "sum" or "none" (per-target losses, 0 where ignored).

    Example:
        >>> logits = Tensor(np.zeros((2, 4)), requires_grad=True)
        >>> round(cross_entropy(logits, np.array([1, 3])).item(), 4)  # log 4
        1.3863
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not 0 <= label_smoothing <= 1:
        raise ValueError(f"label_smoothing must be between 0 and 1, got {label_smoothing}")
    logits = _as_tensor(logits)
    xp = backend.get_array_module(logits.data)
    targets = xp.asarray(_indices(targets))
    if targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"cross_entropy: logits of shape {logits.shape} need targets of shape "
            f"{logits.shape[:-1]} (classes on the last axis), got {targets.shape}"
        )
    if targets.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy targets must be integers, got dtype {targets.dtype}")
    return CrossEntropy(targets, ignore_index, label_smoothing, reduction)(logits)


def mse_loss(input, target, *, reduction: str = "mean") -> Tensor:
    """Mean squared error, ``(input - target) ** 2`` averaged ("mean"), summed ("sum")
    or kept per element ("none"); differentiable in both arguments.

    A target of another shape is broadcast against the input, with a warning, as in
    PyTorch: (N, 1) predictions against (N,) targets give an (N, N) difference.

    Example:
        >>> mse_loss(Tensor([1.0, 2.0]), Tensor([0.0, 0.0])).item()
        2.5
        >>> mse_loss(Tensor([1.0, 2.0]), np.zeros(2, np.float32), reduction="none").numpy()
        array([1., 4.], dtype=float32)
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    input = _as_tensor(input)
    if not isinstance(target, Tensor):  # an array or number: the input's dtype and device
        xp = backend.get_array_module(input.data)
        target = Tensor._make(xp.asarray(target, dtype=input.dtype), None, 0)
    if input.shape != target.shape:
        warnings.warn(
            f"mse_loss got a target of shape {target.shape} and an input of shape "
            f"{input.shape}; they are broadcast together, which is rarely meant. Give "
            "both the same shape (e.g. reshape the target).",
            stacklevel=2,
        )
    difference = sub(input, target)
    squared = mul(difference, difference)
    if reduction == "none":
        return squared
    return sum(squared) if reduction == "sum" else mean(squared)


class LayerNorm(Function):
    """Works on the (N, D) view of the input, D the product of the normalized dims.

    Sums over rows and over columns are matrix-vector products (``a @ ones``), which
    BLAS runs several times faster than NumPy's ``a.sum(axis=...)`` on short rows.
    """

    def __init__(self, num_dims, eps, has_weight, has_bias):
        self.num_dims, self.eps = num_dims, eps
        self.has_weight, self.has_bias = has_weight, has_bias

    def forward(self, x, *params):
        xp = backend.get_array_module(x)
        self.shape = x.shape
        size = math.prod(x.shape[x.ndim - self.num_dims :])
        x = x.reshape(-1, size)  # (N, D)
        self.kernel = cuda.wanted(x, *params)
        if self.kernel:  # the CUDA kernel keeps x, mean and rstd; x_hat is recomputed
            from lmcore.cuda import ops

            weight = params[0].reshape(-1) if self.has_weight else None
            bias = params[-1].reshape(-1) if self.has_bias else None
            y, self.mean, self.rstd = ops.layer_norm_forward(x, weight, bias, self.eps)
            self.x, self.weight = x, weight
            return y.reshape(self.shape)
        self.mean_vector = xp.full(size, 1 / size, dtype=x.dtype)  # x @ it: row means
        x_hat = x - (x @ self.mean_vector)[:, None]  # centred
        variance = xp.einsum("nd,nd->n", x_hat, x_hat) / x.dtype.type(size)  # biased, as PyTorch
        self.rstd = (1 / xp.sqrt(variance + x.dtype.type(self.eps)))[:, None]  # (N, 1)
        x_hat *= self.rstd
        self.x_hat = x_hat  # (N, D)
        self.weight = params[0].reshape(-1) if self.has_weight else None  # (D,)
        y = x_hat * self.weight if self.has_weight else x_hat.copy()
        if self.has_bias:
            y += params[-1].reshape(-1)
        return y.reshape(self.shape)

    def backward(self, grad):
        xp = backend.get_array_module(grad)
        if self.kernel:
            return self._kernel_backward(grad)
        x_hat, rstd, mean_vector = self.x_hat, self.rstd, self.mean_vector
        grad = grad.reshape(x_hat.shape)  # (N, D)
        grad_x_hat = grad * self.weight if self.has_weight else grad
        # d x / d x_hat folds in the mean and variance: rstd (g - mean(g) - x_hat mean(g x_hat)).
        grads = (None,)
        if self.needs_grad[0]:
            mean_g = (grad_x_hat @ mean_vector)[:, None]  # (N, 1)
            mean_g_x_hat = (xp.einsum("nd,nd->n", grad_x_hat, x_hat) / x_hat.shape[1])[:, None]
            grad_x = grad_x_hat - mean_g
            grad_x -= x_hat * mean_g_x_hat
            grad_x *= rstd
            grads = (grad_x.reshape(self.shape),)
        normalized_shape = self.shape[len(self.shape) - self.num_dims :]
        if self.has_weight:
            grad_w = xp.einsum("nd,nd->d", grad, x_hat) if self.needs_grad[1] else None
            grads += (None if grad_w is None else grad_w.reshape(normalized_shape),)
        if self.has_bias:
            grad_b = _sum_rows(grad).reshape(normalized_shape) if self.needs_grad[-1] else None
            grads += (grad_b,)
        return grads

    def _kernel_backward(self, grad):
        from lmcore.cuda import ops

        grad = grad.reshape(self.x.shape)
        if not grad.flags.c_contiguous:
            grad = grad.copy()
        need_w = self.has_weight and self.needs_grad[1]
        need_b = self.has_bias and self.needs_grad[-1]
        dx, dw, db = ops.layer_norm_backward(
            grad, self.x, self.weight, self.mean, self.rstd, self.needs_grad[0], need_w, need_b
        )
        normalized_shape = self.shape[len(self.shape) - self.num_dims :]
        grads = (None if dx is None else dx.reshape(self.shape),)
        if self.has_weight:
            grads += (None if dw is None else dw.reshape(normalized_shape),)
        if self.has_bias:
            grads += (None if db is None else db.reshape(normalized_shape),)
        return grads


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Normalize over the last ``len(normalized_shape)`` dims to mean 0, variance 1, then
    scale by ``weight`` and shift by ``bias`` (both of shape ``normalized_shape``).

    Example:
        >>> x = Tensor(np.random.default_rng(0).normal(3, 2, (4, 8)))
        >>> y = layer_norm(x, (8,))
        >>> bool(np.allclose(y.numpy().mean(-1), 0, atol=1e-6))
        True
    """
    normalized_shape = (
        (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    )
    input = _as_tensor(input)
    if input.shape[-len(normalized_shape) :] != normalized_shape:
        raise ValueError(
            f"layer_norm over {normalized_shape} needs an input ending in those dims, "
            f"got shape {input.shape}"
        )
    params = [p for p in (weight, bias) if p is not None]
    function = LayerNorm(len(normalized_shape), eps, weight is not None, bias is not None)
    return function(input, *map(_as_tensor, params))


# ---------------------------------------------------------------------------
# Dtype and device


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
