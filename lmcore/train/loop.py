"""The training loop: batches in, a :class:`History` out, with evaluation, early
stopping, checkpoints and exact resumption.

Example:
    >>> import numpy as np
    >>> from lmcore import optim
    >>> from lmcore.data.batches import RandomWindows, SequentialWindows
    >>> from lmcore.models.mlp import MLPLanguageModel
    >>> tokens = np.arange(200) % 7                      # a stream with an obvious pattern
    >>> model = MLPLanguageModel(vocab_size=7, context=3, embed_dim=4, hidden=16)
    >>> history = train(
    ...     model, optim.AdamW(model.parameters(), lr=1e-2),
    ...     RandomWindows(tokens, context=3, batch_size=16, seed=0), steps=100,
    ...     val_batches=SequentialWindows(tokens, context=3, batch_size=64),
    ...     eval_every=50, progress=False)
    >>> history.val_loss[-1] < history.val_loss[0]
    True
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from tqdm.auto import tqdm

from lmcore.autograd import no_grad
from lmcore.optim import clip_grad_norm_
from lmcore.train.checkpoint import load_checkpoint, save_checkpoint
from lmcore.train.history import History

__all__ = [
    "EarlyStopping",
    "NonFiniteLossError",
    "default_loss",
    "evaluate",
    "evaluation_mode",
    "train",
]


class NonFiniteLossError(FloatingPointError):
    """The loss (or the gradient norm) became NaN or infinite; ``step`` says when."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


def default_loss(model, x, y):
    """The loss of a model that, like nanoGPT's, returns ``(logits, loss)`` from ``model(x, y)``."""
    _, loss = model(x, y)
    return loss


