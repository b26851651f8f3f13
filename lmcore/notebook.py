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

from lmcore import backend, config


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
    """Source code that shows highlighted in Jupyter, Colab and the rendered book."""

    def __init__(self, code: str, title: str = ""):
        self.code, self.title = code, title

    def __repr__(self) -> str:
        return f"# {self.title}\n{self.code}" if self.title else self.code

    def _repr_html_(self) -> str:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        html = highlight(self.code, PythonLexer(), HtmlFormatter(noclasses=True, nobackground=True))
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
