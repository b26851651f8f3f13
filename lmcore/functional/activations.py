"""Element-wise functions and activations: exp, log, tanh, sigmoid, ReLU, GELU (tanh and exact erf forms), softmax and log-softmax."""

from __future__ import annotations

import math

import numpy as np

from lmcore import backend, cuda
from lmcore.autograd import Function, Tensor
from lmcore.functional.common import (
    _as_tensor,
)
from lmcore.functional.conversion import cast


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
    """Cody's ratio of polynomials in ``t``, by Horner's rule in place: the numerator's
    last coefficient leads, the denominator is monic."""
    degree = len(denominator)
    top, bottom = t * numerator[-1], t + 0.0  # fresh arrays to work in
    for a, b in zip(numerator[: degree - 1], denominator[:-1]):
        top += a
        top *= t
        bottom += b
        bottom *= t
    top += numerator[degree - 1]
    bottom += denominator[-1]
    top /= bottom
    return top


def _where(xp, condition, if_true, if_false, x):
    """``if_true(x)`` where ``condition`` holds, else ``if_false(x)``. On NumPy each
    function sees only its own elements (the branches are costly polynomials); on a GPU
    both run on all of them, as one ``where``, which needs no count of the elements."""
    if xp is not np or np.ndim(x) == 0:
        return xp.where(condition, if_true(x), if_false(x))
    out = np.empty_like(x)
    out[condition] = if_true(x[condition])
    otherwise = ~condition
    out[otherwise] = if_false(x[otherwise])
    return out


def _erfc_outside(y):
    """erfc(y) for y >= 0.46875 (float64 array), to about 1e-15 relative error; smaller
    y are computed as if they were 0.46875 (the caller takes another branch there)."""
    xp = backend.get_array_module(y)

    def middle(v):
        return _rational(xp.clip(v, _ERF_SMALL, 4.0), _ERF_C, _ERF_D)

    def far(v):
        v = xp.maximum(v, 4.0)
        t = 1 / (v * v)
        return (1 / math.sqrt(math.pi) - t * _rational(t, _ERF_P, _ERF_Q)) / v

    with np.errstate(over="ignore", under="ignore"):  # far tails: 1/y^2 and exp give 0
        ratio = _where(xp, y <= 4.0, middle, far, y)
        # exp(-y^2) as exp(-r^2) exp(-(y - r)(y + r)), r = y rounded down to 1/16: exact
        # r^2 keeps the relative error of the product small where y^2 is large.
        y = xp.minimum(y, 30.0)  # erfc is 0 in float64 from 27.3 on; inf would give nan
        rounded = xp.trunc(y * 16) / 16
        return xp.exp(-rounded * rounded) * xp.exp(-(y - rounded) * (y + rounded)) * ratio


def _erf_inside(x):
    """erf(x) for |x| <= 0.46875; larger x are computed as if clipped to that range."""
    xp = backend.get_array_module(x)
    inner = xp.clip(x, -_ERF_SMALL, _ERF_SMALL)
    return inner * _rational(inner * inner, _ERF_A, _ERF_B)


def _erf(x):
    """erf of a float64 array (NumPy or CuPy), accurate to about 1e-16 (abs)."""
    xp = backend.get_array_module(x)
    return _where(
        xp,
        xp.abs(x) <= _ERF_SMALL,
        _erf_inside,
        lambda v: xp.copysign(1 - _erfc_outside(xp.abs(v)), v),
        x,
    )


def _normal_cdf(x):
    """Phi(x) = 0.5 erfc(-x / sqrt(2)) of a float64 array, with a small relative error
    also far in the left tail (where 0.5 (1 + erf(x / sqrt(2))) would lose it)."""
    xp = backend.get_array_module(x)

    def outside(z):  # erfc(z) from erfc(|z|)
        tail = _erfc_outside(xp.abs(z))
        return xp.where(z > 0, tail, 2 - tail)

    z = x * -(1 / math.sqrt(2))
    return 0.5 * _where(xp, xp.abs(z) <= _ERF_SMALL, lambda v: 1 - _erf_inside(v), outside, z)


class GELU(Function):
    """GELU, x Phi(x) with Phi the standard normal CDF, in one of PyTorch's two forms.

    ``approximate="tanh"`` (GPT-2's): 0.5 x (1 + tanh(u)) with u = sqrt(2/pi) (x + 0.044715 x^3).
    It is x s with s = 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)), and the slope is
    s (1 + 2 x du/dx (1 - s)), so only s is kept for the backward pass. float32 computes
    s from exp, which NumPy runs up to twice as fast as its float32 tanh (exp(-2u)
    overflows to inf for very negative x, giving the limit s = 0); other dtypes use tanh,
    which keeps float64 results equal to the textbook formula to rounding. Every step is
    done in place in one or two buffers.

    ``approximate="none"`` (exact): Phi from erf (``_erf``, W. J. Cody's rational
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
            xp.divide(1, s, out=s)  # faster than NumPy's float32 reciprocal
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
    input = _as_tensor(input)
    if input.dtype == "float16":  # the sums in float32, the result in float16
        return cast(Softmax(dim)(cast(input, "float32")), "float16")
    return Softmax(dim)(input)


def log_softmax(input, dim: int = -1) -> Tensor:
    """log(softmax(x)) along ``dim``, computed as x - logsumexp(x) so it stays finite."""
    input = _as_tensor(input)
    if input.dtype == "float16":  # the sums in float32, the result in float16
        return cast(LogSoftmax(dim)(cast(input, "float32")), "float16")
    return LogSoftmax(dim)(input)
