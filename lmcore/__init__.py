"""lmcore: language models from scratch on NumPy and CuPy.

``import lmcore`` loads the tensor and its operations; the larger parts (``nn``,
``optim``, ``data``, ``train``, ``models``, ``tokenizers``, ``notebook``, ...) load on
first use, so ``lmcore.nn`` works without importing it first.

Example:
    >>> import lmcore
    >>> x = lmcore.Tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad
    tensor([2., 4., 6.], dtype=float32)
"""

import importlib

from lmcore import autograd, backend, config, functional, rng
from lmcore.autograd import Function, Tensor, enable_grad, is_grad_enabled, no_grad
from lmcore.factories import (
    arange,
    empty,
    empty_like,
    full,
    full_like,
    ones,
    ones_like,
    rand,
    rand_like,
    randn,
    randn_like,
    tensor,
    zeros,
    zeros_like,
)
from lmcore.functional import cat, stack
from lmcore.rng import manual_seed

__version__ = "0.1.0"
__all__ = [
    "Function", "Tensor", "__version__", "arange", "autograd", "backend", "cat", "config",
    "data", "empty", "empty_like", "enable_grad", "full", "full_like", "functional",
    "is_grad_enabled", "manual_seed", "nn", "no_grad", "notebook", "ones", "ones_like", "optim",
    "rand", "rand_like", "randn", "randn_like", "rng", "stack", "tensor", "train", "zeros",
    "zeros_like",
]  # fmt: skip

_LAZY = {
    "cuda",
    "data",
    "generate",
    "models",
    "ngram",
    "nn",
    "notebook",
    "optim",
    "tokenizers",
    "train",
}


def __getattr__(name: str):
    """Import a submodule the first time ``lmcore.NAME`` is used."""
    if name in _LAZY:
        return importlib.import_module(f"lmcore.{name}")
    raise AttributeError(f"module 'lmcore' has no attribute {name!r}")
