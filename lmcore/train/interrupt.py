"""Ctrl-C during training: finish the step, save a checkpoint, then stop.

A KeyboardInterrupt raised in the middle of a step could leave the weights half
updated and the batch source already past the step's batches; a checkpoint saved then
would not resume exactly. So while training runs, the first Ctrl-C (SIGINT) only sets
a flag: the loop completes the step it is in, saves a checkpoint and raises
:class:`TrainingInterrupted`, a KeyboardInterrupt, so a script or a notebook cell
stops as usual. A second Ctrl-C stops at once, saving nothing.

Signals reach Python's main thread only; in another thread the flag is never set and
Ctrl-C behaves as usual.

Example:
    >>> import signal
    >>> with deferred_interrupt() as interrupt:
    ...     signal.raise_signal(signal.SIGINT)         # what Ctrl-C sends
    ...     interrupt.requested                          # noted, nothing raised
    True
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["InterruptRequest", "TrainingInterrupted", "deferred_interrupt"]


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C after ``step`` steps; ``checkpoint`` is the file that
    resumes it exactly (None when the run saves no checkpoints)."""

    def __init__(self, step: int, checkpoint: Path | None):
        where = (
            f"the checkpoint {checkpoint} resumes it exactly"
            if checkpoint is not None
            else "no checkpoint was saved (pass checkpoint= to save one)"
        )
        super().__init__(f"training interrupted after step {step}; {where}")
        self.step, self.checkpoint = step, checkpoint


@dataclass
class InterruptRequest:
    """Set by the first Ctrl-C inside :func:`deferred_interrupt`."""

    requested: bool = False


@contextlib.contextmanager
def deferred_interrupt(notice: str | None = None) -> Iterator[InterruptRequest]:
    """Within the block, the first SIGINT sets ``requested`` (and prints ``notice`` to
    stderr, if given) instead of raising; a second raises KeyboardInterrupt at once.
    The previous handler is restored on leaving."""
    request = InterruptRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum, frame):
        if request.requested:
            signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt
        request.requested = True
        if notice:
            print(notice, file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)
