"""The kernel sources of ``lmcore/cuda/`` and their compiled modules.

Each ``NAME.cu`` is one family of kernels. ``#include "common.cuh"`` is replaced by
that file's text, so a source is self-contained for any compiler. On a GPU,
:func:`module` compiles a family once per process with CuPy's ``RawModule`` (NVRTC
underneath; CuPy also caches the binary on disk), for the device's own architecture.

Example:
    >>> from lmcore.cuda import loader
    >>> "gelu" in loader.families()
    True
    >>> "gelu_forward_v2" in loader.kernel_names("gelu")
    True
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

__all__ = ["families", "kernel_names", "kernel_source", "module", "function", "source"]

HERE = Path(__file__).parent
OPTIONS = ("--std=c++17",)


def families() -> list[str]:
    """The kernel families, one per ``.cu`` file, sorted by name."""
    return sorted(p.stem for p in HERE.glob("*.cu"))


@functools.cache
def source(family: str) -> str:
    """The self-contained CUDA C++ text of a family (``common.cuh`` inlined)."""
    path = HERE / f"{family}.cu"
    if not path.exists():
        raise ValueError(f"no kernel family {family!r}; the families are {', '.join(families())}")
    common = (HERE / "common.cuh").read_text()
    return path.read_text().replace('#include "common.cuh"', common)


def kernel_names(family: str) -> list[str]:
    """The ``extern "C" __global__`` kernels a family defines, in file order, those that
    macros stamp out for several sizes included.

    Example:
        >>> kernel_names("attention")[:2]
        ['attention_backward_delta', 'flash_attention_forward_d16']
    """
    text = source(family)
    names = re.findall(r'extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(', text)
    names = [n for n in names if n != "__launch_bounds__"]  # inside a macro: below
    calls = _macro_calls(text)
    for macro, params, body in re.findall(r"#define (\w+)\(([\w, ]+)\)((?:.*\\\n)+.*)", text):
        params = [p.strip() for p in params.split(",")]
        for args in calls.get(macro, []):
            values = dict(zip(params, args))
            for stem, param in re.findall(
                r"__global__ void (?:__launch_bounds__\(\d+\) )?(\w+)##(\w+)\(", body
            ):
                names.append(f"{stem}{values[param]}")
    return names


def _macro_calls(text: str) -> dict[str, list[list[str]]]:
    """The arguments of each top-level macro call (``NAME(a, b)`` on a line of its own, or
    each ``MACRO(a, b)`` of ``FOR_ROW_SIZES(MACRO)``)."""
    calls: dict[str, list[list[str]]] = {}
    sizes = re.search(r"#define FOR_ROW_SIZES\(MACRO\)((?:.*\\\n)*.*)", text)
    for name, args in re.findall(r"^(\w+)\(([\w, ]+)\)$", text, re.M):
        if name == "FOR_ROW_SIZES" and sizes:
            for each in re.findall(r"MACRO\(([\w, ]+)\)", sizes.group(1)):
                calls.setdefault(args, []).append([a.strip() for a in each.split(",")])
        else:
            calls.setdefault(name, []).append([a.strip() for a in args.split(",")])
    return calls


def kernel_source(family: str, name: str) -> str:
    """The text of one kernel (or device function) of a family, for reading.

    Example:
        >>> kernel_source("gelu", "gelu_forward_v1").splitlines()[0]
        'extern "C" __global__ void gelu_forward_v1(const float* __restrict__ x, float* __restrict__ y,'
    """
    text = (HERE / ("common.cuh" if family == "common" else f"{family}.cu")).read_text()
    match = re.search(rf"^[^\n]*\b{name}\(", text, re.M)
    if match is None:
        raise ValueError(f"{family}.cu has no function {name!r}")
    start = text.rfind("\n", 0, match.start()) + 1
    depth, i = 0, text.index("{", match.start())
    while True:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
        if depth == 0:
            return text[start:i]


@functools.cache
def module(family: str):
    """The compiled ``cupy.RawModule`` of a family (compiled on first use)."""
    import cupy

    return cupy.RawModule(code=source(family), options=OPTIONS)


@functools.cache
def function(family: str, name: str):
    """One compiled kernel, callable as ``kernel(grid, block, args, shared_mem=0)``."""
    return module(family).get_function(name)
