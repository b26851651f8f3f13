"""Mixed precision: float16 compute, float32 master weights, dynamic loss scaling.

The weights stay in float32 (the *master* copy the optimizer updates). For the forward
and backward passes, :meth:`MixedPrecision.autocast` puts float16 copies in their place,
so every matrix product and activation runs in float16, at half the memory traffic and,
on a GPU, on its half-precision tensor cores. The gradients come out in float16 and are
summed into float32 before the optimizer sees them. The operations that add up many
numbers (softmax, layer norm, cross-entropy, the attention weights) accumulate in float32
when given float16 inputs, and the loss comes out in float32.

float16 keeps 10 bits of mantissa and no number below about 6e-8 (5.96e-8 is its
smallest subnormal): small gradients would round to zero. :class:`GradScaler`, with
PyTorch's semantics, multiplies the loss by a large factor before the backward pass and
divides the gradients by it afterwards; when a gradient overflows to inf or NaN it skips
that optimizer step and halves the factor, and after ``growth_interval`` good steps in a
row it doubles it again.

float16 is the one half-precision type here: NumPy and CuPy have no bfloat16 dtype
(which keeps float32's exponent range and would need no loss scaling).

Example:
    >>> import numpy as np
    >>> from lmcore import optim
    >>> from lmcore.models import GPT, GPTConfig
    >>> model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16))
    >>> opt = optim.AdamW(model.parameters(), lr=1e-3)
    >>> precision, scaler = MixedPrecision(model), GradScaler()
    >>> idx = np.arange(16).reshape(2, 8) % 11
    >>> with precision.autocast():                       # float16 copies of the weights
    ...     logits, loss = model(idx, idx)
    ...     scaler.scale(loss).backward()
    >>> logits.dtype, loss.dtype, model.wte.weight.dtype, model.wte.weight.grad.dtype
    (dtype('float16'), dtype('float32'), dtype('float32'), dtype('float32'))
    >>> scaler.step(opt)                                  # unscales, skips on inf or NaN
    >>> scaler.update()
    >>> scaler.get_scale()
    65536.0
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np

from lmcore import backend
from lmcore.autograd import Tensor

__all__ = ["GradScaler", "MixedPrecision"]

_READY, _UNSCALED, _STEPPED = "ready", "unscaled", "stepped"


class MixedPrecision:
    """float16 copies of a float32 model's weights for the forward and backward passes.

    ``model`` keeps its float32 parameters and buffers (the master weights). Inside
    :meth:`autocast`, each is replaced by a float16 copy; gradients computed there are
    collected by :meth:`accumulate_grads` (call it after each backward pass of a step
    with several micro-batches) and summed in float32; on leaving, the float32 weights
    are back, each with its summed float32 gradient in ``.grad``. NumPy's warnings of
    overflow are silenced inside: :class:`GradScaler` finds the infs and NaNs itself.

    Only ``dtype="float16"`` exists: NumPy and CuPy have no bfloat16.
    """

    def __init__(self, model, dtype="float16"):
        if np.dtype(dtype) != np.float16:
            raise ValueError(
                f"mixed precision computes in float16, got dtype={dtype!r}; NumPy and CuPy "
                "have no bfloat16, and float32 needs no MixedPrecision."
            )
        self.dtype = np.dtype(dtype)
        self.parameters = _unique(model.parameters())
        buffers = [b for b in _unique(model.buffers()) if b.data.dtype.kind == "f"]
        self.tensors = self.parameters + buffers
        half = [t for t in self.tensors if t.data.dtype == np.float16]
        if half:
            raise ValueError(
                f"the model has {len(half)} float16 weights; keep the model in float32 (the "
                "master weights, model.to('float32')) and let MixedPrecision make the "
                "float16 copies."
            )
        self.grads: list | None = None  # the float32 sums while autocast is active

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Run the block with float16 copies of the weights (see the class docstring)."""
        if self.grads is not None:
            raise RuntimeError("MixedPrecision.autocast() is already active; do not nest it")
        masters = [t.data for t in self.tensors]
        self.grads = [p._grad for p in self.parameters]  # gradients from before, if any
        for p in self.parameters:
            p._grad = None
        for t in self.tensors:
            t.data = t.data.astype(self.dtype)
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # the scaler sees overflows
                yield
            self.accumulate_grads()
        finally:
            for t, master in zip(self.tensors, masters):
                t.data = master
            for p, grad in zip(self.parameters, self.grads):
                p._grad = grad
            self.grads = None

    def accumulate_grads(self) -> None:
        """Move the float16 gradients of the last backward pass into the float32 sums."""
        if self.grads is None:
            raise RuntimeError("accumulate_grads() belongs inside MixedPrecision.autocast()")
        for i, p in enumerate(self.parameters):
            if p._grad is None:
                continue
            wide = p._grad.astype(np.float32)
            p._grad = None
            if self.grads[i] is None:
                self.grads[i] = wide
            else:
                self.grads[i] += wide


