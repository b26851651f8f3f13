"""Learning-rate schedules: a factor of the base learning rate at each step.

A schedule is a small callable object, ``schedule(step) -> factor``, that can be
plotted on its own; :class:`LambdaLR` applies one to an optimizer, as
``torch.optim.lr_scheduler.LambdaLR``: ``lr = base_lr * factor(step)``, starting at
step 0 when it is made and advancing by one at each ``scheduler.step()`` (call it
after ``optimizer.step()``).

Example:
    >>> import numpy as np
    >>> from lmcore.nn import Parameter
    >>> from lmcore.optim import AdamW
    >>> opt = AdamW([Parameter(np.zeros(2))], lr=1.0)
    >>> scheduler = LambdaLR(opt, WarmupCosine(warmup_steps=2, total_steps=6))
    >>> lrs = []
    >>> for _ in range(7):
    ...     lrs.append(round(opt.param_groups[0]["lr"], 3))
    ...     opt.step()
    ...     scheduler.step()
    >>> lrs
    [0.5, 1.0, 1.0, 0.854, 0.5, 0.146, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["ConstantWithWarmup", "LambdaLR", "StepDecay", "WarmupCosine"]


def _warmup(step: int, warmup_steps: int) -> float:
    """Linear warm-up: 1/W, 2/W, ..., 1 over steps 0 .. W-1 (never a step at zero)."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


class WarmupCosine:
    """Linear warm-up over ``warmup_steps``, then cosine decay from 1 to ``min_factor``
    at ``total_steps``, and ``min_factor`` after (nanoGPT's schedule)::

        step < W:      (step + 1) / W
        W <= step < T: min + (1 - min) * (1 + cos(pi * (step - W) / (T - W))) / 2
        step >= T:     min
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_factor: float = 0.0):
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(
                f"need 0 <= warmup_steps <= total_steps, got {warmup_steps} and {total_steps}"
            )
        self.warmup_steps, self.total_steps, self.min_factor = (
            warmup_steps,
            total_steps,
            min_factor,
        )

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return _warmup(step, self.warmup_steps)
        if step >= self.total_steps:
            return self.min_factor
        progress = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    def __repr__(self) -> str:
        return (
            f"WarmupCosine(warmup_steps={self.warmup_steps}, total_steps={self.total_steps}, "
            f"min_factor={self.min_factor})"
        )


class StepDecay:
    """Multiply by ``gamma`` every ``step_size`` steps: ``gamma ** (step // step_size)``.

    Example:
        >>> [StepDecay(2, gamma=0.5)(s) for s in range(5)]
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    def __init__(self, step_size: int, gamma: float = 0.1):
        if step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma = step_size, gamma

    def __call__(self, step: int) -> float:
        return float(self.gamma ** (step // self.step_size))

    def __repr__(self) -> str:
        return f"StepDecay(step_size={self.step_size}, gamma={self.gamma})"


class ConstantWithWarmup:
    """Linear warm-up over ``warmup_steps`` ((step + 1) / W), then 1.

    Example:
        >>> [ConstantWithWarmup(4)(s) for s in range(6)]
        [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    """

    def __init__(self, warmup_steps: int):
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.warmup_steps = warmup_steps

    def __call__(self, step: int) -> float:
        return _warmup(step, self.warmup_steps)

    def __repr__(self) -> str:
        return f"ConstantWithWarmup(warmup_steps={self.warmup_steps})"


class LambdaLR:
    """Set each parameter group's ``lr`` to ``base_lr * lr_lambda(step)``.

    ``base_lr`` is the group's ``initial_lr``, recorded on the group the first time a
    scheduler is made, so a scheduler made after loading an optimizer's state starts
    from the original rates. ``last_step`` counts the ``step()`` calls (PyTorch calls
    it ``last_epoch``); ``state_dict`` saves it so a resumed run continues the schedule.
    """

    def __init__(self, optimizer, lr_lambda: Callable[[int], float]):
        self.optimizer, self.lr_lambda = optimizer, lr_lambda
        self.base_lrs = [
            group.setdefault("initial_lr", group["lr"]) for group in optimizer.param_groups
        ]
        self.last_step = 0
        self._apply()

    def step(self) -> None:
        """Advance one step and set the learning rates for it."""
        self.last_step += 1
        self._apply()

    def _apply(self) -> None:
        factor = self.lr_lambda(self.last_step)
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base_lr * factor

    def get_last_lr(self) -> list[float]:
        """The learning rate of each group, as set for the current step."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"last_step": self.last_step, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.last_step = state_dict["last_step"]
        self.base_lrs = list(state_dict["base_lrs"])
        self._apply()
