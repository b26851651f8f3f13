"""Gradient clipping by the global norm, as ``torch.nn.utils.clip_grad_norm_``.

Example:
    >>> import numpy as np
    >>> from lmcore.nn import Parameter
    >>> a, b = Parameter(np.zeros(2)), Parameter(np.zeros(1))
    >>> a.grad, b.grad = np.array([3.0, 4.0]), np.array([12.0])
    >>> clip_grad_norm_([a, b], max_norm=6.5).item()  # sqrt(9 + 16 + 144)
    13.0
    >>> b.grad.numpy().round(4)  # scaled by 6.5 / 13
    array([6.])
"""

from __future__ import annotations

from lmcore import backend
from lmcore.autograd import Tensor

__all__ = ["clip_grad_norm_"]


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0) -> Tensor:
    """Scale all gradients together, in place, so that their joint norm is at most
    ``max_norm``; return the joint norm from before clipping as a 0-d tensor.

    The norm is that of all gradients concatenated (``norm_type`` 2 by default, or
    ``float("inf")`` for the largest absolute value). Parameters without a gradient
    are skipped. The scale ``max_norm / (norm + 1e-6)``, capped at 1, is applied
    without reading the norm back to Python, so it does not wait for a GPU.
    """
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = [p._grad for p in parameters if p._grad is not None]
    if not grads:
        return Tensor(0.0)
    xp = backend.get_array_module(grads[0])
    if norm_type == float("inf"):
        norms = xp.stack([xp.abs(g).max() for g in grads])
        total = norms.max()
    elif norm_type == 2:
        norms = xp.stack([xp.vdot(g.ravel(), g.ravel()) for g in grads])  # sums of squares
        total = xp.sqrt(norms.sum())
    else:
        norms = xp.stack([(xp.abs(g) ** norm_type).sum() for g in grads])
        total = norms.sum() ** (1.0 / norm_type)
    scale = xp.minimum(max_norm / (total + 1e-6), 1.0)
    for g in grads:
        g *= scale.astype(g.dtype)
    return Tensor(total)
