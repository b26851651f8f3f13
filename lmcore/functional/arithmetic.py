"""Arithmetic with NumPy broadcasting, and matrix products (``matmul``, ``linear``)."""

from __future__ import annotations

from lmcore import backend
from lmcore.autograd import Function, Tensor
from lmcore.functional.common import (
    _as_tensor,
    _sum_rows,
    _tensors,
    _unbroadcast,
)


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
        >>> import numpy as np
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
        >>> import numpy as np
        >>> linear(Tensor(np.ones((8, 3))), Tensor(np.ones((5, 3))), Tensor(np.zeros(5))).shape
        (8, 5)
    """
    inputs = (input, weight) if bias is None else (input, weight, bias)
    return Linear()(*map(_as_tensor, inputs))
