"""Layer normalization, fused, with a hand-written backward pass."""

from __future__ import annotations

import math

from lmcore import backend, cuda
from lmcore.autograd import Function, Tensor
from lmcore.functional.common import (
    _as_tensor,
    _sum_rows,
)
from lmcore.functional.conversion import cast


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
        >>> import numpy as np
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
    params = [_as_tensor(p) for p in (weight, bias) if p is not None]
    function = LayerNorm(len(normalized_shape), eps, weight is not None, bias is not None)
    if input.dtype == "float16":  # statistics in float32, the result in float16
        wide = [cast(t, "float32") for t in (input, *params)]
        return cast(function(*wide), "float16")
    return function(input, *params)


class ResidualLayerNorm(Function):
    """``(x + branch, LayerNorm(x + branch))`` as one operation: the sum the residual stream
    carries on, and the normalized copy the next branch reads.

    On CUDA one kernel reads ``x`` and ``branch`` once and writes both results (a separate
    add would write the sum and LayerNorm read it back). The backward pass adds the
    gradient that reaches the sum to the one LayerNorm sends back; ``x`` and ``branch``
    get that same gradient, as the two inputs of an addition do.
    """

    def __init__(self, eps, has_weight, has_bias):
        self.norm = LayerNorm(1, eps, has_weight, has_bias)

    def forward(self, x, branch, *params):
        norm = self.norm
        norm.needs_grad = (True, *self.needs_grad[2:])
        if cuda.wanted(x, branch, *params):
            from lmcore.cuda import ops

            rows = (-1, x.shape[-1])  # (N, D)
            weight = params[0] if norm.has_weight else None
            bias = params[-1] if norm.has_bias else None
            total, y, norm.mean, norm.rstd = ops.residual_layer_norm_forward(
                x.reshape(rows), branch.reshape(rows), weight, bias, norm.eps
            )
            norm.kernel, norm.shape, norm.x, norm.weight = True, x.shape, total, weight
            return total.reshape(x.shape), y.reshape(x.shape)
        total = x + branch
        return total, norm.forward(total, *params)

    def backward(self, grad_total, grad_y):
        params = (None,) * (self.norm.has_weight + self.norm.has_bias)
        if grad_y is None:
            return (grad_total, grad_total, *params)
        grad_x, *params = self.norm.backward(grad_y)
        if grad_total is not None:
            grad_x = grad_x + grad_total
        return (grad_x, grad_x, *params)


def residual_layer_norm(x, branch, weight=None, bias=None, eps: float = 1e-5):
    """``(x + branch, layer_norm(x + branch))`` over the last dim, in one operation (one
    kernel on CUDA): the residual add of a Transformer block and the LayerNorm of the next
    branch, fused. Same results and gradients as the two operations.

    Example:
        >>> import numpy as np
        >>> x = Tensor(np.random.default_rng(0).normal(size=(2, 3, 8)), requires_grad=True)
        >>> branch = Tensor(np.ones((2, 3, 8)))
        >>> total, y = residual_layer_norm(x, branch)
        >>> bool(np.allclose(y.numpy(), layer_norm(x + branch, (8,)).numpy()))
        True
    """
    x, branch = _as_tensor(x), _as_tensor(branch)
    if x.shape != branch.shape:
        raise ValueError(
            f"residual_layer_norm adds tensors of one shape, got {x.shape} and {branch.shape}"
        )
    params = [_as_tensor(p) for p in (weight, bias) if p is not None]
    if x.dtype == "float16":  # layer_norm widens float16 for its statistics
        total = x + branch
        return total, layer_norm(total, x.shape[-1:], weight, bias, eps)
    return ResidualLayerNorm(eps, weight is not None, bias is not None)(x, branch, *params)
