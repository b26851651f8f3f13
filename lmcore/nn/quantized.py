"""Weight-only quantized linear layers for inference: int8 and 4-bit weights, float math.

Generating one token reads every weight once and does only two flops per weight read, so
on a CPU (or a GPU at batch 1) decoding is bound by memory bandwidth, not arithmetic.
Storing weights in 8 bits instead of 32 moves 4 times fewer bytes (4 bits: 8 times
fewer, less the scales), at the cost of a rounding error on every weight. Activations
stay in float: each layer turns a block of weight rows back into float and multiplies
(dequantize-and-matmul), so no int8 arithmetic is needed and outputs stay close to the
float model's. Here on NumPy the dequantized block is written to memory before the
product, which gives back part of the bandwidth saved. On a GPU, a decode step (at most
8 rows of input) runs a fused kernel instead (``lmcore/cuda/quantized.cu``), which
dequantizes in registers and reads only the codes and scales.

Scales are per output channel and per group of ``group_size`` inputs (blockwise, as
GGUF's Q8_0 and Q4_0 do with 32): a smaller group follows the weights more closely and
costs more scales.

Example:
    >>> import numpy as np
    >>> from lmcore.autograd import Tensor
    >>> from lmcore.nn import Linear
    >>> layer = Linear(64, 16, bias=False)
    >>> q = QuantizedLinear.from_linear(layer, bits=8)
    >>> x = Tensor(np.random.default_rng(0).normal(size=(2, 64)).astype(np.float32))
    >>> bool(np.abs(q(x).numpy() - layer(x).numpy()).max() < 0.02), q.weight_nbytes() < layer.weight.data.nbytes / 3
    (True, True)
"""

from __future__ import annotations

import numpy as np

from lmcore import backend
from lmcore.autograd import Function, Tensor
from lmcore.functional.common import _as_tensor
from lmcore.nn.layers import Linear
from lmcore.nn.module import Module

__all__ = ["Int4Linear", "Int8Linear", "QuantizedLinear", "quantize_model", "quantize_weight"]

# Weight rows dequantized at a time. On a CPU a block should stay in the core's cache
# between being written and being read by the product: of 64 to 2048 rows, 256 rows of
# 576 floats (0.6 MB) decoded SmolLM2 fastest in int8 on the book's 2-core machine, and a
# whole matrix at once was a third slower. On a GPU, fewer and larger blocks mean fewer
# kernel launches.
ROWS_PER_BLOCK = 256
ROWS_PER_BLOCK_GPU = 16384


def quantize_weight(weight, bits: int = 8, group_size: int | None = None):
    """Symmetric quantization of ``weight`` (out, in): codes in [-(2^(b-1) - 1), 2^(b-1) - 1]
    and one float32 scale per output row and group of ``group_size`` inputs (None: the
    whole row). Returns ``(codes, scales)``: int8 codes (out, in) (4 bits: two per byte,
    (out, in / 2) uint8) and scales (out, in / group_size).

    Example:
        >>> codes, scales = quantize_weight(np.array([[1.0, -0.5, 0.25, 0.0]]), bits=8)
        >>> codes.tolist(), bool(scales[0, 0] == np.float32(1 / 127))
        ([[127, -64, 32, 0]], True)
    """
    if bits not in (4, 8):
        raise ValueError(f"quantize_weight supports bits=8 or bits=4, got {bits}")
    weight = np.asarray(backend.to_device(weight, "cpu"), dtype=np.float32)
    out, width = weight.shape
    group = width if group_size is None else group_size
    if width % group or (bits == 4 and group % 2):
        raise ValueError(
            f"group_size {group} must divide the input width {width} (and be even for 4 bits)"
        )
    grouped = weight.reshape(out, width // group, group)
    top = 2 ** (bits - 1) - 1
    scales = np.abs(grouped).max(axis=2) / top  # (out, groups)
    inverse = np.divide(1, scales, out=np.zeros_like(scales), where=scales > 0)
    codes = np.clip(np.rint(grouped * inverse[:, :, None]), -top, top).astype(np.int8)
    codes = codes.reshape(out, width)
    if bits == 4:  # two codes a byte: even inputs in the low nibble, odd ones in the high
        nibbles = (codes + 8).astype(np.uint8)
        codes = nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)
    return codes, scales.astype(np.float32)


