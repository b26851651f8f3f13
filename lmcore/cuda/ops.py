"""Python launchers of the kernels in ``lmcore/cuda/``: CuPy arrays in, CuPy arrays out.

Each function checks what its kernel assumes (float32, contiguous, the sizes it
supports), picks the launch configuration and launches. ``version`` selects one of
a family's numbered kernels for the chapter's comparisons; the default is the fastest.
:mod:`lmcore.functional` calls these on CuPy arrays when kernels are enabled
(:func:`lmcore.cuda.use_kernels`).

Example (on a GPU):
    >>> import cupy as cp                                           # doctest: +SKIP
    >>> x = cp.random.standard_normal((4096, 384), dtype=cp.float32)  # doctest: +SKIP
    >>> y = softmax_forward(x, version=3)                           # doctest: +SKIP
"""

from __future__ import annotations

import functools
import math

import cupy as cp
import numpy as np

from lmcore.cuda.loader import function

__all__ = [
    "adamw_multi_tensor", "adamw_tensor", "attention_softmax_backward",
    "attention_softmax_forward", "cross_entropy_backward", "cross_entropy_forward",
    "flash_attention_backward", "flash_attention_forward", "gelu_backward", "gelu_forward",
    "layer_norm_backward", "layer_norm_forward", "matmul", "quantized_matmul",
    "residual_layer_norm_forward",
    "softmax_backward", "softmax_forward",
]  # fmt: skip

FLASH_HEAD_DIMS = (16, 32, 64)
_NULL = np.uint64(0)  # a null pointer argument
_WARPS = 4  # warps per block in the one-warp-per-row kernels
_GRID_CAP = 65535


def _check(*arrays) -> None:
    for a in arrays:
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            raise TypeError(
                f"lmcore's CUDA kernels take contiguous float32 arrays, got {a.dtype} "
                f"{'contiguous' if a.flags.c_contiguous else 'strided'} {a.shape}"
            )


def _launch(family: str, name: str, grid, block, args, shared_mem: int = 0) -> None:
    function(family, name)(tuple(grid), tuple(block), args, shared_mem=shared_mem)


