"""Keep freed memory in the process, so that NumPy's large temporaries come back warm.

Every operation on arrays returns a new array, and a training step makes dozens of
them: a (768, 512) float32 activation is 1.5 MB. glibc's ``malloc`` serves blocks
above 128 KiB with a fresh ``mmap`` and gives them back with ``munmap`` when they are
freed (or trims them off the top of the heap), so the next array of that size starts
as untouched pages that the kernel must fault in and zero one by one: on a small model
that costs more than the arithmetic. Raising glibc's mmap threshold to its maximum
(32 MiB) and its trim threshold to 1 GiB lets freed blocks be reused as they are.

:func:`keep_freed_memory` is called once, by the first backward pass on NumPy arrays
(importing lmcore changes nothing). It does nothing off glibc, when ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_``
are set in the environment (the user's choice wins), or when
``LMCORE_KEEP_FREED_MEMORY=0``.

Example:
    >>> keep_freed_memory() in (True, False)
    True
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's malloc.h
_M_MMAP_THRESHOLD = -3


configured = False  # keep_freed_memory has run


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Raise glibc's mmap and trim thresholds; True when both were set."""
    global configured
    configured = True
    if (
        not sys.platform.startswith("linux")
        or os.environ.get("LMCORE_KEEP_FREED_MEMORY", "1") == "0"
        or "MALLOC_MMAP_THRESHOLD_" in os.environ
        or "MALLOC_TRIM_THRESHOLD_" in os.environ
    ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )
