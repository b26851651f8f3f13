"""Timing and table helpers shared by the benchmarks.

Example:
    >>> seconds = best_of(lambda: sum(range(1000)), repeat=3)
    >>> print_table([{"what": "sum", "s": seconds}])  # doctest: +SKIP
"""

from __future__ import annotations

import platform
import time

import numpy as np


def best_of(fn, repeat: int = 3) -> float:
    """The fastest of ``repeat`` wall-clock timings of ``fn()``, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def machine() -> str:
    """One line describing where a benchmark ran."""
    return f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, NumPy {np.__version__}"


def print_table(rows: list[dict], title: str = "") -> None:
    """Print rows of dicts as an aligned text table; floats get 3 significant digits."""
    if not rows:
        return
    heads = list(rows[0])

    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    cells = [[fmt(r.get(h, "")) for h in heads] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    if title:
        print(title)
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths)))
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)))
    print()
