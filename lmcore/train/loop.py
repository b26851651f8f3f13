"""The training loop: batches in, a :class:`~lmcore.train.history.History` out, with evaluation, early
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

A recurrent model reads :class:`~lmcore.data.batches.ContiguousBatches` with
``carry_state=True``: each training batch starts from the state the batch before it ended
with, detached (truncated backpropagation through time), and each evaluation carries a
state of its own through the validation stream:

    >>> from lmcore.data.batches import ContiguousBatches
    >>> from lmcore.models.rnn import RNNLanguageModel
    >>> model = RNNLanguageModel(vocab_size=7, embed_dim=4, hidden_size=16, cell="gru")
    >>> history = train(
    ...     model, optim.AdamW(model.parameters(), lr=1e-2),
    ...     ContiguousBatches(tokens, block_size=10, batch_size=4), steps=30,
    ...     carry_state=True, val_batches=ContiguousBatches(tokens, block_size=50, batch_size=2),
    ...     eval_every=15, progress=False)
    >>> history.val_loss[-1] < history.val_loss[0]
    True
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from lmcore import backend
from lmcore.autograd import Tensor, detach_state
from lmcore.nn.module import evaluation_mode
from lmcore.optim import clip_grad_norm_
from lmcore.train.checkpoint import load_checkpoint, save_checkpoint
from lmcore.train.flops import mfu
from lmcore.train.history import History
from lmcore.train.interrupt import TrainingInterrupted, deferred_interrupt
from lmcore.train.mixed_precision import GradScaler, MixedPrecision

__all__ = [
    "EarlyStopping",
    "NonFiniteLossError",
    "StateCarrier",
    "Trainer",
    "default_loss",
    "evaluate",
    "evaluation_mode",
    "recurrent_loss",
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


def recurrent_loss(model, x, y, state=None):
    """The loss and the final state of a recurrent model that, like
    :class:`~lmcore.models.rnn.RNNLanguageModel`, returns ``(logits, loss, state)`` from
    ``model(x, y, state)``: the loss function of a run with ``carry_state=True``."""
    _, loss, state = model(x, y, state)
    return loss, state


class StateCarrier:
    """A loss function ``(model, x, y) -> loss`` that carries a recurrent model's state
    from one call to the next: it calls ``loss_fn(model, x, y, state)``, which returns
    ``(loss, new_state)``, and keeps ``new_state`` detached, so that the next call starts
    where this one ended but backpropagates through its own batch only (truncated
    backpropagation through time). ``reset()`` forgets the state (the next call starts
    from zeros); ``state_dict()`` lets a checkpoint save it.

    Example:
        >>> import numpy as np
        >>> from lmcore.models.rnn import RNNLanguageModel
        >>> carrier = StateCarrier()
        >>> model = RNNLanguageModel(vocab_size=5, embed_dim=3, hidden_size=4, cell="lstm")
        >>> loss = carrier(model, np.zeros((2, 6), np.int64), np.ones((2, 6), np.int64))
        >>> [s.shape for s in carrier.state], carrier.state[0].requires_grad
        ([(1, 2, 4), (1, 2, 4)], False)
    """

    def __init__(self, loss_fn: Callable = recurrent_loss):
        self.loss_fn, self.state = loss_fn, None

    def __call__(self, model, x, y):
        loss, state = self.loss_fn(model, x, y, self.state)
        self.state = detach_state(state)
        return loss

    def reset(self) -> None:
        self.state = None

    def state_dict(self) -> dict:
        return {"state": self.state}  # None, a tensor, or an LSTM's pair (h, c)

    def load_state_dict(self, state: dict) -> None:
        saved, xp = state["state"], backend.xp()
        as_tensor = lambda array: Tensor(xp.asarray(array))
        if isinstance(saved, (list, tuple)):
            self.state = tuple(as_tensor(a) for a in saved)
        else:
            self.state = None if saved is None else as_tensor(saved)


def evaluate(
    model, batches: Iterable, loss_fn: Callable | None = None, carry_state: bool = False
) -> float:
    """Mean loss per target over all of ``batches`` (pairs ``(x, y)``): each batch's mean
    loss is weighted by its number of targets, ``y.size``, so the result is exact for
    batches of unequal size (e.g. :class:`~lmcore.data.batches.SequentialWindows`).

    ``loss_fn(model, x, y)`` gives a batch's loss (default :func:`default_loss`). With
    ``carry_state``, ``loss_fn(model, x, y, state)`` returns ``(loss, state)`` (default
    :func:`recurrent_loss`) and a state of this evaluation's own, starting from zeros, is
    carried from batch to batch, so a recurrent model reads
    :class:`~lmcore.data.batches.ContiguousBatches` as unbroken streams.

    Example:
        ``val_loss = evaluate(model, SequentialWindows(val_tokens, context=8, batch_size=1024))``
    """
    loss_fn = loss_fn or (recurrent_loss if carry_state else default_loss)
    loss_of = StateCarrier(loss_fn) if carry_state else loss_fn
    total, count = 0.0, 0
    with evaluation_mode(model):
        for x, y in batches:
            total += loss_of(model, x, y).item() * y.size
            count += y.size
    if count == 0:
        raise ValueError("evaluate() got no batches: the validation set is empty")
    return total / count


class EarlyStopping:
    """Stop when the validation loss has not improved (by more than ``min_delta``) for
    ``patience`` evaluations in a row; keeps a copy of the weights of the best one.
    With ``mode="max"`` higher is better (an accuracy or F1 from ``eval_fn``).

    Example:
        >>> from lmcore import nn
        >>> stopper, model = EarlyStopping(patience=2), nn.Linear(2, 1)
        >>> [stopper.update(step, loss, model) for step, loss in [(1, 3.0), (2, 2.0), (3, 2.5), (4, 2.1)]]
        [False, False, False, True]
        >>> stopper.best_step
        2
    """

    def __init__(self, patience: int, min_delta: float = 0.0, mode: str = "min"):
        if patience < 1:
            raise ValueError(f"patience must be at least 1 evaluation, got {patience}")
        if mode not in ("min", "max"):
            raise ValueError(
                f"mode is 'min' (a loss: lower is better) or 'max' (an accuracy), got {mode!r}"
            )
        self.patience, self.min_delta, self.mode = patience, min_delta, mode
        self.best_loss = math.inf if mode == "min" else -math.inf  # the best value seen
        self.best_step, self.evaluations_without_improvement = None, 0
        self.best_weights = None  # the model's state_dict at best_step

    def update(self, step: int, val_loss: float, model) -> bool:
        """Record an evaluation; True when training should stop."""
        if self.mode == "min":
            better = val_loss < self.best_loss - self.min_delta
        else:
            better = val_loss > self.best_loss + self.min_delta
        if better:
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


class Trainer:
    """The training loop, in parts that each do one thing: :meth:`step` (one optimizer
    step, nothing read back from the device), :meth:`log` (losses and gradient norms read
    back, checked and logged), :meth:`evaluate` (the validation loss, early stopping) and
    :meth:`save` (a checkpoint); :meth:`run` calls them in order. :func:`train` builds one
    and runs it; its docstring describes every option.

    With ``log_every=k`` the losses and gradient norms stay on the device for k steps and
    are read back together: on a GPU, the host then never waits for the device between
    logging steps. Every step is still logged, and a non-finite value is still reported
    with its step, but up to k - 1 later steps may have run by then (with ``log_every=1``,
    the default, a bad step is caught before it changes the weights).

    With ``accumulation_steps=k`` each optimizer step draws k batches (micro-batches)
    and backpropagates each one's loss divided by k, so the gradients add up to those of
    the mean loss over all k: the gradient of one batch k times as large, in the memory
    of one micro-batch. The step's logged loss is that mean.

    Example:
        >>> import numpy as np
        >>> from lmcore import optim
        >>> from lmcore.data.batches import RandomWindows
        >>> from lmcore.models.mlp import MLPLanguageModel
        >>> model = MLPLanguageModel(vocab_size=7, context=3, embed_dim=4, hidden=16)
        >>> trainer = Trainer(model, optim.AdamW(model.parameters(), lr=1e-2),
        ...                   RandomWindows(np.arange(200) % 7, 3, 16, seed=0), steps=40,
        ...                   log_every=10, progress=False)
        >>> history = trainer.run()
        >>> len(history), history.train_loss[-1] < history.train_loss[0]
        (40, True)
    """

    def __init__(
        self,
        model,
        optimizer,
        batches: Iterable,
        steps: int,
        *,
        loss_fn: Callable | None = None,
        carry_state: bool = False,
        scheduler=None,
        clip: float | None = None,
        val_batches: Iterable | None = None,
        eval_fn: Callable[[], float] | None = None,
        eval_every: int = 100,
        patience: int | None = None,
        early_stopping_mode: str = "min",
        restore_best: bool = True,
        callbacks: Iterable[Callable] = (),
        checkpoint: str | Path | None = None,
        checkpoint_every: int | None = None,
        resume_from: str | Path | None = None,
        config: dict | None = None,
        progress: bool = True,
        log_every: int = 1,
        accumulation_steps: int = 1,
        mixed_precision: bool = False,
        scaler: GradScaler | None = None,
        flops_per_token: float | None = None,
        peak_flops: float | None = None,
    ):
        if eval_fn is not None and val_batches is not None:
            raise ValueError("give val_batches or eval_fn, not both")
        for name, value in (
            ("steps", steps),
            ("eval_every", eval_every),
            ("log_every", log_every),
            ("accumulation_steps", accumulation_steps),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if scaler is not None and not mixed_precision:
            raise ValueError("a GradScaler belongs to mixed precision: pass mixed_precision=True")
        self.model, self.optimizer, self.scheduler, self.clip = model, optimizer, scheduler, clip
        self.steps, self.eval_every, self.log_every = steps, eval_every, log_every
        self.accumulation_steps = accumulation_steps
        self.precision = MixedPrecision(model) if mixed_precision else None
        self.scaler = (scaler or GradScaler()) if mixed_precision else None
        self.flops_per_token, self.peak_flops = flops_per_token, peak_flops
        self.checkpoint, self.config, self.progress = checkpoint, config, progress
        self.checkpoint_every = checkpoint_every or eval_every
        self.history = History()
        self.stopper = None
        if patience is not None:
            self.stopper = EarlyStopping(patience, mode=early_stopping_mode)
        self.restore_best, self.callbacks = restore_best, list(callbacks)
        loss_fn = loss_fn or (recurrent_loss if carry_state else default_loss)
        carrier = StateCarrier(loss_fn) if carry_state else None  # the state between batches
        self.step_loss = carrier or loss_fn
        self.measure = eval_fn
        if val_batches is not None:
            self.measure = lambda: evaluate(model, val_batches, loss_fn, carry_state)
        # Everything a checkpoint saves, so that a resumed run continues exactly.
        self.saved = {
            "model": model, "optimizer": optimizer, "scheduler": scheduler,
            "history": self.history, "early_stopping": self.stopper,
            "batches": _stateful(batches), "recurrent_state": carrier,
            "grad_scaler": self.scaler,
        }  # fmt: skip
        self.start = load_checkpoint(resume_from, **self.saved).step if resume_from else 0
        skip = 0 if _stateful(batches) else self.start * accumulation_steps
        self.stream = _endless(batches, skip, on_new_pass=carrier.reset if carrier else None)
        self.last_saved = Path(resume_from) if resume_from is not None else None  # good file
        self.pending: list[tuple] = []  # (step, loss, gradient norm, lr, seconds, tokens)
        self.clock = time.perf_counter()  # elapsed times count from here (reset by run)

    def step(self, step: int) -> None:
        """One optimizer step on the next ``accumulation_steps`` batches. The loss and the
        gradient norm stay device arrays in ``pending`` until :meth:`log` reads them."""
        k = self.accumulation_steps
        for callback in self.callbacks:
            callback(self, step)
        self.optimizer.zero_grad()
        total, tokens = None, 0
        with self.autocast():
            for _ in range(k):
                x, y = next(self.stream)
                loss = self.step_loss(self.model, x, y)
                if k > 1:
                    loss = loss / k  # the k parts add up to the mean loss and its gradient
                (loss if self.scaler is None else self.scaler.scale(loss)).backward()
                if self.precision is not None:
                    self.precision.accumulate_grads()
                total = loss.data if total is None else total + loss.data
                tokens += y.size
        if self.scaler is None:
            grad_norm = clip_grad_norm_(self.parameters, self.clip or math.inf)
        else:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients
            with np.errstate(invalid="ignore"):  # inf * 0 after an overflow: a skipped step
                grad_norm = clip_grad_norm_(self.parameters, self.clip or math.inf)
        lr = self.optimizer.param_groups[0]["lr"]
        self.pending.append((step, total, grad_norm.data, lr, time.perf_counter(), tokens))
        if self.log_every == 1:
            self.log()  # before the update: a non-finite step never reaches the weights
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)  # skipped when a gradient overflowed
            self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()

    @property
    def parameters(self) -> list:
        """The parameters that train now (``requires_grad``), those whose gradients are
        clipped; read at every step, so freezing or unfreezing during a run counts."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def autocast(self):
        """float16 copies of the weights with mixed precision, else nothing."""
        return contextlib.nullcontext() if self.precision is None else self.precision.autocast()

    def log(self) -> None:
        """Read the pending losses and gradient norms back, check that they are finite,
        and add them to the history."""
        for step, loss, grad_norm, lr, now, tokens in self.pending:
            loss, grad_norm = float(loss), float(grad_norm)
            _check_finite("loss", loss, step, self.last_saved)
            if self.scaler is None:  # with loss scaling, an overflow only skips the step
                _check_finite("gradient norm", grad_norm, step, self.last_saved)
            self.history.log_step(step, loss, lr, grad_norm, now - self.clock, tokens)
        self.pending.clear()

    def evaluate(self, step: int) -> bool:
        """Log the validation loss; True when early stopping says to stop."""
        with evaluation_mode(self.model), self.autocast():
            val_loss = float(self.measure())
        self.history.log_eval(step, val_loss)
        return self.stopper is not None and self.stopper.update(
            step, self.history.val_loss[-1], self.model
        )

    def progress_numbers(self) -> dict:
        """What the progress bar shows: the last losses and learning rate, tokens per
        second since the last logging step, MFU (with ``flops_per_token`` and
        ``peak_flops``) and the loss scale (with mixed precision)."""
        history = self.history
        numbers = {"loss": f"{history.train_loss[-1]:.4f}", "lr": f"{history.lr[-1]:.2e}"}
        if history.val_loss:
            numbers["val"] = f"{history.val_loss[-1]:.4f}"
        throughput = history.tokens_per_second(last=self.log_every)
        numbers["tok/s"] = f"{throughput:,.0f}"
        if self.flops_per_token and self.peak_flops and math.isfinite(throughput):
            numbers["mfu"] = f"{mfu(throughput, self.flops_per_token, self.peak_flops):.1%}"
        if self.scaler is not None:
            numbers["scale"] = f"{self.scaler.get_scale():g}"
        return numbers

    def save(self, step: int) -> None:
        """Write a checkpoint of everything in ``saved`` (atomically)."""
        self.last_saved = save_checkpoint(
            self.checkpoint, step=step, config=self.config, **self.saved
        )

    def run(self) -> History:
        """Train until ``steps`` steps in all (or early stopping); return the history."""
        history, steps = self.history, self.steps
        self.clock = time.perf_counter() - (history.elapsed[-1] if len(history) else 0.0)
        self.model.train()
        notice = (
            "Stopping after this step"
            + (", with a checkpoint," if self.checkpoint is not None else "")
            + "; press Ctrl-C again to stop at once."
        )
        with (
            tqdm(total=steps, initial=self.start, disable=not self.progress, unit="step") as bar,
            deferred_interrupt(notice) as interrupt,
        ):
            for step in range(self.start + 1, steps + 1):
                self.step(step)
                evaluating = self.measure is not None and (
                    step % self.eval_every == 0 or step == steps
                )
                saving = self.checkpoint is not None and (
                    step % self.checkpoint_every == 0 or step == steps
                )
                if step % self.log_every == 0 or evaluating or saving or step == steps:
                    self.log()
                    bar.set_postfix(self.progress_numbers(), refresh=False)
                stop = self.evaluate(step) if evaluating else False
                interrupted = interrupt.requested
                if saving or ((stop or interrupted) and self.checkpoint is not None):
                    self.log()
                    self.save(step)
                bar.update()
                if interrupted:
                    self.log()
                    raise TrainingInterrupted(step, self.last_saved if self.checkpoint else None)
                if stop:
                    break
        self.log()
        if self.stopper is not None and self.restore_best:
            self.stopper.restore_best(self.model)
        return history