def codes_as_floats(block, bits: int):
    """The codes of a block of rows as float32 (r, in), unscaled: int8 codes as they are,
    4-bit ones unpacked from their nibbles."""
    xp = backend.get_array_module(block)
    if bits == 4:
        low = (block & 0x0F).astype(np.int8) - 8
        high = (block >> 4).astype(np.int8) - 8
        block = xp.stack([low, high], axis=-1).reshape(block.shape[0], -1)  # (r, in)
    return block.astype(np.float32)


def dequantize_rows(codes, scales, bits: int, rows: slice):
    """Float32 weights (r, in) of output ``rows`` from codes and scales."""
    weights = codes_as_floats(codes[rows], bits)
    r, groups = weights.shape[0], scales.shape[1]
    weights = weights.reshape(r, groups, -1)
    weights *= scales[rows][:, :, None]
    return weights.reshape(r, -1)


def _fused_kernel_takes(x2, codes, scales) -> bool:
    """Whether the GPU's fused dequantize-and-multiply kernel runs ``x2`` (N, in): kernels
    on, float32 CuPy arrays, contiguous codes and a decode-sized N."""
    from lmcore import cuda

    if not cuda.wanted(x2, scales) or not codes.flags.c_contiguous:
        return False
    from lmcore.cuda.ops import QUANTIZED_MAX_TOKENS

    return 0 < x2.shape[0] <= QUANTIZED_MAX_TOKENS


class _QuantizedMatmul(Function):
    """``x @ W.T`` with W dequantized ``ROWS_PER_BLOCK`` rows at a time; the backward
    gives the gradient of x (the weights are frozen), so adapters such as LoRA can
    train on top of a quantized model."""

    def __init__(self, codes, scales, bits, out_features):
        self.codes, self.scales, self.bits, self.out = codes, scales, bits, out_features

    def _blocks(self):
        """Each block of output rows with its weight, as ``(rows, weight, row_scales)``:
        with one scale a row, the weight is the codes as floats and ``row_scales`` (r,)
        scale the block's outputs instead, which saves a pass over the block; otherwise
        the weight is dequantized and ``row_scales`` is None."""
        on_cpu = backend.get_array_module(self.codes) is np
        step = ROWS_PER_BLOCK if on_cpu else ROWS_PER_BLOCK_GPU
        per_row = self.scales.shape[1] == 1
        for start in range(0, self.out, step):
            rows = slice(start, min(start + step, self.out))
            if per_row:
                yield rows, codes_as_floats(self.codes[rows], self.bits), self.scales[rows, 0]
            else:
                yield rows, dequantize_rows(self.codes, self.scales, self.bits, rows), None

    def forward(self, x):
        xp = backend.get_array_module(x)
        self.x_shape = x.shape
        x2 = x.reshape(-1, x.shape[-1])  # (N, in)
        if _fused_kernel_takes(x2, self.codes, self.scales):
            from lmcore.cuda import ops

            y = ops.quantized_matmul(x2, self.codes, self.scales, self.bits)  # (N, out)
            return y.reshape(x.shape[:-1] + (self.out,))
        y = xp.empty((x2.shape[0], self.out), dtype=x.dtype)  # (N, out)
        for rows, weight, row_scales in self._blocks():
            y[:, rows] = x2 @ weight.astype(x.dtype, copy=False).T
            if row_scales is not None:
                y[:, rows] *= row_scales
        return y.reshape(x.shape[:-1] + (self.out,))

    def backward(self, grad):
        grad2 = grad.reshape(-1, self.out)  # (N, out)
        result = None
        for rows, weight, row_scales in self._blocks():
            grad_rows = grad2[:, rows] if row_scales is None else grad2[:, rows] * row_scales
            part = grad_rows @ weight.astype(grad.dtype, copy=False)  # (N, in)
            result = part if result is None else result + part
        return result.reshape(self.x_shape)


