"""Optimizers, learning-rate schedules and gradient clipping, with PyTorch's names.

Example:
    >>> import numpy as np
    >>> from lmcore import nn, optim
    >>> from lmcore.autograd import Tensor
    >>> model = nn.Linear(3, 1)
    >>> opt = optim.AdamW(optim.weight_decay_groups(model, 0.1), lr=1e-2)
    >>> scheduler = optim.LambdaLR(opt, optim.WarmupCosine(warmup_steps=10, total_steps=100))
    >>> x, y = Tensor(np.ones((8, 3), np.float32)), Tensor(np.zeros((8, 1), np.float32))
    >>> loss = ((model(x) - y) ** 2).mean()
    >>> loss.backward()
    >>> norm = optim.clip_grad_norm_(model.parameters(), 1.0)
    >>> opt.step()
    >>> opt.zero_grad()
    >>> scheduler.step()
"""

from lmcore.optim.clip import clip_grad_norm_
from lmcore.optim.optimizers import SGD, Adam, AdamW, Optimizer, weight_decay_groups
from lmcore.optim.schedules import ConstantWithWarmup, LambdaLR, StepDecay, WarmupCosine

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "ConstantWithWarmup",
    "LambdaLR",
    "Optimizer",
    "StepDecay",
    "WarmupCosine",
    "clip_grad_norm_",
    "weight_decay_groups",
]