class GradScaler:
    """Dynamic loss scaling, as ``torch.amp.GradScaler``.

    Each step: ``scaler.scale(loss).backward()``; then optionally
    ``scaler.unscale_(optimizer)`` (to clip the true gradients); ``scaler.step(optimizer)``
    (unscales if not done yet, and skips the step when a gradient is inf or NaN);
    ``scaler.update()`` (multiplies the scale by ``backoff_factor`` after a skipped step,
    by ``growth_factor`` after ``growth_interval`` good steps in a row). The scale is
    kept in float32, as PyTorch keeps it. With ``enabled=False`` every method is a
    pass-through, so one training loop serves both precisions.

    ``step`` reads one flag back from the device (whether to skip), as PyTorch's does.

    Example:
        >>> from lmcore.nn import Parameter
        >>> from lmcore.optim import SGD
        >>> w = Parameter(np.ones(2, np.float32))
        >>> opt, scaler = SGD([w], lr=0.1), GradScaler(init_scale=8.0, growth_interval=2)
        >>> for grad in ([8.0, 8.0], [np.inf, 8.0], [8.0, 8.0], [8.0, 8.0]):
        ...     w.grad = np.array(grad, np.float32) * scaler.get_scale() / 8
        ...     scaler.step(opt)
        ...     scaler.update()
        ...     print(w.data.tolist(), scaler.get_scale())
        [0.8999999761581421, 0.8999999761581421] 8.0
        [0.8999999761581421, 0.8999999761581421] 4.0
        [0.7999999523162842, 0.7999999523162842] 4.0
        [0.6999999284744263, 0.6999999284744263] 8.0
    """

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
        enabled: bool = True,
    ):
        if growth_factor <= 1.0:
            raise ValueError(f"growth_factor must be above 1, got {growth_factor}")
        if not 0.0 < backoff_factor < 1.0:
            raise ValueError(f"backoff_factor must lie between 0 and 1, got {backoff_factor}")
        if not isinstance(growth_interval, int) or growth_interval < 1:
            raise ValueError(f"growth_interval must be a positive integer, got {growth_interval}")
        self._enabled = enabled
        self._scale = _float32(init_scale)
        self._growth_factor, self._backoff_factor = growth_factor, backoff_factor
        self._growth_interval, self._growth_tracker = growth_interval, 0
        self._per_optimizer: dict[int, dict] = {}

    def is_enabled(self) -> bool:
        return self._enabled

    def get_scale(self) -> float:
        """The current scale (1.0 when disabled)."""
        return self._scale if self._enabled else 1.0

    def scale(self, outputs):
        """``outputs`` (a tensor, or a list or tuple of them) times the scale."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        if not isinstance(outputs, Tensor):
            raise TypeError(f"GradScaler.scale takes tensors, got {type(outputs).__name__}")
        return outputs * self._scale

    def _state(self, optimizer) -> dict:
        return self._per_optimizer.setdefault(id(optimizer), {"stage": _READY, "found_inf": None})

    def unscale_(self, optimizer) -> None:
        """Divide the optimizer's gradients by the scale, in place, and note (on the
        device, without waiting for it) whether any of them is inf or NaN."""
        if not self._enabled:
            return
        state = self._state(optimizer)
        if state["stage"] == _UNSCALED:
            raise RuntimeError(
                "unscale_() has already been called on this optimizer since the last update()."
            )
        if state["stage"] == _STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        grads = [
            p._grad for g in optimizer.param_groups for p in g["params"] if p._grad is not None
        ]
        if any(g.dtype == np.float16 for g in grads):
            raise ValueError(
                "Attempting to unscale FP16 gradients: keep the weights in float32 and compute "
                "in float16 with MixedPrecision.autocast(), which sums gradients in float32."
            )
        inverse = _float32(1.0 / self._scale)
        found = None
        for grad in grads:
            grad *= grad.dtype.type(inverse)
            bad = ~backend.get_array_module(grad).isfinite(grad).all()
            found = bad if found is None else found | bad
        state["found_inf"] = found if found is not None else np.bool_(False)
        state["stage"] = _UNSCALED

    def step(self, optimizer) -> None:
        """``optimizer.step()`` unless a gradient is inf or NaN (the step is skipped)."""
        if not self._enabled:
            return optimizer.step()
        state = self._state(optimizer)
        if state["stage"] == _STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if state["stage"] == _READY:
            self.unscale_(optimizer)
        state["found_inf"] = bool(state["found_inf"])  # the one read-back of the step
        state["stage"] = _STEPPED
        if not state["found_inf"]:
            optimizer.step()

    def update(self, new_scale: float | None = None) -> None:
        """Set the scale for the next step: ``new_scale`` if given, else back off after
        an inf or NaN, or grow after ``growth_interval`` clean steps."""
        if not self._enabled:
            return
        if new_scale is not None:
            self._scale = _float32(new_scale)
        else:
            found = [s["found_inf"] for s in self._per_optimizer.values() if s["stage"] != _READY]
            if not found:
                raise RuntimeError("No inf checks were recorded prior to update().")
            if any(bool(f) for f in found):
                self._scale = _float32(self._scale * self._backoff_factor)
                self._growth_tracker = 0
            else:
                self._growth_tracker += 1
                if self._growth_tracker == self._growth_interval:
                    grown = _float32(self._scale * self._growth_factor)
                    if math.isfinite(grown):
                        self._scale = grown
                    self._growth_tracker = 0
        self._per_optimizer.clear()

    def state_dict(self) -> dict:
        """The scale and its schedule (empty when disabled), for checkpoints."""
        if not self._enabled:
            return {}
        return {
            "scale": self._scale,
            "growth_factor": self._growth_factor,
            "backoff_factor": self._backoff_factor,
            "growth_interval": self._growth_interval,
            "_growth_tracker": self._growth_tracker,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        if not self._enabled:
            return
        if not state_dict:
            raise RuntimeError(
                "The source state dict is empty, possibly because it was saved from a "
                "disabled instance of GradScaler."
            )
        self._scale = _float32(state_dict["scale"])
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._growth_tracker = int(state_dict["_growth_tracker"])

    def __repr__(self) -> str:
        if not self._enabled:
            return "GradScaler(enabled=False)"
        return (
            f"GradScaler(scale={self._scale}, growth_factor={self._growth_factor}, "
            f"backoff_factor={self._backoff_factor}, growth_interval={self._growth_interval})"
        )


def _float32(value) -> float:
    """``value`` rounded to float32, as PyTorch keeps the scale (products with the
    factors are taken in float64 first, as its update does)."""
    with np.errstate(over="ignore"):
        return float(np.float32(value))


def _unique(tensors) -> list:
    seen, unique = set(), []
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            unique.append(t)
    return unique
