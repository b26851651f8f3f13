"""Losses: softmax cross-entropy from logits (fused) and mean squared error."""

from __future__ import annotations

import warnings

from lmcore import backend, cuda
from lmcore.autograd import Function, Tensor, _data_of
from lmcore.cuda.graphs import capturing
from lmcore.functional.arithmetic import mul, sub
from lmcore.functional.common import (
    _as_tensor,
)
from lmcore.functional.conversion import cast
from lmcore.functional.reductions import mean, sum


class CrossEntropy(Function):
    def __init__(self, targets, ignore_index, label_smoothing, reduction, weight=None):
        self.targets, self.weight = targets, weight  # weight: (C,) class weights or None
        self.ignore_index, self.smoothing, self.reduction = ignore_index, label_smoothing, reduction

    def forward(self, logits):
        xp = backend.get_array_module(logits)
        num_classes = logits.shape[-1]
        x = logits.reshape(-1, num_classes)  # (N, C)
        targets = self.targets.reshape(-1)  # (N,)
        valid = targets != self.ignore_index
        bad = valid & ((targets < 0) | (targets >= num_classes))
        if not capturing() and bad.any():  # reading `bad` waits for the device
            raise IndexError(
                f"cross_entropy targets must lie in [0, {num_classes}) or equal ignore_index="
                f"{self.ignore_index}; found {targets[bad][:5].tolist()}"
            )
        self.logits_shape = logits.shape
        self.count = xp.maximum(valid.sum(), 1).astype(logits.dtype)
        self.kernel = cuda.wanted(x) and self.weight is None
        if self.kernel:  # the fused CUDA kernel: no (N, C) array is written here
            from lmcore.cuda import ops

            loss, self.lse = ops.cross_entropy_forward(
                x, targets, self.ignore_index, self.smoothing
            )
            self.x, self.flat_targets, self.valid = x, targets, valid
            return self._reduce(xp, loss, valid, logits.dtype)
        rows = xp.arange(x.shape[0])
        safe_targets = xp.where(valid, targets, 0)  # any valid index for ignored rows
        # log p_c = x_c - logsumexp(x); the loss needs it only at the target and, for
        # label smoothing, summed over classes, so the (N, C) log-probs are never kept.
        peak = x.max(axis=1, keepdims=True)  # (N, 1)
        probs = xp.exp(x - peak)  # (N, C), normalized below
        total = probs.sum(axis=1, keepdims=True)
        logsumexp = (peak + xp.log(total))[:, 0]  # (N,)
        loss = logsumexp - x[rows, safe_targets]
        if self.weight is not None:
            # Each target's loss times its class's weight; the mean divides by their sum.
            self.row_weight = xp.where(valid, self.weight[safe_targets], 0)  # (N,)
            self.count = self.row_weight.sum().astype(logits.dtype)
            loss = loss * self.row_weight
            if self.smoothing:  # the uniform part weighs every class by its own weight
                smooth = (logsumexp[:, None] - x) @ self.weight / num_classes  # (N,)
                loss = (1 - self.smoothing) * loss + self.smoothing * smooth
        elif self.smoothing:
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
        if self.weight is not None:
            return self._weighted_backward(weight).reshape(self.logits_shape)
        # d loss / d x = softmax - (1 - s) onehot(target) - s / C, each row times its weight.
        grad_x = self.probs * weight
        grad_x[self.rows, self.safe_targets] -= (1 - self.smoothing) * weight[:, 0]
        if self.smoothing:
            grad_x -= (self.smoothing / self.probs.shape[1]) * weight
        return grad_x.reshape(self.logits_shape)

    def _weighted_backward(self, weight):
        """With class weights w and a_i = w[target_i]: d loss_i / d x_i is
        (1 - s) a_i (softmax - onehot) + (s / C) (sum(w) softmax - w)."""
        s, num_classes = self.smoothing, self.probs.shape[1]
        a = self.row_weight[:, None]  # (N, 1)
        grad_x = self.probs * ((1 - s) * a + s * self.weight.sum() / num_classes)
        grad_x[self.rows, self.safe_targets] -= (1 - s) * a[:, 0]
        if s:
            grad_x -= (s / num_classes) * self.weight
        return grad_x * weight


def cross_entropy(
    logits: Tensor,
    targets,
    *,
    weight=None,
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
    ``weight`` (C,) multiplies each target's loss by its class's weight, and the mean
    then divides by the sum of the counted targets' weights, as in PyTorch.

    Example:
        >>> import numpy as np
        >>> logits = Tensor(np.zeros((2, 4)), requires_grad=True)
        >>> round(cross_entropy(logits, np.array([1, 3])).item(), 4)  # log 4
        1.3863
        >>> w = np.array([1, 1, 1, 3], np.float32)        # class 3 counts three times
        >>> round(cross_entropy(logits, np.array([1, 3]), weight=w, reduction="sum").item(), 4)
        5.5452
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not 0 <= label_smoothing <= 1:
        raise ValueError(f"label_smoothing must be between 0 and 1, got {label_smoothing}")
    logits = _as_tensor(logits)
    xp = backend.get_array_module(logits.data)
    targets = xp.asarray(_data_of(targets))
    if targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"cross_entropy: logits of shape {logits.shape} need targets of shape "
            f"{logits.shape[:-1]} (classes on the last axis), got {targets.shape}"
        )
    if targets.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy targets must be integers, got dtype {targets.dtype}")
    if logits.dtype == "float16":  # sums in float32, and a float32 loss (as PyTorch's autocast)
        logits = cast(logits, "float32")
    if weight is not None:
        weight = xp.asarray(_data_of(weight), dtype=logits.dtype)
        if weight.shape != logits.shape[-1:]:
            raise ValueError(
                f"cross_entropy: weight must hold one number per class, shape "
                f"{logits.shape[-1:]}, got {weight.shape}"
            )
    return CrossEntropy(targets, ignore_index, label_smoothing, reduction, weight)(logits)


def mse_loss(input, target, *, reduction: str = "mean") -> Tensor:
    """Mean squared error, ``(input - target) ** 2`` averaged ("mean"), summed ("sum")
    or kept per element ("none"); differentiable in both arguments.

    A target of another shape is broadcast against the input, with a warning, as in
    PyTorch: (N, 1) predictions against (N,) targets give an (N, N) difference.

    Example:
        >>> import numpy as np
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
