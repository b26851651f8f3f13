"""Layers with PyTorch's names, argument order, parameter shapes and default init.

Each layer makes its parameters on ``device`` (default: the active one, see
:mod:`lmcore.backend`) with ``dtype`` (default float32), and checks its input so a
wrong shape is reported with the layer and both shapes.

Example:
    >>> import numpy as np
    >>> from lmcore.autograd import Tensor
    >>> layer = Linear(3, 5)
    >>> layer.weight.shape, layer.bias.shape
    ((5, 3), (5,))
    >>> layer(Tensor(np.ones((2, 7, 3), np.float32))).shape
    (2, 7, 5)
"""

from __future__ import annotations

import math

import numpy as np

from lmcore import backend
from lmcore import functional as F
from lmcore.autograd import Tensor
from lmcore.nn import init
from lmcore.nn.module import Module, Parameter

__all__ = ["GELU", "Dropout", "Embedding", "Identity", "LayerNorm", "Linear", "ReLU", "Tanh"]


def _new_parameter(shape: tuple[int, ...], device: str | None, dtype) -> Parameter:
    """A parameter of zeros, to be filled by an initializer."""
    return Parameter(backend.xp(device).zeros(shape, dtype=np.dtype(dtype or np.float32)))


class Linear(Module):
    """``y = x @ weight.T + bias`` over the last dimension: (..., in_features) -> (..., out_features).

    ``weight`` is (out_features, in_features) and ``bias`` (out_features,), both drawn
    from U(-1/sqrt(in_features), 1/sqrt(in_features)) as in PyTorch (for the weight:
    ``kaiming_uniform_`` with ``a = sqrt(5)``).

    Example:
        >>> Linear(4, 2, bias=False)
        Linear(in_features=4, out_features=2, bias=False)
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None
    ):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = _new_parameter((out_features, in_features), device, dtype)
        if bias:
            self.bias = _new_parameter((out_features,), device, dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"{self!r} expects input of shape (..., {self.in_features}), got "
                f"{tuple(x.shape)}; the last dimension must equal in_features."
            )
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class Embedding(Module):
    """A lookup table: integer ids (...,) -> rows of ``weight`` (..., embedding_dim).

    ``weight`` is (num_embeddings, embedding_dim), drawn from N(0, 1) as in PyTorch.

    Example:
        >>> table = Embedding(10, 4)
        >>> table(np.array([[1, 2, 3], [9, 0, 0]])).shape
        (2, 3, 4)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = _new_parameter((num_embeddings, embedding_dim), device, dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.normal_(self.weight)

    def forward(self, ids) -> Tensor:
        ids = ids.data if isinstance(ids, Tensor) else ids
        ids = backend.get_array_module(self.weight.data).asarray(ids)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"{self!r} takes integer ids, got dtype {ids.dtype}")
        outside = (ids < 0) | (ids >= self.num_embeddings)
        if ids.size and bool(outside.any()):
            raise IndexError(
                f"{self!r} got ids outside [0, {self.num_embeddings}), e.g. "
                f"{ids[outside][:5].tolist()}; check the tokenizer's vocabulary size against "
                "num_embeddings."
            )
        return F.embedding(ids, self.weight)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """Normalize over the last dimensions ``normalized_shape`` to mean 0 and variance 1,
    then scale by ``weight`` (ones) and shift by ``bias`` (zeros); one fused operation.

    Example:
        >>> norm = LayerNorm(8)
        >>> y = norm(Tensor(np.random.default_rng(0).normal(5, 3, (2, 8)).astype(np.float32)))
        >>> bool(np.allclose(y.numpy().std(-1), 1, atol=1e-3))
        True
    """

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        self.register_parameter("weight", None)
        self.register_parameter("bias", None)
        if elementwise_affine:
            self.weight = init.ones_(_new_parameter(self.normalized_shape, device, dtype))
            if bias:
                self.bias = _new_parameter(self.normalized_shape, device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        count = len(self.normalized_shape)
        if tuple(x.shape[x.ndim - count :]) != self.normalized_shape or x.ndim < count:
            raise ValueError(
                f"{self!r} expects input of shape (..., {', '.join(map(str, self.normalized_shape))}), "
                f"got {tuple(x.shape)}; its last dimensions must equal normalized_shape."
            )
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, "
            f"elementwise_affine={self.elementwise_affine}"
            + ("" if self.bias is not None or not self.elementwise_affine else ", bias=False")
        )


class Dropout(Module):
    """Zero each element with probability ``p`` and scale the rest by 1 / (1 - p) in
    training mode; the identity after ``eval()``.

    Example:
        >>> drop = Dropout(0.5).eval()
        >>> drop(Tensor(np.ones(4, np.float32))).numpy()
        array([1., 1., 1., 1.], dtype=float32)
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout probability must be between 0 and 1, got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ReLU(Module):
    """max(x, 0), element-wise."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


class GELU(Module):
    """GELU, x Phi(x) with Phi the standard normal CDF. The default is GPT-2's tanh
    approximation (``approximate="tanh"``, which lmcore's GPT uses); ``"none"`` gives
    the exact erf form, PyTorch's default for ``nn.GELU()``.

    Example:
        >>> x = Tensor(np.array([-1.0, 1.0]))
        >>> np.round(GELU(approximate="none")(x).numpy(), 6)
        array([-0.158655,  0.841345])
        >>> GELU()
        GELU(approximate='tanh')
    """

    def __init__(self, approximate: str = "tanh"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(
                "GELU's approximate is 'none' (the exact erf form, PyTorch's default) or "
                f"'tanh' (GPT-2's approximation, lmcore's default), got {approximate!r}"
            )
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Identity(Module):
    """Returns its input unchanged: a placeholder where a layer is optional (arguments
    are accepted and ignored, as in PyTorch).

    Example:
        >>> norm = Identity()  # instead of LayerNorm(8) in an ablation
        >>> x = Tensor(np.ones(3, np.float32))
        >>> norm(x) is x
        True
    """

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Tanh(Module):
    """tanh(x), element-wise."""

    def forward(self, x: Tensor) -> Tensor:
        return F.tanh(x)
