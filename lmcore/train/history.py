"""What a training run records: per step, the loss, learning rate, gradient norm, time
and tokens; per evaluation, the validation loss. Lists of plain numbers, ready for
tables and plots, saved in checkpoints so a resumed run keeps its whole curve.

Example:
    >>> history = History()
    >>> for step in (1, 2, 3, 4):
    ...     history.log_step(step, train_loss=4.0 - step / 2, lr=1e-3, grad_norm=1.0,
    ...                      elapsed=0.1 * step, tokens=512)
    >>> history.log_eval(4, val_loss=2.5)
    >>> history.rows()[0]["train_loss"]  # the mean over steps 1-4
    2.75
    >>> round(history.tokens_per_second(last=2))  # 2 * 512 tokens in 0.2 s
    5120
"""

from __future__ import annotations

import bisect
import statistics

__all__ = ["History"]


class History:
    """Training records as parallel lists.

    Attributes:
        step, train_loss, lr, grad_norm, elapsed, tokens: one entry per optimizer step
            (``lr`` of the first parameter group, as used for that step; ``elapsed`` in
            seconds since the run began, resumed runs included; ``tokens`` the number of
            targets the step learned from, all its micro-batches together).
        val_step, val_loss: one entry per evaluation.
    """

    _STEP_FIELDS = ("step", "train_loss", "lr", "grad_norm", "elapsed", "tokens")
    _EVAL_FIELDS = ("val_step", "val_loss")

    def __init__(self) -> None:
        for name in self._STEP_FIELDS + self._EVAL_FIELDS:
            setattr(self, name, [])

    def log_step(
        self,
        step: int,
        train_loss: float,
        lr: float,
        grad_norm: float,
        elapsed: float,
        tokens: int = 0,
    ) -> None:
        values = (step, train_loss, lr, grad_norm, elapsed, tokens)
        for name, value in zip(self._STEP_FIELDS, values):
            getattr(self, name).append(value)

    def log_eval(self, step: int, val_loss: float) -> None:
        self.val_step.append(step)
        self.val_loss.append(val_loss)

    def __len__(self) -> int:
        return len(self.step)

    @property
    def best(self) -> tuple[int, float] | None:
        """(step, validation loss) of the lowest validation loss so far, or None."""
        if not self.val_loss:
            return None
        index = min(range(len(self.val_loss)), key=self.val_loss.__getitem__)
        return self.val_step[index], self.val_loss[index]

    def tokens_per_second(self, last: int | None = None) -> float:
        """Throughput over the ``last`` steps (default: all): their tokens divided by the
        time they took. NaN before any step."""
        count = len(self.step) if last is None else min(last, len(self.step))
        if count == 0:
            return float("nan")
        before = self.elapsed[-count - 1] if count < len(self.step) else 0.0
        seconds = self.elapsed[-1] - before
        return sum(self.tokens[-count:]) / seconds if seconds > 0 else float("nan")

    def rows(self) -> list[dict]:
        """One dict per evaluation: step, mean training loss since the previous evaluation,
        validation loss, learning rate, elapsed seconds and tokens per second since the
        previous evaluation. ``pandas.DataFrame(rows)`` makes it a table."""
        rows, first = [], 0
        for step, val_loss in zip(self.val_step, self.val_loss):
            last = bisect.bisect_right(self.step, step)  # steps up to this evaluation
            window = self.train_loss[first:last] or [float("nan")]
            seconds = (self.elapsed[last - 1] if last else 0.0) - (
                self.elapsed[first - 1] if first else 0.0
            )
            tokens = sum(self.tokens[first:last])
            rows.append(
                {
                    "step": step,
                    "train_loss": statistics.fmean(window),
                    "val_loss": val_loss,
                    "lr": self.lr[last - 1] if last else float("nan"),
                    "elapsed": self.elapsed[last - 1] if last else 0.0,
                    "tokens_per_second": tokens / seconds if seconds > 0 else float("nan"),
                }
            )
            first = last
        return rows

    def plot(self, ax=None, title: str | None = None):
        """Training loss at every step and validation loss at each evaluation, against
        the step; draws on ``ax`` if given and returns the matplotlib Figure."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4))
        ax.plot(self.step, self.train_loss, lw=0.8, alpha=0.6, label="train (per step)")
        if self.val_loss:
            ax.plot(self.val_step, self.val_loss, "o-", ms=3, label="validation")
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats per token)")
        ax.set_title(title or "loss curves")
        ax.grid(alpha=0.3)
        ax.legend()
        return ax.figure

    def state_dict(self) -> dict:
        return {name: list(getattr(self, name)) for name in self._STEP_FIELDS + self._EVAL_FIELDS}

    def load_state_dict(self, state: dict) -> None:
        state = {"tokens": [0] * len(state["step"]), **state}  # saved before tokens were
        for name in self._STEP_FIELDS + self._EVAL_FIELDS:
            setattr(self, name, list(state[name]))

    def __repr__(self) -> str:
        if not self.step:
            return "History(no steps)"
        text = f"History({len(self)} steps, last train loss {self.train_loss[-1]:.4f}"
        if self.best is not None:
            text += f", best validation loss {self.best[1]:.4f} at step {self.best[0]}"
        return text + ")"