class QuantizedLinear(Module):
    """A bias-optional Linear whose weight is stored as ``bits``-bit codes with float32
    scales per output row and input group; (..., in) → (..., out). Build it with
    :meth:`from_linear`; :func:`quantize_model` swaps every Linear of a model.

    Example:
        >>> q = QuantizedLinear.from_linear(Linear(64, 8), bits=4, group_size=32)
        >>> q
        QuantizedLinear(in_features=64, out_features=8, bits=4, group_size=32, bias=True)
    """

    def __init__(self, codes, scales, bits: int, in_features: int, bias=None, group_size=None):
        super().__init__()
        self.in_features, self.out_features = in_features, codes.shape[0]
        self.bits, self.group_size = bits, group_size
        self.register_buffer("codes", Tensor(codes))
        self.register_buffer("scales", Tensor(scales))
        if bias is None:
            self.register_parameter("bias", None)
        else:
            self.bias = bias

    @classmethod
    def from_linear(cls, linear: Linear, bits: int = 8, group_size: int | None = None):
        """The quantized copy of ``linear`` (its weight's device kept; bias stays float)."""
        weight = linear.weight.data
        xp = backend.get_array_module(weight)
        codes, scales = quantize_weight(weight, bits, group_size)
        bias = None if linear.bias is None else linear.bias
        return cls(xp.asarray(codes), xp.asarray(scales), bits, linear.in_features, bias,
                   group_size)  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        x = _as_tensor(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"{self!r} expects input of shape (..., {self.in_features}), got {tuple(x.shape)}"
            )
        y = _QuantizedMatmul(self.codes.data, self.scales.data, self.bits, self.out_features)(x)
        return y if self.bias is None else y + self.bias

    def dequantized_weight(self) -> np.ndarray:
        """The float32 weight (out, in) the codes stand for."""
        return dequantize_rows(self.codes.data, self.scales.data, self.bits, slice(None))

    def weight_nbytes(self) -> int:
        """Bytes of the stored weight: codes plus scales."""
        return int(self.codes.data.nbytes + self.scales.data.nbytes)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bits={self.bits}, group_size={self.group_size}, bias={self.bias is not None}"
        )


def Int8Linear(linear: Linear, group_size: int | None = None) -> QuantizedLinear:
    """``linear`` with int8 weights, one scale per output row (or per group of inputs).

    Example:
        >>> Int8Linear(Linear(8, 4)).bits
        8
    """
    return QuantizedLinear.from_linear(linear, 8, group_size)


def Int4Linear(linear: Linear, group_size: int = 32) -> QuantizedLinear:
    """``linear`` with 4-bit weights and one scale per 32 inputs of each output row.

    Example:
        >>> Int4Linear(Linear(64, 4)).weight_nbytes()        # 4 x 32 bytes + 4 x 2 scales
        160
    """
    return QuantizedLinear.from_linear(linear, 4, group_size)


def quantize_model(model: Module, bits: int = 8, group_size: int | None = None,
                   skip=()) -> Module:  # fmt: skip
    """Replace every :class:`~lmcore.nn.layers.Linear` of ``model`` (in place) by a :class:`QuantizedLinear`
    of ``bits`` bits, except those whose qualified name is in ``skip``; returns the
    model. A weight shared with an embedding (tied) stays float in the embedding.

    Example:
        >>> from lmcore.nn import Sequential, GELU
        >>> model = quantize_model(Sequential(Linear(8, 16), GELU(), Linear(16, 2)))
        >>> [type(m).__name__ for m in model]
        ['QuantizedLinear', 'GELU', 'QuantizedLinear']
    """
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, Linear) and name not in skip
    ]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        quantized = QuantizedLinear.from_linear(module, bits, group_size)
        if child.isdigit() and hasattr(parent, "__setitem__"):
            parent[int(child)] = quantized
        else:
            setattr(parent, child, quantized)
    return model
