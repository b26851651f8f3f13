"""Loss modules with PyTorch's names and settings, on top of :mod:`lmcore.functional`.

Example:
    >>> import numpy as np
    >>> from lmcore.autograd import Tensor
    >>> loss_fn = CrossEntropyLoss(label_smoothing=0.1)
    >>> logits = Tensor(np.zeros((4, 3)), requires_grad=True)    # (N, C)
    >>> loss = loss_fn(logits, np.array([0, 2, 1, 1]))           # targets (N,)
    >>> round(loss.item(), 4)                                     # log 3
    1.0986
    >>> loss.backward()
"""

from __future__ import annotations

from lmcore import backend
from lmcore import functional as F
from lmcore.autograd import Tensor, _data_of
from lmcore.nn.module import Module

__all__ = ["CrossEntropyLoss", "MSELoss"]

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


class CrossEntropyLoss(Module):
    """Softmax cross-entropy from raw logits, as ``torch.nn.CrossEntropyLoss``.

    ``input`` holds logits and ``target`` class indices, in either layout:

    * PyTorch's: classes on axis 1, (N, C) or (N, C, d1, ...) with targets (N, d1, ...);
    * lmcore's: classes on the last axis, (B, T, C) with targets (B, T), as
      :func:`lmcore.functional.loss_functions.cross_entropy` takes them (what a language model gives).

    The layout is read from the target's shape; when both fit (C == d1), the classes
    are taken to be last. A floating ``target`` of the input's shape holds class
    probabilities instead (``ignore_index`` does not apply to it).

    ``ignore_index`` targets add nothing and are not counted by the mean;
    ``label_smoothing`` s mixes the target with the uniform distribution,
    (1 - s) target + s / C; ``reduction`` is "mean", "sum" or "none". ``weight`` (C,)
    scales each class's term; with class indices the mean divides by the sum of the
    counted targets' weights, with probabilities by the number of targets (PyTorch's rule).

    Example:
        >>> import numpy as np
        >>> loss_fn = CrossEntropyLoss(ignore_index=-1, reduction="sum")
        >>> logits = Tensor(np.zeros((2, 5, 3)))                 # (N, C, T), PyTorch's layout
        >>> round(loss_fn(logits, np.array([[0, 1, -1], [4, 4, 4]])).item(), 4)  # 5 log 5
        8.0472
    """

    def __init__(
        self,
        weight=None,
        *,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        if not 0 <= label_smoothing <= 1:
            raise ValueError(f"label_smoothing must be between 0 and 1, got {label_smoothing}")
        self.weight = weight
        self.ignore_index = ignore_index
        self.reduction = _check_reduction(reduction)
        self.label_smoothing = label_smoothing

    def forward(self, input: Tensor, target) -> Tensor:
        input = input if isinstance(input, Tensor) else Tensor(input)
        target_data = target.data if isinstance(target, Tensor) else target
        if getattr(target_data, "dtype", None) is not None and target_data.dtype.kind == "f":
            return self._soft_targets(input, target)
        shape = tuple(getattr(target_data, "shape", ()))
        if _classes_on_axis_1(input.shape, shape):
            input = _classes_last(input)
        return F.cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            reduction=self.reduction,
        )

    def _soft_targets(self, input: Tensor, target) -> Tensor:
        """-sum_c p_c log softmax(input)_c, with p the (smoothed) target probabilities."""
        target = target if isinstance(target, Tensor) else Tensor(target, dtype=input.dtype)
        if target.shape != input.shape:
            raise ValueError(
                f"CrossEntropyLoss: class probabilities must have the input's shape "
                f"{input.shape}, got {target.shape}; class indices must be integers."
            )
        if input.ndim >= 2:  # PyTorch's layout: classes on axis 1
            input, target = _classes_last(input), _classes_last(target)
        if self.label_smoothing:
            target = target * (1 - self.label_smoothing) + self.label_smoothing / input.shape[-1]
        if self.weight is not None:
            xp = backend.get_array_module(input.data)
            target = target * Tensor(xp.asarray(_data_of(self.weight), dtype=input.dtype))
        losses = -(target * F.log_softmax(input, dim=-1)).sum(dim=-1)  # (N, d1, ...)
        if self.reduction == "none":
            return losses
        return losses.sum() if self.reduction == "sum" else losses.mean()


class MSELoss(Module):
    """Mean squared error, as ``torch.nn.MSELoss``: ``(input - target) ** 2`` averaged,
    summed or per element (``reduction`` "mean", "sum" or "none").

    Example:
        >>> import numpy as np
        >>> loss = MSELoss()(Tensor([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0], np.float32))
        >>> round(loss.item(), 4)  # (0 + 0 + 4) / 3
        1.3333
    """

    def __init__(self, *, reduction: str = "mean"):
        super().__init__()
        self.reduction = _check_reduction(reduction)

    def forward(self, input: Tensor, target) -> Tensor:
        return F.mse_loss(input, target, reduction=self.reduction)


def _classes_on_axis_1(input_shape: tuple, target_shape: tuple) -> bool:
    """True when integer targets fit PyTorch's (N, C, d1, ...) layout and not lmcore's."""
    if len(input_shape) < 3:
        return False
    pytorch = input_shape[:1] + input_shape[2:]
    return target_shape == pytorch and target_shape != input_shape[:-1]


def _classes_last(x: Tensor) -> Tensor:
    """(N, C, d1, ...) -> (N, d1, ..., C)."""
    return F.permute(x, (0, *range(2, x.ndim), 1))
