"""Training: the loop, evaluation, early stopping, history and checkpoints; gradient
accumulation, mixed precision, throughput and MFU.

Example:
    >>> from lmcore import train
    >>> history = train.History()
    >>> sorted(name for name in train.__all__ if name[0].isupper())[:3]
    ['Checkpoint', 'CheckpointError', 'EarlyStopping']
"""

from lmcore.train.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from lmcore.train.flops import gpt_flops_per_token, measure_peak_flops, mfu
from lmcore.train.history import History
from lmcore.train.interrupt import TrainingInterrupted
from lmcore.train.loop import (
    EarlyStopping,
    NonFiniteLossError,
    StateCarrier,
    Trainer,
    default_loss,
    evaluate,
    evaluation_mode,
    recurrent_loss,
    train,
)
from lmcore.train.mixed_precision import GradScaler, MixedPrecision

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "EarlyStopping",
    "GradScaler",
    "History",
    "MixedPrecision",
    "NonFiniteLossError",
    "StateCarrier",
    "Trainer",
    "TrainingInterrupted",
    "default_loss",
    "evaluate",
    "evaluation_mode",
    "gpt_flops_per_token",
    "load_checkpoint",
    "measure_peak_flops",
    "mfu",
    "recurrent_loss",
    "save_checkpoint",
    "train",
]