@contextlib.contextmanager
def evaluation_mode(model):
    """Evaluation mode (dropout off) with no graph recorded; the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            yield
    finally:
        model.train(was_training)


def evaluate(model, batches: Iterable, loss_fn: Callable = default_loss) -> float:
    """Mean loss per target over all of ``batches`` (pairs ``(x, y)``): each batch's mean
    loss is weighted by its number of targets, ``y.size``, so the result is exact for
    batches of unequal size (e.g. :class:`~lmcore.data.batches.SequentialWindows`).

    Example:
        ``val_loss = evaluate(model, SequentialWindows(val_tokens, context=8, batch_size=1024))``
    """
    total, count = 0.0, 0
    with evaluation_mode(model):
        for x, y in batches:
            total += loss_fn(model, x, y).item() * y.size
            count += y.size
    if count == 0:
        raise ValueError("evaluate() got no batches: the validation set is empty")
    return total / count


class EarlyStopping:
    """Stop when the validation loss has not improved (by more than ``min_delta``) for
    ``patience`` evaluations in a row; keeps a copy of the weights of the best one.

    Example:
        >>> from lmcore import nn
        >>> stopper, model = EarlyStopping(patience=2), nn.Linear(2, 1)
        >>> [stopper.update(step, loss, model) for step, loss in [(1, 3.0), (2, 2.0), (3, 2.5), (4, 2.1)]]
        [False, False, False, True]
        >>> stopper.best_step
        2
    """

    def __init__(self, patience: int, min_delta: float = 0.0):
        if patience < 1:
            raise ValueError(f"patience must be at least 1 evaluation, got {patience}")
        self.patience, self.min_delta = patience, min_delta
        self.best_loss, self.best_step, self.evaluations_without_improvement = math.inf, None, 0
        self.best_weights = None  # the model's state_dict at best_step

    def update(self, step: int, val_loss: float, model) -> bool:
        """Record an evaluation; True when training should stop."""
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_step = val_loss, step
            self.evaluations_without_improvement = 0
            self.best_weights = model.state_dict()
        else:
            self.evaluations_without_improvement += 1
        return self.evaluations_without_improvement >= self.patience

    def restore_best(self, model) -> None:
        """Load the weights of the best evaluation into ``model`` (nothing if none yet)."""
        if self.best_weights is not None:
            model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("best_loss", "best_step", "best_weights")} | {
            "evaluations_without_improvement": self.evaluations_without_improvement
        }

    def load_state_dict(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value)


def train(
    model,
    optimizer,
    batches: Iterable,
    steps: int,
    *,
    loss_fn: Callable = default_loss,
    scheduler=None,
    clip: float | None = None,
    val_batches: Iterable | None = None,
    eval_fn: Callable[[], float] | None = None,
    eval_every: int = 100,
    patience: int | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume_from: str | Path | None = None,
    config: dict | None = None,
    progress: bool = True,
) -> History:
    """Train ``model`` until ``steps`` optimizer steps have been taken in all.

    Each step draws ``(x, y)`` from ``batches``, computes ``loss_fn(model, x, y)``,
    backpropagates, clips the gradient norm to ``clip`` (if given), and steps the
    optimizer and the ``scheduler``. ``batches`` may be endless (``RandomBlocks``) or
    re-iterable (a list, ``ContiguousBatches``: read again, epoch after epoch).

    Every ``eval_every`` steps and at the end, the validation loss is measured, in
    evaluation mode with no graph: the mean loss over ``val_batches``, or ``eval_fn()``.
    With ``patience``, training stops after that many evaluations without a lower
    validation loss, and the model ends with the weights of its best evaluation (also
    when it runs all its steps).

    With ``checkpoint`` (a path), the model, optimizer, scheduler, batch source, history,
    early-stopping state, RNG state and ``config`` are saved there every
    ``checkpoint_every`` steps (default: at each evaluation) and at the end.
    ``resume_from`` loads such a file into freshly built objects and continues at its
    step, so 20 steps, a checkpoint and 20 more give the same losses as 40 steps (a
    batch source with no ``state_dict`` is advanced by drawing the batches already used).

    A NaN or infinite loss or gradient norm raises :class:`NonFiniteLossError` before
    the bad step changes the weights or any checkpoint. Returns the :class:`History`.
    """
    if eval_fn is not None and val_batches is not None:
        raise ValueError("give val_batches or eval_fn, not both")
    for name, value in (("steps", steps), ("eval_every", eval_every)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    history = History()
    stopper = EarlyStopping(patience) if patience is not None else None
    saved = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "history": history}
    saved |= {"early_stopping": stopper, "batches": _stateful(batches)}
    start = load_checkpoint(resume_from, **saved).step if resume_from is not None else 0
    stream = _endless(batches, skip=0 if _stateful(batches) else start)
    measure = eval_fn
    if val_batches is not None:
        measure = lambda: evaluate(model, val_batches, loss_fn)
    checkpoint_every = checkpoint_every or eval_every
    parameters = [p for p in model.parameters() if p.requires_grad]
    last_saved = Path(resume_from) if resume_from is not None else None  # last good file
    clock = time.perf_counter() - (history.elapsed[-1] if len(history) else 0.0)
    model.train()
    with tqdm(total=steps, initial=start, disable=not progress, unit="step") as bar:
        for step in range(start + 1, steps + 1):
            x, y = next(stream)
            loss = loss_fn(model, x, y)
            _check_finite("loss", loss.item(), step, last_saved)
            optimizer.zero_grad()
            loss.backward()
            grad_norm = clip_grad_norm_(parameters, clip or math.inf).item()
            _check_finite("gradient norm", grad_norm, step, last_saved)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            history.log_step(step, loss.item(), lr, grad_norm, time.perf_counter() - clock)
            stop = False
            if measure is not None and (step % eval_every == 0 or step == steps):
                with evaluation_mode(model):
                    history.log_eval(step, float(measure()))
                stop = stopper is not None and stopper.update(step, history.val_loss[-1], model)
            if checkpoint is not None and (step % checkpoint_every == 0 or step == steps or stop):
                last_saved = save_checkpoint(checkpoint, step=step, config=config, **saved)
            bar.set_postfix(_progress_numbers(history), refresh=False)
            bar.update()
            if stop:
                break
    if stopper is not None:
        stopper.restore_best(model)
    return history


def _stateful(batches):
    """``batches`` when a checkpoint can save its state (a seeded random source), else None."""
    return batches if hasattr(batches, "state_dict") else None


def _endless(batches: Iterable, skip: int) -> Iterator:
    """The batches of ``batches``, read again from the start whenever it can be (epochs),
    after drawing and dropping the first ``skip``."""
    iterator = iter(batches)
    while True:
        produced = False
        for batch in iterator:
            produced = True
            if skip:
                skip -= 1
                continue
            yield batch
        if iterator is batches or not produced:
            raise ValueError(
                "the batches ran out before the last step; pass an endless source "
                "(RandomBlocks, RandomWindows) or one that can be read again (a list, "
                "ContiguousBatches), or train for fewer steps."
            )
        iterator = iter(batches)


def _check_finite(what: str, value: float, step: int, last_saved: Path | None) -> None:
    if math.isfinite(value):
        return
    kept = (
        f"the last good checkpoint, {last_saved}, is unchanged"
        if last_saved is not None
        else "no checkpoint was written in this run"
    )
    raise NonFiniteLossError(
        f"the {what} is {value} at step {step}; training stopped before this step changed "
        f"the weights and {kept}. Lower the learning rate, clip gradients (clip=1.0) or "
        "check the data, then resume with resume_from=<checkpoint>.",
        step,
    )


def _progress_numbers(history: History) -> dict:
    numbers = {"loss": f"{history.train_loss[-1]:.4f}", "lr": f"{history.lr[-1]:.2e}"}
    if history.val_loss:
        numbers["val"] = f"{history.val_loss[-1]:.4f}"
    return numbers
