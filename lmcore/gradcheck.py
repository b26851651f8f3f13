"""Check analytic gradients against central differences, in float64.

``gradcheck(fn, *inputs)`` reduces ``fn``'s output(s) to one number
``L = sum(output * R)`` with fixed random weights ``R`` (so every output element
counts), gets dL/dx from ``backward``, and compares it element by element with
``(L(x + eps) - L(x - eps)) / (2 eps)``. Floating tensors are converted to
float64 copies first; Python numbers, arrays and non-floating tensors are passed
through unchanged. Inputs with ``requires_grad=True`` are checked.

Example:
    >>> import numpy as np
    >>> from lmcore.autograd import Tensor
    >>> x = Tensor(np.random.default_rng(0).normal(size=(3, 4)), requires_grad=True)
    >>> gradcheck(lambda t: (t * t).tanh().sum(dim=1), x)
    True
"""

from __future__ import annotations

import numpy as np

from lmcore import backend
from lmcore.autograd import Tensor, no_grad

__all__ = ["gradcheck"]


def gradcheck(
    fn, *inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3, seed: int = 0
) -> bool:
    """True when the analytic gradient of ``fn`` matches central differences for every
    input that requires grad; otherwise an AssertionError names the input, the worst
    element, and the analytic and numeric values.

    An element passes when ``|analytic - numeric| <= atol + rtol * |numeric|``.
    """
    inputs = [_float64_copy(x) for x in inputs]
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck needs at least one input tensor with requires_grad=True")

    outputs = _as_tuple(fn(*inputs))
    rng = np.random.default_rng(seed)
    weights = []
    for y in outputs:
        xp = backend.get_array_module(y.data)
        weights.append(xp.asarray(rng.standard_normal(y.shape)))

    loss = sum((y * r).sum() for y, r in zip(outputs, weights, strict=True))
    loss.backward()

    def loss_value() -> float:
        with no_grad():
            values = _as_tuple(fn(*inputs))
        return float(sum((y.data * r).sum() for y, r in zip(values, weights, strict=True)))

    for i in checked:
        x = inputs[i]
        analytic = _to_numpy(x._grad) if x._grad is not None else np.zeros(x.shape)
        numeric = np.zeros(x.shape)
        flat = x.data.reshape(-1)  # a view: writing to it perturbs x
        for k in range(flat.size):
            original = flat[k].item()
            flat[k] = original + eps
            above = loss_value()
            flat[k] = original - eps
            below = loss_value()
            flat[k] = original
            numeric.flat[k] = (above - below) / (2 * eps)
        excess = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
        if (excess > 0).any():
            worst = np.unravel_index(int(np.argmax(excess)), x.shape)
            raise AssertionError(
                f"gradient of input {i} (shape {x.shape}) is wrong at element {worst}: "
                f"analytic {analytic[worst]:.8g}, numeric {numeric[worst]:.8g} "
                f"({int((excess > 0).sum())} of {x.size} elements off; atol={atol}, rtol={rtol})"
            )
    return True


def _float64_copy(x):
    if not isinstance(x, Tensor) or x.dtype.kind != "f":
        return x
    return Tensor(x.data.astype(np.float64), requires_grad=x.requires_grad)


def _as_tuple(outputs) -> tuple[Tensor, ...]:
    return tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)


def _to_numpy(array) -> np.ndarray:
    return array if isinstance(array, np.ndarray) else array.get()
