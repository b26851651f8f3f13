"""A training step's forward and backward passes replayed as one CUDA graph.

A GPT step launches several hundred small kernels, and each launch costs Python and
driver time on the host: at nanoGPT's shape on an H200 the host, not the GPU, sets the
pace (``lmcore bench gpu``). A CUDA graph records the launches of one step once
(stream capture) and replays them all with a single call, so the host's cost per step
no longer grows with the number of kernels.

What capture asks of the step, and how :class:`CapturedStep` meets it:

* The same kernels on the same memory every time: inputs are copied into static
  buffers before each replay, and the loss and gradients come back in the buffers the
  capture wrote (the parameters' gradient arrays are put back if ``zero_grad``
  dropped them).
* No waiting for the device inside the step: checks that read values on the host
  (token ids in range, class indices valid) are skipped while :func:`capturing`; the
  step checks the batch's ids once on the host instead, when it has them there.
* Memory that nothing else touches between replays: allocations made during capture
  come from a private memory pool.
* Nothing that changes from step to step inside the graph: the optimizer (whose bias
  corrections and learning rate change every step) runs after the replay, outside it.
  Dropout must be off (its random numbers would be frozen at capture).

Example (on a GPU):
    >>> step = CapturedStep(model, loss_fn, x, y)   # captures once   # doctest: +SKIP
    >>> loss = step(x, y)                           # replays         # doctest: +SKIP
    >>> optimizer.step()                                              # doctest: +SKIP
"""

from __future__ import annotations

import contextlib

__all__ = ["CapturedStep", "capturing"]

_capturing = False


def capturing() -> bool:
    """True while a step is being captured: code that would wait for the device to read
    a value (a range check, ``.item()``) must not run then."""
    return _capturing


@contextlib.contextmanager
def _capture_mode():
    global _capturing
    previous, _capturing = _capturing, True
    try:
        yield
    finally:
        _capturing = previous


class CapturedStep:
    """``loss_fn(model, x, y)`` and its backward pass, captured as a CUDA graph on the
    first call's shapes and replayed for every batch of those shapes.

    ``x`` and ``y`` are example batches (CuPy or NumPy arrays) that fix the shapes and
    dtypes; ``warmup`` uncaptured steps run first (kernel compilation, cuBLAS workspaces,
    optimizer-independent caches). Calling the object with a batch copies it into the
    static inputs, replays the graph on the current stream and returns the loss, a 0-d
    CuPy array (read it with ``float(loss)`` only when you log: that waits for the GPU).
    After the call every parameter's ``.grad`` holds this batch's gradient, ready for
    ``optimizer.step()``.
    """

    def __init__(self, model, loss_fn, x, y, warmup: int = 3, vocab_size: int | None = None):
        import cupy as cp

        if any(_drops_out(m) for m in model.modules()):
            raise ValueError(
                "CapturedStep cannot replay dropout (its random masks would be frozen at "
                "capture); build the model with dropout=0 or call model.eval()."
            )
        self.model, self.vocab_size = model, vocab_size
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.x, self.y = cp.array(x), cp.array(y)  # the static inputs
        self.pool = cp.cuda.MemoryPool()
        stream = cp.cuda.Stream(non_blocking=True)
        stream.wait_event(cp.cuda.get_current_stream().record())
        with stream:
            for _ in range(warmup):
                self._clear_grads()
                loss_fn(model, self.x, self.y).backward()
            self._clear_grads()
            stream.synchronize()
            with cp.cuda.using_allocator(self.pool.malloc), _capture_mode():
                stream.begin_capture(mode=cp.cuda.runtime.streamCaptureModeRelaxed)
                try:
                    loss = loss_fn(model, self.x, self.y)
                    loss.backward()
                finally:
                    self.graph = stream.end_capture()
        stream.synchronize()
        self.loss = loss.data  # written by every replay
        self.grads = [p._grad for p in self.params]
        missing = [i for i, g in enumerate(self.grads) if g is None]
        if missing:
            raise ValueError(
                f"CapturedStep: {len(missing)} parameters got no gradient in the captured "
                "step; freeze them (requires_grad_(False)) before capturing."
            )

    def _clear_grads(self) -> None:  # so that the captured backward writes, not adds
        for p in self.params:
            p._grad = None

    def __call__(self, x, y):
        import cupy as cp

        if x.shape != self.x.shape or y.shape != self.y.shape:
            raise ValueError(
                f"CapturedStep was captured for inputs {self.x.shape} and {self.y.shape}, got "
                f"{x.shape} and {y.shape}; capture another step for these shapes."
            )
        on_host = hasattr(x, "__array_interface__") and x.size  # NumPy: checked at no GPU cost
        if (
            self.vocab_size is not None
            and on_host
            and not 0 <= x.min() <= x.max() < self.vocab_size
        ):
            raise IndexError(
                f"token ids must lie in [0, {self.vocab_size}), got {x.min()} to {x.max()}"
            )
        stream = cp.cuda.get_current_stream()
        _copy_into(self.x, x, stream)
        _copy_into(self.y, y, stream)
        for p, g in zip(self.params, self.grads):
            p._grad = g
        self.graph.launch(stream)
        return self.loss


def _drops_out(module) -> bool:
    """Whether a module draws dropout masks in its current mode."""
    rate = module.p if type(module).__name__ == "Dropout" else getattr(module, "dropout", 0)
    return bool(module.training and isinstance(rate, float) and rate > 0)


def _copy_into(static, value, stream) -> None:
    """Copy a NumPy or CuPy array into a static CuPy buffer, in stream order."""
    if hasattr(value, "__array_interface__"):  # NumPy: host to device
        static.set(value.astype(static.dtype, copy=False), stream)
    else:
        static[...] = value
