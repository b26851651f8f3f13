"""Initialization of parameters in place, with PyTorch's names and formulas.

Random values come from the default generator of the tensor's array library
(:mod:`lmcore.rng`), so ``lmcore.manual_seed`` makes them reproducible, or from
``generator`` when given. They are drawn in float64 and then cast, so a float32
and a float64 model built after the same seed start from the same numbers.

``fan_in`` of a weight of shape ``(out, in, *k)`` is ``in * prod(k)`` and ``fan_out``
is ``out * prod(k)``: a Linear weight (out, in) has fan_in = in.

Example:
    >>> import numpy as np
    >>> from lmcore.autograd import Tensor
    >>> from lmcore.rng import manual_seed
    >>> manual_seed(0)
    >>> w = xavier_uniform_(Tensor(np.empty((256, 512), np.float32)))
    >>> round(float(w.data.var()) * (256 + 512) / 2, 1)  # Var = 2 / (fan_in + fan_out)
    1.0
"""

from __future__ import annotations

import math

from lmcore import backend
from lmcore.autograd import Tensor
from lmcore.rng import default_generator

__all__ = [
    "calculate_gain",
    "constant_",
    "fan_in_and_fan_out",
    "kaiming_normal_",
    "kaiming_uniform_",
    "normal_",
    "ones_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]


def _generator(tensor: Tensor, generator):
    return generator or default_generator(backend.get_array_module(tensor.data))


def _fill(tensor: Tensor, values) -> Tensor:
    tensor.data[...] = values.astype(tensor.dtype, copy=False)
    return tensor


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator=None) -> Tensor:
    """Fill with values drawn uniformly from [a, b); returns the tensor."""
    values = _generator(tensor, generator).random(tensor.shape) * (b - a) + a
    return _fill(tensor, values)


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator=None) -> Tensor:
    """Fill with values drawn from N(mean, std^2); returns the tensor."""
    values = _generator(tensor, generator).standard_normal(tensor.shape) * std + mean
    return _fill(tensor, values)


def constant_(tensor: Tensor, value: float) -> Tensor:
    """Fill with ``value``; returns the tensor."""
    tensor.data[...] = value
    return tensor


def zeros_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 0.0)


def ones_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 1.0)


def fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape ``(out, in, *kernel)``.

    Example:
        >>> import numpy as np
        >>> fan_in_and_fan_out(Tensor(np.empty((8, 3))))
        (3, 8)
    """
    if tensor.ndim < 2:
        raise ValueError(
            f"fan in and fan out need a weight of at least 2 dimensions (out, in, ...), "
            f"got shape {tensor.shape}; initialize biases with uniform_, normal_ or zeros_."
        )
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


_LINEAR_GAIN = ("linear", "identity", "sigmoid", "conv1d", "conv2d", "conv3d")


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The factor that keeps the variance of activations steady through ``nonlinearity``.

    Example:
        >>> calculate_gain("relu") == math.sqrt(2)
        True
    """
    if nonlinearity in _LINEAR_GAIN:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    raise ValueError(
        f"no gain known for {nonlinearity!r}; use one of {', '.join(_LINEAR_GAIN)}, "
        "tanh, relu, leaky_relu"
    )


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """Glorot and Bengio (2010): U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """Glorot and Bengio (2010): N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def _kaiming_std(tensor: Tensor, a: float, mode: str, nonlinearity: str) -> float:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(
    tensor: Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator=None,
) -> Tensor:
    """He et al. (2015): U(-b, b) with b = sqrt(3) * gain / sqrt(fan); ``a`` is the
    negative slope of a leaky ReLU (``a = sqrt(5)`` gives PyTorch's Linear default)."""
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(
    tensor: Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator=None,
) -> Tensor:
    """He et al. (2015): N(0, std^2) with std = gain / sqrt(fan)."""
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity), generator)
