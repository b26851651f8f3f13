"""lmcore: language models from scratch on NumPy and CuPy.

Example:
    >>> import lmcore
    >>> lmcore.backend.describe()  # doctest: +SKIP
    'device: cpu (NumPy 2.1.0)'
"""

from lmcore import backend, config, data, notebook

__version__ = "0.1.0"
__all__ = ["__version__", "backend", "config", "data", "notebook"]
