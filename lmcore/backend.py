"""NumPy or CuPy: which array library runs lmcore, and on which device.

The choice is made once, from ``LMCORE_DEVICE`` (``cpu`` or ``cuda``); unset, lmcore
uses CUDA when CuPy is installed and sees a GPU, and NumPy otherwise. CuPy installed
on a machine without a GPU imports fine and fails at the first allocation, so the
check is ``cupy.cuda.is_available()``, not the import.

Example:
    >>> from lmcore import backend
    >>> xp = backend.xp()            # numpy or cupy
    >>> print(backend.describe())    # one line: device, library, version  # doctest: +ELLIPSIS
    device: ...
"""

from __future__ import annotations

import functools
import os
import types

import numpy as np

DEVICES = ("cpu", "cuda")


@functools.cache
def _cupy() -> types.ModuleType | None:
    """CuPy when it is installed and a GPU is usable, else None."""
    try:
        import cupy
    except ImportError:
        return None
    try:
        return cupy if cupy.cuda.is_available() else None
    except Exception:  # a broken driver or toolkit: treat as no GPU
        return None


def gpu_available() -> bool:
    """True when CuPy is installed and sees at least one GPU."""
    return _cupy() is not None


def device() -> str:
    """The active device, ``"cpu"`` or ``"cuda"``, from ``LMCORE_DEVICE`` or what is present.

    Example:
        >>> device() in DEVICES
        True
    """
    asked = os.environ.get("LMCORE_DEVICE", "").strip().lower()
    if not asked:
        return "cuda" if gpu_available() else "cpu"
    if asked not in DEVICES:
        raise ValueError(
            f"LMCORE_DEVICE={asked!r} is not a device; set it to 'cpu' or 'cuda', "
            "or unset it to use a GPU when one is present."
        )
    if asked == "cuda" and not gpu_available():
        raise RuntimeError(
            "LMCORE_DEVICE=cuda but no usable GPU was found: install CuPy "
            '(pip install "lmcore[gpu]") on a machine with an NVIDIA GPU, '
            "or set LMCORE_DEVICE=cpu."
        )
    return asked


def xp(dev: str | None = None) -> types.ModuleType:
    """The array module for a device (default: the active one): ``numpy`` or ``cupy``."""
    dev = dev or device()
    if dev == "cpu":
        return np
    if not gpu_available():
        raise RuntimeError("a CUDA array module was asked for, but no usable GPU was found.")
    return _cupy()


def get_array_module(*arrays) -> types.ModuleType:
    """The module (``numpy`` or ``cupy``) that owns the given arrays.

    Example:
        >>> get_array_module(np.zeros(3)) is np
        True
    """
    cp = _cupy()
    if cp is not None:
        return cp.get_array_module(*arrays)
    return np


def describe() -> str:
    """One line naming the device and the array library in use."""
    dev = device()
    if dev == "cpu":
        return f"device: cpu (NumPy {np.__version__})"
    cp = _cupy()
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return f"device: cuda ({name}, CuPy {cp.__version__})"


def device_of(array) -> str:
    """``"cpu"`` for a NumPy array or scalar, ``"cuda"`` for a CuPy array."""
    return "cpu" if isinstance(array, (np.ndarray, np.generic)) else "cuda"


def to_device(array, device: str):
    """``array`` on ``device`` (``"cpu"`` or ``"cuda"``); the same object when it is there already.

    Example:
        >>> a = np.ones(3)
        >>> to_device(a, "cpu") is a
        True
    """
    if device_of(array) == device:
        return array
    return array.get() if device == "cpu" else xp("cuda").asarray(array)
