"""lmcore: language models from scratch on NumPy and CuPy.

Example:
    >>> import lmcore
    >>> x = lmcore.Tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad
    array([2., 4., 6.], dtype=float32)
"""

from lmcore import autograd, backend, config, data, functional, nn, notebook, optim, rng, train
from lmcore.autograd import Function, Tensor, enable_grad, is_grad_enabled, no_grad
from lmcore.rng import manual_seed

__version__ = "0.1.0"
__all__ = [
    "Function",
    "Tensor",
    "__version__",
    "autograd",
    "backend",
    "config",
    "data",
    "enable_grad",
    "functional",
    "is_grad_enabled",
    "manual_seed",
    "nn",
    "no_grad",
    "notebook",
    "optim",
    "rng",
    "train",
]
