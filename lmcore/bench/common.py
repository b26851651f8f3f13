"""Timing and table helpers shared by the benchmarks.

Example:
    >>> seconds = best_of(lambda: sum(range(1000)), repeat=3)
    >>> print_table([{"what": "sum", "s": seconds}])  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import platform
import statistics
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


def seconds_per_step(step, batches, steps: int) -> float:
    """Wall-clock seconds per call of ``step(batch)``, cycling through ``batches``."""

    def run():
        for i in range(steps):
            step(batches[i % len(batches)])

    return best_of(run, repeat=1) / steps


@contextlib.contextmanager
def thread_limit(count: int, torch=None):
    """NumPy's BLAS (through threadpoolctl, when installed) and torch on ``count`` threads."""
    previous = torch.get_num_threads() if torch else None
    if torch:
        torch.set_num_threads(count)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(count, user_api="blas")
    try:
        with limits:
            yield
    finally:
        if torch:
            torch.set_num_threads(previous)


SETTLE_SECONDS = 0.3


def race(runners: dict, rounds: int, steps: int, warmup: int) -> dict[str, float]:
    """Median seconds per step of each library's ``(step, batches)``, timed alternately.

    Each round times every library for ``steps`` steps, in reversed order every other
    round, so that a slow moment of a shared machine falls on both sides alike. Before
    each turn the race waits ``SETTLE_SECONDS``: after its last job, each library's worker
    threads keep spinning on their cores for a while (OpenBLAS's for about 2^28 cycles,
    a tenth of a second; OpenMP's too), and a library that starts at once shares the
    cores with the other one's spinning threads. Without the wait, on 2 cores, PyTorch's
    CPU steps measured up to twice as slow as PyTorch alone.
    """
    for step, batches in runners.values():
        seconds_per_step(step, batches, warmup)
    times = {lib: [] for lib in runners}
    for r in range(rounds):
        for lib in list(runners) if r % 2 == 0 else list(runners)[::-1]:
            time.sleep(SETTLE_SECONDS)
            times[lib].append(seconds_per_step(*runners[lib], steps))
    return {lib: statistics.median(seconds) for lib, seconds in times.items()}


def speed_columns(medians: dict[str, float], tokens: int, first_loss: dict[str, float]) -> dict:
    """Table columns for each library (tokens/s, ms/step, first loss) and lmcore/torch."""
    row = {}
    for lib, seconds in medians.items():
        row[f"{lib} tokens/s"] = f"{tokens / seconds:,.0f}"
        row[f"{lib} ms/step"] = round(1e3 * seconds, 2)
        row[f"{lib} first loss"] = round(first_loss[lib], 4)
    if "torch" in medians:
        row["lmcore/torch"] = round(medians["torch"] / medians["lmcore"], 2)
    return row
