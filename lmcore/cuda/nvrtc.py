"""Compile CUDA C++ to PTX with NVRTC, without a GPU or a driver.

NVRTC, NVIDIA's run-time compiler, is a plain shared library (PyPI ships it as
``nvidia-cuda-nvrtc-cu12``); it needs no driver, so a machine without a GPU can check
that every kernel in ``lmcore/cuda/`` compiles, for any architecture. On a GPU,
CuPy's ``RawModule`` calls the same compiler (see :mod:`lmcore.cuda.loader`).

Example:
    >>> from lmcore.cuda import nvrtc
    >>> ptx = nvrtc.compile_ptx('extern "C" __global__ void k(float* x) { x[0] = 1; }',
    ...                         arch="compute_75")                # doctest: +SKIP
    >>> ".entry k" in ptx                                         # doctest: +SKIP
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import importlib.util
import os
import re

__all__ = ["CompileError", "available", "compile_ptx", "library_path", "ptx_entries"]


class CompileError(RuntimeError):
    """NVRTC rejected a source, or warned about it; the message holds the compiler's log."""


def _candidates() -> list[str]:
    """Where libnvrtc may be: the pip wheels (cu12, cu13), CUDA_HOME, the system."""
    paths = []
    spec = importlib.util.find_spec("nvidia")
    for root in spec.submodule_search_locations if spec else []:
        for pattern in (
            "cuda_nvrtc/lib/libnvrtc.so*",
            "cu13/lib/libnvrtc.so*",
            "*/lib/libnvrtc.so*",
        ):
            paths += sorted(glob.glob(os.path.join(root, pattern)))
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            paths += sorted(glob.glob(os.path.join(home, "lib64", "libnvrtc.so*")))
    found = ctypes.util.find_library("nvrtc")
    if found:
        paths.append(found)
    return [p for p in paths if "builtins" not in p and ".alt." not in p]


@functools.cache
def _library() -> ctypes.CDLL | None:
    for path in _candidates():
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def available() -> bool:
    """True when an NVRTC library can be loaded on this machine."""
    return _library() is not None


def library_path() -> str | None:
    """The file of the NVRTC library in use, or None."""
    lib = _library()
    return None if lib is None else lib._name


def _check(lib, status: int, what: str) -> None:
    if status != 0:
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        raise CompileError(f"{what}: {lib.nvrtcGetErrorString(status).decode()}")


def compile_ptx(
    source: str, arch: str = "compute_75", name: str = "kernel.cu", options: tuple[str, ...] = ()
) -> str:
    """PTX for ``source`` compiled for ``arch`` (e.g. ``compute_75``, ``compute_90``).

    Raises :class:`CompileError` with the compiler's log when compilation fails or
    prints any warning: a kernel of this book compiles cleanly.
    """
    lib = _library()
    if lib is None:
        raise CompileError(
            "NVRTC was not found: pip install nvidia-cuda-nvrtc-cu12 (it needs no GPU), "
            "or set CUDA_HOME to a CUDA toolkit."
        )
    program = ctypes.c_void_p()
    _check(
        lib,
        lib.nvrtcCreateProgram(
            ctypes.byref(program), source.encode(), name.encode(), 0, None, None
        ),
        "nvrtcCreateProgram",
    )
    try:
        flags = [f"--gpu-architecture={arch}", "--std=c++17", "-default-device", *options]
        argv = (ctypes.c_char_p * len(flags))(*(f.encode() for f in flags))
        status = lib.nvrtcCompileProgram(program, len(flags), argv)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(program, log)
        text = log.value.decode(errors="replace").strip()
        if status != 0 or text:
            raise CompileError(f"{name} for {arch}:\n{text}")
        lib.nvrtcGetPTXSize(program, ctypes.byref(size))
        ptx = ctypes.create_string_buffer(size.value)
        _check(lib, lib.nvrtcGetPTX(program, ptx), "nvrtcGetPTX")
        return ptx.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))


def ptx_entries(ptx: str) -> dict[str, str]:
    r"""The PTX text of each kernel (``.entry``) of a compiled module, by kernel name.

    Example:
        >>> ptx_entries(".visible .entry a(\n) { ret; }\n.visible .entry b(\n) { ret; }")
        {'a': '.visible .entry a(\n) { ret; }\n', 'b': '.visible .entry b(\n) { ret; }'}
    """
    parts = re.split(r"(?=\.visible \.entry )", ptx)[1:]
    return {re.match(r"\.visible \.entry (\w+)", part).group(1): part for part in parts}
