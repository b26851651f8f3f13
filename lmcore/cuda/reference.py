"""NumPy references for the CUDA kernels: the same mathematics, in float64, written for
clarity. Every kernel is checked against its reference on fresh random inputs.

Example:
    >>> import numpy as np
    >>> from lmcore.cuda import reference
    >>> reference.softmax(np.array([[0.0, np.log(3.0)]]))
    array([[0.25, 0.75]])
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "adamw", "attention", "attention_backward", "cross_entropy", "cross_entropy_backward",
    "gelu", "gelu_backward", "layer_norm", "layer_norm_backward", "matmul",
    "quantized_matmul", "softmax", "softmax_backward",
]  # fmt: skip

_C, _K = math.sqrt(2 / math.pi), 0.044715


def gelu(x):
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    x = np.asarray(x, np.float64)
    return 0.5 * x * (1 + np.tanh(_C * (x + _K * x**3)))


def gelu_backward(x, grad):
    """grad times dGELU/dx."""
    x = np.asarray(x, np.float64)
    t = np.tanh(_C * (x + _K * x**3))
    return grad * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _C * (1 + 3 * _K * x * x))


def softmax(x, scale: float = 1.0, causal: bool = False):
    """softmax(scale x) over the last axis; with ``causal``, row i of the last two axes
    (Tq, Tk) sees columns j <= i + Tk - Tq only (the others get 0)."""
    x = np.asarray(x, np.float64) * scale
    if causal:
        tq, tk = x.shape[-2:]
        x = np.where(np.tri(tq, tk, k=tk - tq, dtype=bool), x, -np.inf)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(y, grad, scale: float = 1.0):
    """The gradient of softmax(scale x) with respect to x, from its output y."""
    y = np.asarray(y, np.float64)
    return scale * y * (grad - (grad * y).sum(axis=-1, keepdims=True))


def layer_norm(x, weight=None, bias=None, eps: float = 1e-5):
    """(y, mean, rstd) of LayerNorm over the last axis."""
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=-1)
    rstd = 1 / np.sqrt(x.var(axis=-1) + eps)
    y = (x - mean[..., None]) * rstd[..., None]
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y, mean, rstd


def layer_norm_backward(x, weight, grad, eps: float = 1e-5):
    """(dx, dweight, dbias) of LayerNorm over the last axis of a 2-d ``x``."""
    x, grad = np.asarray(x, np.float64), np.asarray(grad, np.float64)
    _, mean, rstd = layer_norm(x, eps=eps)
    x_hat = (x - mean[:, None]) * rstd[:, None]
    g = grad * weight if weight is not None else grad
    dx = rstd[:, None] * (
        g - g.mean(axis=1, keepdims=True) - x_hat * (g * x_hat).mean(axis=1, keepdims=True)
    )
    return dx, (grad * x_hat).sum(axis=0), grad.sum(axis=0)


def cross_entropy(logits, targets, ignore_index: int = -100, smoothing: float = 0.0):
    """Per-row losses of softmax cross-entropy (0 where the target is ignored)."""
    x = np.asarray(logits, np.float64)
    peak = x.max(axis=1)
    lse = peak + np.log(np.exp(x - peak[:, None]).sum(axis=1))
    valid = targets != ignore_index
    picked = x[np.arange(len(x)), np.where(valid, targets, 0)]
    loss = (1 - smoothing) * (lse - picked) + smoothing * (lse - x.mean(axis=1))
    return np.where(valid, loss, 0.0)


def cross_entropy_backward(
    logits, targets, weight, ignore_index: int = -100, smoothing: float = 0.0
):
    """d(sum_rows weight_row * loss_row)/d logits."""
    x = np.asarray(logits, np.float64)
    p = np.exp(x - x.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    valid = targets != ignore_index
    target = np.zeros_like(p)
    target[np.arange(len(x)), np.where(valid, targets, 0)] = 1 - smoothing
    w = np.where(valid, np.broadcast_to(weight, valid.shape), 0.0)[:, None]
    return w * (p - target - smoothing / x.shape[1])


def adamw(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    step: int,
    lr: float,
    betas=(0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
):
    """One AdamW step: (param, exp_avg, exp_avg_sq) after it, as torch.optim.AdamW."""
    beta1, beta2 = betas
    p = np.asarray(param, np.float64) * (1 - lr * weight_decay)
    m = beta1 * np.asarray(exp_avg, np.float64) + (1 - beta1) * grad
    v = beta2 * np.asarray(exp_avg_sq, np.float64) + (1 - beta2) * np.square(grad, dtype=np.float64)
    c1, c2 = 1 - beta1**step, 1 - beta2**step
    p = p - lr / c1 * m / (np.sqrt(v / c2) + eps)
    return p, m, v


def attention(q, k, v, causal: bool = True, scale: float | None = None):
    """(out, lse): softmax(scale q k^T) v over the last two axes, and the log of each
    query's softmax denominator, for q (..., Tq, D), k and v (..., Tk, D)."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = scale * q @ np.swapaxes(k, -1, -2)
    if causal:
        tq, tk = s.shape[-2:]
        s = np.where(np.tri(tq, tk, k=tk - tq, dtype=bool), s, -np.inf)
    peak = s.max(axis=-1, keepdims=True)
    e = np.exp(s - peak)
    total = e.sum(axis=-1, keepdims=True)
    return (e / total) @ v, (peak + np.log(total))[..., 0]


def attention_backward(q, k, v, grad, causal: bool = True, scale: float | None = None):
    """(dq, dk, dv) of :func:`attention`'s output against the upstream ``grad``."""
    q, k, v, grad = (np.asarray(a, np.float64) for a in (q, k, v, grad))
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = scale * q @ np.swapaxes(k, -1, -2)
    p = softmax(s, causal=causal)
    dv = np.swapaxes(p, -1, -2) @ grad
    dp = grad @ np.swapaxes(v, -1, -2)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    return scale * ds @ k, scale * np.swapaxes(ds, -1, -2) @ q, dv


def matmul(a, b):
    """a @ b in float64."""
    return np.asarray(a, np.float64) @ np.asarray(b, np.float64)


def quantized_matmul(x, codes, scales, bits: int):
    """x (N, in) @ W^T for W (out, in) = codes times one scale per row and group of inputs:
    int8 codes (out, in), or for 4 bits (out, in / 2) bytes holding input 2j in the low
    nibble and 2j + 1 in the high one, each as code + 8.

    Example:
        >>> codes = np.array([[0x9F]], np.uint8)  # low nibble 15 -> 7, high 9 -> 1
        >>> quantized_matmul(np.array([[1.0, 10.0]]), codes, np.array([[0.5]]), bits=4)
        array([[8.5]])
    """
    codes = np.asarray(codes)
    if bits == 4:
        low = (codes & 15).astype(np.int64) - 8
        high = (codes >> 4).astype(np.int64) - 8
        codes = np.stack([low, high], axis=-1).reshape(codes.shape[0], -1)
    out, groups = np.shape(scales)
    weight = codes.astype(np.float64).reshape(out, groups, -1) * np.asarray(scales)[:, :, None]
    return np.asarray(x, np.float64) @ weight.reshape(out, -1).T
