"""Training: the loop, evaluation, early stopping, history and checkpoints.

Example:
    >>> from lmcore import train
    >>> history = train.History()
    >>> sorted(name for name in train.__all__ if name[0].isupper())[:3]
    ['Checkpoint', 'CheckpointError', 'EarlyStopping']
"""

from lmcore.train.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from lmcore.train.history import History
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

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "EarlyStopping",
    "History",
    "NonFiniteLossError",
    "StateCarrier",
    "Trainer",
    "default_loss",
    "evaluate",
    "evaluation_mode",
    "load_checkpoint",
    "recurrent_loss",
    "save_checkpoint",
    "train",
]
