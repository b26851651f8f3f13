"""How much arithmetic a GPT does per token, and how much of the device that uses (MFU).

Training a decoder-only Transformer of N parameters costs about 6N floating-point
operations per token: 2N for the forward pass (a multiply and an add per weight) and
4N for the backward pass (gradients of the activations and of the weights). Attention
adds the products of queries with keys and of weights with values, which depend on the
context length T rather than on any weight: 12 L C T more per token for L layers of
width C (Chowdhery et al. 2022, PaLM, appendix B; nanoGPT's ``estimate_mfu``).

Model FLOPs utilization (MFU) divides the FLOPs a run achieves by the device's peak:
``tokens_per_second * flops_per_token / peak_flops``. The peak may be a datasheet
number or one measured here with a large matrix product.

Example:
    >>> from lmcore.models import GPT, GPTConfig
    >>> model = GPT(GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384))
    >>> f"{gpt_flops_per_token(model) / 1e6:.1f} MFLOP per token"
    '71.1 MFLOP per token'
    >>> f"{mfu(tokens_per_second=50_000, flops_per_token=71.1e6, peak_flops=60e12):.1%}"
    '5.9%'
"""

from __future__ import annotations

import time

import numpy as np

from lmcore import backend

__all__ = ["gpt_flops_per_token", "measure_peak_flops", "mfu"]


def gpt_flops_per_token(model, seq_len: int | None = None) -> int:
    """Training FLOPs per token of a GPT, ``6 N + 12 L C T``: N its parameters without
    the position embeddings (as :meth:`~lmcore.models.gpt.GPT.num_parameters` with
    ``non_embedding=True``; the token embeddings stay, they are also the output
    layer), L layers, C the width and T = ``seq_len`` (default: the block size)."""
    config = model.config
    T = config.block_size if seq_len is None else seq_len
    N = model.num_parameters(non_embedding=True)
    return 6 * N + 12 * config.n_layer * config.n_embd * T


def mfu(tokens_per_second: float, flops_per_token: float, peak_flops: float) -> float:
    """The share of ``peak_flops`` (FLOP/s) that ``tokens_per_second`` achieves.

    Example:
        >>> mfu(1_000, 6e6, 12e9)
        0.5
    """
    if peak_flops <= 0:
        raise ValueError(f"peak_flops must be positive, got {peak_flops}")
    return tokens_per_second * flops_per_token / peak_flops


def measure_peak_flops(
    device: str | None = None, dtype="float32", size: int | None = None, repeats: int = 5
) -> float:
    """FLOP/s of the fastest of ``repeats`` products of two (size, size) matrices of
    ``dtype`` on ``device`` (default: the active one), after one to warm up: a
    practical peak for :func:`mfu`. ``size`` defaults to 1024 on the CPU (NumPy's BLAS)
    and 8192 on a GPU (cuBLAS; float32 uses TF32 tensor cores when
    :func:`lmcore.cuda.allow_tf32` is on, float16 the half-precision ones).

    Example:
        >>> measure_peak_flops("cpu", size=128, repeats=2) > 0
        True
    """
    device = device or backend.device()
    xp = backend.xp(device)
    n = size or (1024 if device == "cpu" else 8192)
    generator = np.random.default_rng(0)
    a = xp.asarray(generator.standard_normal((n, n)), dtype=dtype)
    b = xp.asarray(generator.standard_normal((n, n)), dtype=dtype)
    out = xp.empty((n, n), dtype=dtype)
    synchronize = _synchronizer(device)
    best = float("inf")
    for _ in range(repeats + 1):
        synchronize()
        start = time.perf_counter()
        xp.matmul(a, b, out=out)
        synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def _synchronizer(device: str):
    if device == "cpu":
        return lambda: None
    import cupy

    return cupy.cuda.get_current_stream().synchronize