def train(model, optimizer, batches: Iterable, steps: int, **options) -> History:
    """Train ``model`` until ``steps`` optimizer steps have been taken in all; a
    :class:`Trainer` with these options, run.

    Each step draws ``(x, y)`` from ``batches``, computes ``loss_fn(model, x, y)``,
    backpropagates, clips the gradient norm to ``clip`` (if given), and steps the
    optimizer and the ``scheduler``. ``batches`` may be endless (``RandomBlocks``) or
    re-iterable (a list, ``ContiguousBatches``: read again, epoch after epoch).
    ``loss_fn`` defaults to :func:`default_loss`.

    ``carry_state=True`` is truncated backpropagation through time for a recurrent model
    reading :class:`~lmcore.data.batches.ContiguousBatches`: ``loss_fn(model, x, y, state)``
    returns ``(loss, state)`` (default :func:`recurrent_loss`), each training batch starts
    from the previous batch's final state, detached (a :class:`StateCarrier`), and the
    state starts from zeros at each pass over the data. Evaluation on ``val_batches``
    carries a state of its own, from zeros, and leaves the training state alone.

    Every ``eval_every`` steps and at the end, the validation loss is measured, in
    evaluation mode with no graph: the mean loss over ``val_batches``, or ``eval_fn()``.
    With ``patience``, training stops after that many evaluations without a lower
    validation loss (a higher value with ``early_stopping_mode="max"``, for an accuracy
    or F1 from ``eval_fn``), and the model ends with the weights of its best evaluation,
    also when it runs all its steps (unless ``restore_best=False``).

    ``callbacks`` are called as ``callback(trainer, step)`` before each step, e.g. a
    :class:`~lmcore.nn.freezing.GradualUnfreezing`; gradients are clipped over the
    parameters that train at that step.

    With ``checkpoint`` (a path), the model, optimizer, scheduler, batch source, history,
    early-stopping state, carried recurrent state, RNG state and ``config`` are saved
    there every ``checkpoint_every`` steps (default: at each evaluation) and at the end.
    ``resume_from`` loads such a file into freshly built objects and continues at its
    step, so 20 steps, a checkpoint and 20 more give the same losses as 40 steps (a
    batch source with no ``state_dict`` is advanced by drawing the batches already used).

    ``accumulation_steps=k`` takes each optimizer step on k batches, each loss divided
    by k (gradient accumulation: a k times larger batch in the memory of one).
    ``mixed_precision=True`` computes in float16 with float32 master weights and dynamic
    loss scaling (:mod:`lmcore.train.mixed_precision`; ``scaler`` sets the
    :class:`~lmcore.train.mixed_precision.GradScaler`, saved in checkpoints). The history
    counts the tokens of each step; the progress bar shows tokens per second and, given
    ``flops_per_token`` (:func:`~lmcore.train.flops.gpt_flops_per_token`) and
    ``peak_flops`` (FLOP/s, e.g. :func:`~lmcore.train.flops.measure_peak_flops`), the
    model FLOPs utilization.

    A NaN or infinite loss or gradient norm raises :class:`NonFiniteLossError` before
    the bad step changes the weights or any checkpoint (with ``log_every`` above 1, see
    :class:`Trainer`); with mixed precision a non-finite gradient only skips the step.
    Ctrl-C finishes the current step, saves a checkpoint (with ``checkpoint``) and
    raises :class:`~lmcore.train.interrupt.TrainingInterrupted`, a KeyboardInterrupt;
    ``resume_from`` continues from it exactly. ``progress`` shows a progress bar.
    Returns the :class:`~lmcore.train.history.History`.
    """
    return Trainer(model, optimizer, batches, steps, **options).run()


def _stateful(batches):
    """``batches`` when a checkpoint can save its state (a seeded random source), else None."""
    return batches if hasattr(batches, "state_dict") else None


def _endless(batches: Iterable, skip: int, on_new_pass: Callable | None = None) -> Iterator:
    """The batches of ``batches``, read again from the start whenever it can be (epochs),
    after drawing and dropping the first ``skip``; ``on_new_pass()`` is called before the
    first batch of each pass is handed out (not for dropped ones)."""
    iterator = iter(batches)
    while True:
        produced = False
        for batch in iterator:
            first, produced = not produced, True
            if skip:
                skip -= 1
                continue
            if first and on_new_pass is not None:
                on_new_pass()
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
