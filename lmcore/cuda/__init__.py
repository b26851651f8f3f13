"""CUDA kernels written for lmcore, and the switch that puts them behind its ops.

``lmcore/cuda/`` holds one ``.cu`` file per family of kernels (GELU, softmax,
LayerNorm, cross-entropy, AdamW, attention, products with int8 and 4-bit weights, and a
teaching matrix product), each with
numbered versions from naive to fast, a NumPy reference in :mod:`lmcore.cuda.reference`
and launchers in :mod:`lmcore.cuda.ops`. On CuPy arrays, :mod:`lmcore.functional` and
the AdamW optimizer use the fastest version automatically; CuPy's generic array
functions remain the fallback, for anything a kernel does not cover (another dtype, a
strided view, an unusual head width).

Switches, for comparisons and debugging:

* ``LMCORE_KERNELS=0`` in the environment, or :func:`use_kernels` (also a context
  manager), turns the kernels off or on.
* :func:`allow_tf32` lets cuBLAS run float32 matrix products on the tensor cores in
  TF32 (10-bit mantissa inputs, float32 accumulation), as
  ``torch.backends.cuda.matmul.allow_tf32`` does. Off by default.

Example:
    >>> from lmcore import cuda
    >>> with cuda.use_kernels(False):
    ...     cuda.kernels_enabled()
    False
"""

from __future__ import annotations

import os

import numpy as np

from lmcore import backend

__all__ = ["FLASH_ATTENTION_MIN_KEYS", "allow_tf32", "kernels_enabled", "use_kernels", "wanted"]

# Attention over at least this many keys runs the fused (flash) kernels, which never
# store the (Tq, Tk) weights: memory linear in T. Shorter contexts keep the weights,
# around cuBLAS products and the fused softmax kernel, which ran faster at every length
# measured on an H200 (``lmcore bench gpu``: 0.81 against 1.08 ms at T = 256, 16.6
# against 21.9 ms at T = 2048), at the cost of B H T^2 floats a layer.
FLASH_ATTENTION_MIN_KEYS = 2048

_enabled: bool | None = None  # None: follow LMCORE_KERNELS


def kernels_enabled() -> bool:
    """Whether lmcore's CUDA kernels replace CuPy's generic functions on the GPU."""
    if _enabled is not None:
        return _enabled
    return os.environ.get("LMCORE_KERNELS", "1").strip().lower() not in ("0", "off", "false", "no")


class use_kernels:
    """Turn the kernels on or off; as a context manager, only inside the ``with`` block.

    Example:
        >>> _ = use_kernels(True)          # from now on
        >>> with use_kernels(False):       # only here
        ...     pass
    """

    def __init__(self, enabled: bool = True):
        global _enabled
        self.previous, _enabled = _enabled, bool(enabled)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _enabled
        _enabled = self.previous
        return False


def wanted(*arrays, contiguous: bool = True) -> bool:
    """True when the kernels are on and every array is a float32 CuPy array (and
    C-contiguous, unless ``contiguous=False``: the caller copies or needs no layout)."""
    if not kernels_enabled():
        return False
    for a in arrays:
        if backend.device_of(a) != "cuda" or a.dtype != "float32":
            return False
        if contiguous and not a.flags.c_contiguous:
            return False
    return True


def allow_tf32(enabled: bool = True) -> None:
    """Let cuBLAS use TF32 tensor cores for float32 matrix products made by CuPy."""
    from cupy._core import _routines_linalg as linalg

    mode = linalg.COMPUTE_TYPE_TF32 if enabled else linalg.COMPUTE_TYPE_DEFAULT
    linalg.set_compute_type(np.dtype("float32"), mode)