def _rows_cols(x):
    cols = x.shape[-1] if x.ndim else 1
    return (x.size // cols if cols else 0), cols


def _warp_rows_grid(rows: int) -> tuple[int]:
    return (math.ceil(rows / _WARPS),)


@functools.cache
def _resident_blocks(family: str, name: str, threads: int) -> int:
    """How many blocks of ``threads`` threads of a kernel the whole GPU runs at once (its
    multiprocessors times the blocks each holds, bounded by registers and threads): the
    grid of a persistent kernel, whose blocks loop over the work."""
    device = cp.cuda.Device()
    sms = device.attributes["MultiProcessorCount"]
    regs = max(getattr(function(family, name), "num_regs", 64), 1)
    per_sm = min(
        device.attributes.get("MaxRegistersPerMultiprocessor", 65536) // (regs * threads),
        device.attributes["MaxThreadsPerMultiProcessor"] // threads,
        16,
    )
    return sms * max(per_sm, 1)


def _persistent_grid(family: str, name: str, rows: int) -> tuple[int]:
    """One warp per row, at most the blocks the GPU holds at once (see _resident_blocks)."""
    return (min(math.ceil(rows / _WARPS), _resident_blocks(family, name, 32 * _WARPS)),)


def _aligned(*arrays) -> bool:
    return all(a.data.ptr % 16 == 0 for a in arrays)


ROW_SIZES = (128, 256, 384, 512, 768, 1024)  # the row kernels' instantiations (common.cuh)


def _row_size(cols: int, *arrays) -> int | None:
    """The smallest row-in-registers instantiation that holds ``cols`` floats, or None when
    those kernels cannot take the rows (too long, not a multiple of 4, not aligned)."""
    if cols % 4 or not _aligned(*arrays):
        return None
    return next((size for size in ROW_SIZES if cols <= size), None)


# -- GELU ------------------------------------------------------------------------------


def gelu_forward(x, version: int = 2):
    """GELU (tanh form) of ``x``, elementwise."""
    _check(x)
    y = cp.empty_like(x)
    if x.size:
        if version == 2 and not _aligned(x, y):
            version = 1
        per_thread = 4 if version == 2 else 1
        grid = min(math.ceil(x.size / (256 * per_thread)), _GRID_CAP)
        _launch("gelu", f"gelu_forward_v{version}", (grid,), (256,), (x, y, np.int64(x.size)))
    return y


def gelu_backward(x, grad, version: int = 2):
    """``grad`` times GELU's slope at ``x``."""
    _check(x, grad)
    dx = cp.empty_like(x)
    if x.size:
        if version == 2 and not _aligned(x, grad, dx):
            version = 1
        per_thread = 4 if version == 2 else 1
        grid = min(math.ceil(x.size / (256 * per_thread)), _GRID_CAP)
        args = (x, grad, dx, np.int64(x.size))
        _launch("gelu", f"gelu_backward_v{version}", (grid,), (256,), args)
    return dx


# -- softmax ---------------------------------------------------------------------------


def softmax_forward(x, version: int = 4):
    """Softmax over the last axis (v4 falls back to v3 for rows it cannot hold)."""
    _check(x)
    y = cp.empty_like(x)
    rows, cols = _rows_cols(x)
    if not rows:
        return y
    args = (x, y, np.int32(rows), np.int32(cols))
    size = _row_size(cols, x, y) if version == 4 else None
    if size:
        _launch(
            "softmax", f"softmax_forward_v4_c{size}", _warp_rows_grid(rows), (32 * _WARPS,), args
        )
    elif version == 1:
        _launch("softmax", "softmax_forward_v1", (math.ceil(rows / 128),), (128,), args)
    elif version == 2:
        _launch("softmax", "softmax_forward_v2", (rows,), (256,), args, shared_mem=256 * 4)
    else:
        _launch("softmax", "softmax_forward_v3", _warp_rows_grid(rows), (32 * _WARPS,), args)
    return y


def softmax_backward(y, grad):
    """The gradient of the softmax's input from its output ``y`` and ``grad``."""
    _check(y, grad)
    dx = cp.empty_like(y)
    rows, cols = _rows_cols(y)
    if rows:
        args = (y, grad, dx, np.int32(rows), np.int32(cols))
        _launch("softmax", "softmax_backward", _warp_rows_grid(rows), (32 * _WARPS,), args)
    return dx


def attention_softmax_forward(scores, scale: float, causal: bool, out=None, version: int = 2):
    """Attention weights from raw scores (..., Tq, Tk): softmax(scale s) over the visible
    keys; ``out=scores`` works in place. v2 holds each row in registers (Tk a multiple of
    4, at most 1024), v1 is the online-softmax kernel for any Tk."""
    _check(scores)
    out = cp.empty_like(scores) if out is None else out
    tq, tk = scores.shape[-2:]
    rows = scores.size // tk
    if rows:
        args = (scores, out, np.int32(rows), np.int32(tq), np.int32(tk), np.float32(scale),
                np.int32(causal))  # fmt: skip
        size = _row_size(tk, scores, out) if version == 2 else None
        name = f"attention_softmax_forward_v2_c{size}" if size else "attention_softmax_forward"
        _launch("softmax", name, _warp_rows_grid(rows), (32 * _WARPS,), args)
    return out


def attention_softmax_backward(probs, grad, scale: float, causal: bool, out=None,
                               version: int = 2):  # fmt: skip
    """Gradient of the raw scores from that of the weights; ``out=grad`` works in place."""
    _check(probs, grad)
    out = cp.empty_like(grad) if out is None else out
    tq, tk = probs.shape[-2:]
    rows = probs.size // tk
    if rows:
        args = (probs, grad, out, np.int32(rows), np.int32(tq), np.int32(tk),
                np.float32(scale), np.int32(causal))  # fmt: skip
        size = _row_size(tk, probs, grad, out) if version == 2 else None
        name = f"attention_softmax_backward_v2_c{size}" if size else "attention_softmax_backward"
        _launch("softmax", name, _warp_rows_grid(rows), (32 * _WARPS,), args)
    return out


# -- LayerNorm -------------------------------------------------------------------------


def layer_norm_forward(x, weight, bias, eps: float, version: int = 4):
    """(y, mean, rstd) of LayerNorm over the last axis; ``weight``/``bias`` may be None.
    v3 and v4 fall back to v2 for rows they cannot hold in registers."""
    _check(x, *(p for p in (weight, bias) if p is not None))
    rows, cols = _rows_cols(x)
    y = cp.empty_like(x)
    mean, rstd = cp.empty(rows, np.float32), cp.empty(rows, np.float32)
    if rows:
        args = (x, _NULL if weight is None else weight, _NULL if bias is None else bias, y, mean,
                rstd, np.int32(rows), np.int32(cols), np.float32(eps))  # fmt: skip
        params = [p for p in (weight, bias) if p is not None]
        size = _row_size(cols, x, y, *params) if version in (3, 4) else None
        if size and version == 4:
            name = f"layernorm_forward_v4_c{size}"
            grid = _persistent_grid("layernorm", name, rows)
            _launch("layernorm", name, grid, (32 * _WARPS,), args)
        elif size:
            grid = _warp_rows_grid(rows)
            _launch("layernorm", f"layernorm_forward_v3_c{size}", grid, (32 * _WARPS,), args)
        elif version == 1:
            _launch("layernorm", "layernorm_forward_v1", (math.ceil(rows / 128),), (128,), args)
        else:
            grid = _warp_rows_grid(rows)
            _launch("layernorm", "layernorm_forward_v2", grid, (32 * _WARPS,), args)
    return y, mean, rstd


def residual_layer_norm_forward(a, residual, weight, bias, eps: float, version: int = 2):
    """(a + residual, LayerNorm(a + residual), mean, rstd) in one pass; v2 holds rows in
    registers (falling back to v1 for rows it cannot hold)."""
    _check(a, residual, *(p for p in (weight, bias) if p is not None))
    rows, cols = _rows_cols(a)
    total, y = cp.empty_like(a), cp.empty_like(a)
    mean, rstd = cp.empty(rows, np.float32), cp.empty(rows, np.float32)
    if rows:
        args = (a, residual, total, _NULL if weight is None else weight,
                _NULL if bias is None else bias, y, mean, rstd, np.int32(rows), np.int32(cols),
                np.float32(eps))  # fmt: skip
        params = [p for p in (weight, bias) if p is not None]
        size = _row_size(cols, a, residual, total, y, *params) if version == 2 else None
        if size:
            name = f"residual_layernorm_forward_v2_c{size}"
            _launch("layernorm", name, _persistent_grid("layernorm", name, rows),
                    (32 * _WARPS,), args)  # fmt: skip
        else:
            _launch("layernorm", "residual_layernorm_forward", _warp_rows_grid(rows),
                    (32 * _WARPS,), args)  # fmt: skip
    return total, y, mean, rstd


def layer_norm_backward(grad, x, weight, mean, rstd, need_input=True, need_weight=True,
                        need_bias=True, version: int = 3, rows_per_chunk: int = 64):  # fmt: skip
    """(dx, dweight, dbias) of LayerNorm over the last axis; None for those not needed.
    v2 and v3 read each row once (rows they can hold in registers; v3 on a grid of the
    blocks the GPU holds at once, the next row loaded ahead), v1 takes two kernels."""
    _check(grad, x, *(p for p in (weight,) if p is not None))
    rows, cols = _rows_cols(x)
    size = _row_size(cols, grad, x, *(p for p in (weight,) if p is not None))
    if version in (2, 3) and size and rows:
        name = f"layernorm_backward_v{version}_c{size}"
        blocks = min(math.ceil(rows / _WARPS), 1024)
        if version == 3:
            blocks = _persistent_grid("layernorm", name, rows)[0]
        dx = cp.empty_like(x) if need_input else None
        dw_part = cp.empty((blocks, cols), np.float32) if need_weight else None
        db_part = cp.empty((blocks, cols), np.float32) if need_bias else None
        args = tuple(_NULL if a is None else a for a in (grad, x, weight, mean, rstd, dx, dw_part,
                                                          db_part)) + (np.int32(rows), np.int32(cols))  # fmt: skip
        _launch("layernorm", name, (blocks,), (32 * _WARPS,), args)
        return (dx, None if dw_part is None else dw_part.sum(axis=0),
                None if db_part is None else db_part.sum(axis=0))  # fmt: skip
    dx = dw = db = None
    if need_input:
        dx = cp.empty_like(x)
        if rows:
            args = (grad, x, _NULL if weight is None else weight, mean, rstd, dx, np.int32(rows),
                    np.int32(cols))  # fmt: skip
            _launch("layernorm", "layernorm_backward_input", _warp_rows_grid(rows),
                    (32 * _WARPS,), args)  # fmt: skip
    if need_weight or need_bias:
        chunks = max(1, math.ceil(rows / rows_per_chunk))
        dw_part = cp.empty((chunks, cols), np.float32) if need_weight else None
        db_part = cp.empty((chunks, cols), np.float32) if need_bias else None
        block = min(256, 32 * math.ceil(cols / 32))
        args = (grad, x, mean, rstd, _NULL if dw_part is None else dw_part,
                _NULL if db_part is None else db_part, np.int32(rows), np.int32(cols),
                np.int32(rows_per_chunk))  # fmt: skip
        _launch("layernorm", "layernorm_backward_params", (math.ceil(cols / block), chunks),
                (block,), args)  # fmt: skip
        dw = None if dw_part is None else dw_part.sum(axis=0)
        db = None if db_part is None else db_part.sum(axis=0)
    return dx, dw, db


# -- cross-entropy ---------------------------------------------------------------------


def _ce_block(classes: int) -> int:
    return 32 if classes <= 256 else 256 if classes <= 8192 else 512


def cross_entropy_forward(logits, targets, ignore_index: int = -100, smoothing: float = 0.0,
                          version: int = 3):  # fmt: skip
    """(losses, lse) per row of (N, V) logits with int targets (N,); v3 needs the logits
    16-byte aligned (else v2)."""
    _check(logits)
    rows, classes = logits.shape
    targets = cp.ascontiguousarray(targets, dtype=cp.int64)
    losses, lse = cp.empty(rows, np.float32), cp.empty(rows, np.float32)
    if rows:
        args = (logits, targets, losses, lse, np.int32(rows), np.int32(classes),
                np.int64(ignore_index), np.float32(smoothing))  # fmt: skip
        if version == 3 and not _aligned(logits):
            version = 2
        name = {1: "cross_entropy_forward", 2: "cross_entropy_forward_v2",
                3: "cross_entropy_forward_v3"}[version]  # fmt: skip
        _launch("cross_entropy", name, (rows,), (_ce_block(classes),), args)
    return losses, lse


def cross_entropy_backward(logits, targets, lse, weight, ignore_index: int = -100,
                           smoothing: float = 0.0, version: int = 2):  # fmt: skip
    """d(sum_rows weight_row loss_row)/d logits; ``weight`` is one value (a 0-d or size-1
    array) or one per row. v2 (float4) needs 16-byte aligned arrays (else v1)."""
    _check(logits)
    rows, classes = logits.shape
    targets = cp.ascontiguousarray(targets, dtype=cp.int64)
    weight = cp.ascontiguousarray(weight, dtype=cp.float32).reshape(-1)
    stride = 0 if weight.size == 1 else 1
    dlogits = cp.empty_like(logits)
    if rows:
        args = (logits, targets, lse, weight, np.int32(stride), dlogits, np.int32(rows),
                np.int32(classes), np.int64(ignore_index), np.float32(smoothing))  # fmt: skip
        if version == 2 and not _aligned(logits, dlogits):
            version = 1
        name = "cross_entropy_backward_v2" if version == 2 else "cross_entropy_backward"
        _launch("cross_entropy", name, (rows,), (_ce_block(classes),), args)
    return dlogits


# -- AdamW -----------------------------------------------------------------------------


def adamw_tensor(param, grad, exp_avg, exp_avg_sq, step: int, lr: float, betas, eps: float,
                 weight_decay: float) -> None:  # fmt: skip
    """One AdamW step of one tensor, in place, in one launch (v1)."""
    _check(param, grad, exp_avg, exp_avg_sq)
    beta1, beta2 = betas
    c1, c2 = 1 - beta1**step, 1 - beta2**step
    n = param.size
    grid = min(math.ceil(n / 256), 4096)
    args = (param, grad, exp_avg, exp_avg_sq, np.int64(n), np.float32(lr),
            np.float32(weight_decay), np.float32(beta1), np.float32(beta2), np.float32(eps),
            np.float32(lr / c1), np.float32(1 / math.sqrt(c2)))  # fmt: skip
    if n:
        _launch("adamw", "adamw_v1", (grid,), (256,), args)


_CHUNK = 16384
_chunk_tables: dict[tuple[int, ...], tuple] = {}


def _chunk_table(sizes: tuple[int, ...]):
    """Which tensor and which first element each block of the multi-tensor launch takes."""
    if sizes not in _chunk_tables:
        owner, start = [], []
        for k, n in enumerate(sizes):
            for s in range(0, n, _CHUNK):
                owner.append(k)
                start.append(s)
        _chunk_tables[sizes] = (
            cp.asarray(np.array(sizes, np.int64)),
            cp.asarray(np.array(owner, np.int32)),
            cp.asarray(np.array(start, np.int64)),
        )
    return _chunk_tables[sizes]


_device_copies: dict[tuple, object] = {}


def _on_device(host: np.ndarray):
    """A device copy of a small host table, made once per distinct content: a training
    loop passes the same pointers (and, without a schedule, the same learning rates)
    every step, and each fresh upload from pageable memory can stall the host."""
    key = (host.dtype.str, host.tobytes())
    if key not in _device_copies:
        if len(_device_copies) >= 64:
            _device_copies.clear()
        _device_copies[key] = cp.asarray(host)
    return _device_copies[key]


def adamw_multi_tensor(tensors, step: int, betas, eps: float, version: int = 4) -> None:
    """One AdamW step of many tensors, in place, in ONE launch (v2; v3 with float4 when
    every tensor is 16-byte aligned; v4 as v3 with twice the loads in flight).

    ``tensors`` is a list of ``(param, grad, exp_avg, exp_avg_sq, lr, weight_decay)``
    that share the step count.
    """
    if not tensors:
        return
    for t in tensors:
        _check(*t[:4])
    beta1, beta2 = betas
    c1, c2 = 1 - beta1**step, 1 - beta2**step
    sizes = tuple(int(t[0].size) for t in tensors)
    sizes_d, owner, start = _chunk_table(sizes)
    pointers = np.array([a.data.ptr for t in tensors for a in t[:4]], np.uint64)
    hyper = np.array([v for t in tensors for v in t[4:6]], np.float32)
    args = (_on_device(pointers), sizes_d, _on_device(hyper), owner, start, np.int32(_CHUNK),
            np.float32(beta1), np.float32(beta2), np.float32(eps), np.float32(1 / c1),
            np.float32(1 / math.sqrt(c2)))  # fmt: skip
    if version in (3, 4) and not _aligned(*(a for t in tensors for a in t[:4])):
        version = 2
    if owner.size:
        _launch("adamw", f"adamw_v{version}", (owner.size,), (256,), args)


# -- attention -------------------------------------------------------------------------


def _flash_shapes(q, k, v):
    _check(q, k, v)
    if q.ndim != 3 or k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError(
            f"flash attention takes q (BH, Tq, D), k and v (BH, Tk, D); got {q.shape}, "
            f"{k.shape}, {v.shape}"
        )
    if q.shape[2] not in FLASH_HEAD_DIMS:
        raise ValueError(
            f"flash attention supports head widths {FLASH_HEAD_DIMS}, got {q.shape[2]}"
        )
    return q.shape[0], q.shape[1], k.shape[1], q.shape[2]


def flash_attention_forward(q, k, v, causal: bool = True, scale: float | None = None):
    """(out, lse) of attention for q (BH, Tq, D), k and v (BH, Tk, D), without the
    (Tq, Tk) matrix; ``lse`` (BH, Tq) is what the backward pass needs."""
    bh, tq, tk, d = _flash_shapes(q, k, v)
    scale = 1 / math.sqrt(d) if scale is None else scale
    out = cp.empty_like(q)
    lse = cp.empty((bh, tq), np.float32)
    if q.size and k.size:
        args = (q, k, v, out, lse, np.int32(tq), np.int32(tk), np.float32(scale),
                np.int32(causal))  # fmt: skip
        _launch("attention", f"flash_attention_forward_d{d}", (math.ceil(tq / 64), bh), (64,), args)
    return out, lse


def flash_attention_backward(q, k, v, out, lse, grad, causal: bool = True,
                             scale: float | None = None):  # fmt: skip
    """(dq, dk, dv) of :func:`flash_attention_forward`, recomputing the weights tile by tile."""
    bh, tq, tk, d = _flash_shapes(q, k, v)
    _check(out, grad, lse)
    scale = 1 / math.sqrt(d) if scale is None else scale
    if not (q.size and k.size):
        return cp.zeros_like(q), cp.zeros_like(k), cp.zeros_like(v)
    dq, dk, dv = cp.empty_like(q), cp.empty_like(k), cp.empty_like(v)
    delta = cp.empty((bh, tq), np.float32)
    rows = bh * tq
    _launch("attention", "attention_backward_delta", _warp_rows_grid(rows), (32 * _WARPS,),
            (out, grad, delta, np.int32(rows), np.int32(d)))  # fmt: skip
    common = (np.int32(tq), np.int32(tk), np.float32(scale), np.int32(causal))
    _launch("attention", f"flash_attention_backward_kv_d{d}", (math.ceil(tk / 64), bh), (64,),
            (q, k, v, grad, lse, delta, dk, dv, *common))  # fmt: skip
    _launch("attention", f"flash_attention_backward_q_d{d}", (math.ceil(tq / 64), bh), (64,),
            (q, k, v, grad, lse, delta, dq, *common))  # fmt: skip
    return dq, dk, dv


# -- quantized weights ----------------------------------------------------------------

QUANTIZED_MAX_TOKENS = 8  # MAX_TOKENS of quantized.cu: the rows of x one launch takes


def quantized_matmul(x, codes, scales, bits: int, version: int = 2):
    """``x`` (N, in) @ W^T for W stored as int8 or 4-bit ``codes`` and float32 ``scales``
    (out, groups), the layout of :class:`lmcore.nn.quantized.QuantizedLinear`, dequantized
    in registers; N at most ``QUANTIZED_MAX_TOKENS`` (decoding). Returns (N, out)."""
    _check(x, scales)
    n, width = x.shape
    out, groups = scales.shape
    code_type, code_width = (np.int8, width) if bits == 8 else (np.uint8, width // 2)
    if bits not in (4, 8) or codes.dtype != code_type or codes.shape != (out, code_width):
        raise ValueError(
            f"quantized_matmul: {bits}-bit codes for x {x.shape} and scales {scales.shape} "
            f"must be {np.dtype(code_type)} of shape {(out, code_width)}, got {codes.dtype} "
            f"{codes.shape}"
        )
    if not 0 < n <= QUANTIZED_MAX_TOKENS or width % groups or not codes.flags.c_contiguous:
        raise ValueError(
            f"quantized_matmul takes 1 to {QUANTIZED_MAX_TOKENS} rows of x, groups dividing "
            f"the width and contiguous codes; got x {x.shape}, {groups} groups"
        )
    multiple = 16 if bits == 8 else 32  # the codes of one 16-byte load share a scale
    if version == 2 and (
        width % multiple or (width // groups) % multiple or not _aligned(x, codes)
    ):
        version = 1
    y = cp.empty((n, out), np.float32)
    args = (x, codes, scales, y, np.int32(n), np.int32(out), np.int32(width), np.int32(groups))
    name = f"quantized_matvec_int{bits}_v{version}"
    _launch("quantized", name, _warp_rows_grid(out), (32 * _WARPS,), args)
    return y


# -- matrix product (teaching) ---------------------------------------------------------


def matmul(a, b, version: int = 3):
    """a @ b for 2-d float32 arrays with one of the teaching kernels."""
    _check(a, b)
    (m, k), (k2, n) = a.shape, b.shape
    if k != k2:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not chain")
    c = cp.empty((m, n), np.float32)
    args = (a, b, c, np.int32(m), np.int32(n), np.int32(k))
    if version == 1:
        _launch("matmul", "matmul_v1", (math.ceil(n / 32), math.ceil(m / 8)), (32, 8), args)
    elif version == 2:
        _launch("matmul", "matmul_v2", (math.ceil(n / 32), math.ceil(m / 32)), (32, 32), args)
    else:
        _launch("matmul", "matmul_v3", (math.ceil(n / 128), math.ceil(m / 128)), (256,), args)
    return c
