"""Helpers for the chapter notebooks: one set-up line, and package code shown from its source.

The book shows lmcore's code where it teaches it, read from the installed package with
``inspect``, so the page, the notebook and the package can never disagree.

Example:
    >>> from lmcore import notebook
    >>> notebook.setup()                     # doctest: +SKIP
    lmcore 0.1.0 · profile: quick · device: cpu (NumPy 2.1.0)
    >>> notebook.show(notebook.setup)        # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import textwrap

import numpy as np

from lmcore import backend, config
from lmcore.autograd import Tensor


def setup() -> None:
    """Print one line naming lmcore's version, the profile and the device; style the plots."""
    import matplotlib as mpl

    import lmcore

    mpl.rcParams.update(
        {
            "figure.dpi": 110,
            "figure.figsize": (6.4, 3.6),
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
        }
    )
    print(f"lmcore {lmcore.__version__} · profile: {config.profile()} · {backend.describe()}")


class Source:
    """Source code that shows highlighted in Jupyter, Colab and the rendered book
    (``language``: any Pygments lexer name, "python" or "cuda" here)."""

    def __init__(self, code: str, title: str = "", language: str = "python"):
        self.code, self.title, self.language = code, title, language

    def __repr__(self) -> str:
        return f"# {self.title}\n{self.code}" if self.title else self.code

    def _repr_html_(self) -> str:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import get_lexer_by_name

        lexer = get_lexer_by_name(self.language)
        html = highlight(self.code, lexer, HtmlFormatter(noclasses=True, nobackground=True))
        caption = f"<div style='font-size:85%;opacity:.7'>{self.title}</div>" if self.title else ""
        return f"<div class='lmcore-source'>{caption}{html}</div>"


def show(obj, lines: slice | None = None, between: tuple[str, str] | None = None) -> Source:
    """The source of a function, class or method of lmcore, for display in a notebook.

    ``lines`` picks a slice of the source lines; ``between=(first, last)`` picks the lines
    from the first one containing ``first`` to the next one containing ``last``, a choice
    that survives edits elsewhere in the function.

    Example:
        >>> show(setup, between=("import lmcore", "rcParams")).code
        'import lmcore\\n\\nmpl.rcParams.update(\\n'
    """
    code = textwrap.dedent(inspect.getsource(obj))
    source = code.splitlines()
    if between is not None:
        first, last = between
        try:
            start = next(i for i, line in enumerate(source) if first in line)
            stop = next(i for i in range(start, len(source)) if last in source[i]) + 1
        except StopIteration:
            raise ValueError(
                f"show(between={between!r}): no line of {obj.__qualname__} contains "
                f"{first!r}, or none after it contains {last!r}"
            ) from None
        lines = slice(start, stop)
    if lines is not None:
        code = textwrap.dedent("\n".join(source[lines]) + "\n")
    where = f"{obj.__module__}.{obj.__qualname__}" if hasattr(obj, "__qualname__") else ""
    return Source(code, title=where)


def show_cuda(
    family: str, name: str | None = None, between: tuple[str, str] | None = None
) -> Source:
    """CUDA source of lmcore's kernels (``lmcore/cuda/FAMILY.cu``, or ``"common"`` for
    ``common.cuh``): one function by ``name``, the lines from the one containing
    ``between[0]`` to the one before the next containing ``between[1]``, or else the
    comment at the top of the file (its mathematics and its versions).

    Example:
        >>> show_cuda("gelu", "gelu_forward_v1").code.splitlines()[0][:40]
        'extern "C" __global__ void gelu_forward_'
    """
    from lmcore.cuda import loader

    filename = "common.cuh" if family == "common" else f"{family}.cu"
    if name is not None:
        return Source(loader.kernel_source(family, name), f"lmcore/cuda/{filename}: {name}", "cuda")
    lines = (loader.HERE / filename).read_text().splitlines()
    if between is None:
        stop = next(i for i, line in enumerate(lines) if not line.startswith("//"))
        return Source("\n".join(lines[:stop]), f"lmcore/cuda/{filename}", "cuda")
    first, last = between
    try:
        start = next(i for i, line in enumerate(lines) if first in line)
        stop = next(i for i in range(start + 1, len(lines)) if last in lines[i])
    except StopIteration:
        raise ValueError(
            f"show_cuda: no line of {filename} contains {first!r} then {last!r}"
        ) from None
    return Source("\n".join(lines[start:stop]).strip(), f"lmcore/cuda/{filename}", "cuda")


def cpu(value) -> np.ndarray:
    """A NumPy copy of a tensor's or array's values, wherever they live (NumPy or CuPy).

    Example:
        >>> from lmcore.autograd import Tensor
        >>> cpu(Tensor([1.0, 2.0]))
        array([1., 2.], dtype=float32)
    """
    data = value.data if isinstance(value, Tensor) else value
    return np.asarray(backend.to_device(data, "cpu"))
