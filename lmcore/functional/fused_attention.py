"""Fused attention and the operations around it, each one Function with a hand-written backward.

* :func:`scaled_dot_product_attention`: ``softmax(q k^T * scale + mask) v`` with optional
  causal masking and dropout on the attention weights, PyTorch's argument names.
* :func:`split_heads` and :func:`merge_heads`: between (B, T, C) activations and
  (B, H, T, D) heads, with ``C = H * D``.
* :func:`rotary_tables` and :func:`apply_rotary`: rotary position embedding (RoPE) of
  queries and keys.

Shapes: B batch, H heads, T (Tq, Tk) positions, D head width, C model width.

Example:
    >>> import numpy as np
    >>> from lmcore.autograd import Tensor
    >>> q = k = v = Tensor(np.random.default_rng(0).normal(size=(2, 4, 5, 8)), requires_grad=True)
    >>> out = scaled_dot_product_attention(q, k, v, causal=True)   # (B, H, T, D)
    >>> out.shape
    (2, 4, 5, 8)
    >>> out.sum().backward()
"""

from __future__ import annotations

import math

import numpy as np

from lmcore import backend, cuda
from lmcore.autograd import Function, Tensor, _data_of
from lmcore.functional.common import _as_tensor
from lmcore.rng import default_generator

__all__ = [
    "apply_rotary",
    "causal_mask",
    "merge_heads",
    "rotary_tables",
    "scaled_dot_product_attention",
    "split_heads",
]


# ---------------------------------------------------------------------------
# Scaled dot-product attention


def causal_mask(num_queries: int, num_keys: int, xp=np):
    """Boolean (Tq, Tk), True where query i may attend to key j: j <= i + (Tk - Tq).

    The last query sits at the last key, so with a cache of earlier keys (Tk > Tq)
    the new queries still see everything before them.

    Example:
        >>> causal_mask(2, 3).astype(int)
        array([[1, 1, 0],
               [1, 1, 1]])
    """
    return xp.tri(num_queries, num_keys, k=num_keys - num_queries, dtype=bool)


class ScaledDotProductAttention(Function):
    """``softmax(q k^T * scale + mask) v`` for q (B, H, Tq, D), k and v (B, H, Tk, D).

    Forward keeps the softmax probabilities P (B, H, Tq, Tk) for the backward pass.
    That costs O(Tq Tk) memory per head and layer, which dominates activation memory
    for long contexts, but the backward pass then needs no second softmax. The
    alternative, FlashAttention's, keeps only the row statistics (max and sum, O(T))
    and recomputes P block by block in backward: one extra q k^T product, in exchange
    for memory that grows linearly with T. On a CPU, with contexts of a few hundred
    tokens, keeping P is the faster choice; the CUDA chapter writes the other one.
    """

    def __init__(self, allowed, additive, scale, dropout_p, generator, causal=False,
                 keep_weights=False):  # fmt: skip
        self.allowed, self.additive = allowed, additive  # (.., Tq, Tk) bool / float, or None
        self.scale, self.dropout_p, self.generator = scale, dropout_p, generator
        # Only the causal mask (or none), no dropout: the CUDA kernels can take it.
        self.plain = additive is None and dropout_p == 0 and (allowed is None or causal)
        self.causal, self.keep_weights = causal, keep_weights

    def forward(self, q, k, v):
        self.path = "generic"
        if self.plain and cuda.wanted(q, k, v, contiguous=False):  # heads are strided views
            return self._kernel_forward(q, k, v)
        xp = backend.get_array_module(q)
        scores = q @ k.swapaxes(-1, -2)  # (B, H, Tq, Tk)
        if scores.dtype == np.float16:  # the softmax's sums in float32
            scores = scores.astype(np.float32)
        scores *= scores.dtype.type(self.scale)
        if self.additive is not None:
            scores += self.additive
        if self.allowed is not None:
            xp.copyto(scores, -xp.inf, where=~self.allowed)
        # Subtract the row max so exp never overflows; a row with every key masked has
        # max -inf, and a shift of 0 instead turns it into exp(-inf) = 0 everywhere.
        peak = scores.max(axis=-1, keepdims=True)  # (B, H, Tq, 1)
        peak[~xp.isfinite(peak)] = 0
        scores -= peak
        probs = xp.exp(scores, out=scores)
        total = probs.sum(axis=-1, keepdims=True)
        total[total == 0] = 1  # fully masked rows stay all zeros: no 0 / 0
        probs /= total
        probs = probs.astype(q.dtype, copy=False)
        weights = probs
        self.keep = None
        if self.dropout_p > 0:
            self.keep = self.generator.random(probs.shape) >= self.dropout_p  # (B, H, Tq, Tk)
            weights = probs * self.keep * probs.dtype.type(1 / (1 - self.dropout_p))
        out = weights @ v  # (B, H, Tq, D)
        self.q, self.k, self.v, self.probs, self.out = q, k, v, probs, out
        return out

    def _kernel_forward(self, q, k, v):
        """On the GPU: the flash kernels for long contexts (no (Tq, Tk) array at all), else
        cuBLAS products around the fused scale-mask-softmax kernel."""
        from lmcore.cuda import ops

        self.q, self.k, self.v = q, k, v
        lead, (tq, d), tk = q.shape[:-2], q.shape[-2:], k.shape[-2]
        if (
            tk >= cuda.FLASH_ATTENTION_MIN_KEYS
            and d in ops.FLASH_HEAD_DIMS
            and v.shape[-1] == d
            and not self.keep_weights
        ):
            self.path = "flash"
            xp = backend.get_array_module(q)
            q, k, v = self.q, self.k, self.v = tuple(xp.ascontiguousarray(a) for a in (q, k, v))
            flat = [a.reshape(-1, *a.shape[-2:]) for a in (q, k, v)]  # (BH, T, D)
            out, self.lse = ops.flash_attention_forward(*flat, self.causal, self.scale)
            self.out = out.reshape(*lead, tq, d)
            return self.out
        self.path = "softmax kernel"
        scores = q @ k.swapaxes(-1, -2)  # (B, H, Tq, Tk)
        self.probs = ops.attention_softmax_forward(scores, self.scale, self.causal, out=scores)
        self.out = self.probs @ v
        return self.out

    def _kernel_backward(self, grad):
        from lmcore.cuda import ops

        q, k, v = self.q, self.k, self.v
        grad = grad if grad.flags.c_contiguous else grad.copy()
        if self.path == "flash":
            flat = [a.reshape(-1, *a.shape[-2:]) for a in (q, k, v, self.out, grad)]
            dq, dk, dv = ops.flash_attention_backward(
                *flat[:3], flat[3], self.lse, flat[4], self.causal, self.scale
            )
            return dq.reshape(q.shape), dk.reshape(k.shape), dv.reshape(v.shape)
        need_q, need_k, need_v = self.needs_grad
        grad_v = self.probs.swapaxes(-1, -2) @ grad if need_v else None  # (B, H, Tk, D)
        if not (need_q or need_k):
            return None, None, grad_v
        grad_probs = grad @ v.swapaxes(-1, -2)  # (B, H, Tq, Tk)
        grad_scores = ops.attention_softmax_backward(
            self.probs, grad_probs, self.scale, self.causal, out=grad_probs
        )
        grad_q = grad_scores @ k if need_q else None
        grad_k = grad_scores.swapaxes(-1, -2) @ q if need_k else None
        return grad_q, grad_k, grad_v

    def backward(self, grad):  # grad: (B, H, Tq, D)
        if self.path != "generic":
            return self._kernel_backward(grad)
        q, k, v, probs = self.q, self.k, self.v, self.probs
        need_q, need_k, need_v = self.needs_grad
        dropout_scale = probs.dtype.type(1 / (1 - self.dropout_p))
        grad_v = None
        if need_v:
            weights = probs if self.keep is None else probs * self.keep * dropout_scale
            grad_v = weights.swapaxes(-1, -2) @ grad  # (B, H, Tk, D)
        if not (need_q or need_k):
            return None, None, grad_v
        grad_probs = grad @ v.swapaxes(-1, -2)  # (B, H, Tq, Tk)
        if self.keep is not None:
            grad_probs *= self.keep * dropout_scale
        # Softmax backward: dS = P * (dP - sum_j dP_j P_j). The row sum equals
        # sum(grad * out) over D (as FlashAttention computes it), a (Tq, D) product
        # instead of a (Tq, Tk) one, and it holds with dropout too.
        wide = np.float32 if grad.dtype == np.float16 else None  # sums of float16 in float32
        row_dot = (grad * self.out).sum(axis=-1, keepdims=True, dtype=wide)  # (B, H, Tq, 1)
        grad_probs -= row_dot
        grad_scores = grad_probs
        grad_scores *= probs
        grad_scores *= grad_scores.dtype.type(self.scale)
        grad_q = grad_scores @ k if need_q else None  # (B, H, Tq, D)
        grad_k = grad_scores.swapaxes(-1, -2) @ q if need_k else None  # (B, H, Tk, D)
        return grad_q, grad_k, grad_v


def scaled_dot_product_attention(
    query,
    key,
    value,
    mask=None,
    causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    generator=None,
    return_weights: bool = False,
    *,
    attn_mask=None,
    is_causal: bool = False,
):
    """Attention of every query over the keys, weighting the values, in one fused operation.

    Args:
        query: (B, H, Tq, D); key: (B, H, Tk, D); value: (B, H, Tk, Dv), Dv may differ
            from D (the output is (B, H, Tq, Dv)).
        mask: broadcastable to (B, H, Tq, Tk). Boolean: True where a query may attend
            (e.g. (B, 1, 1, Tk) for padding). Floating: added to the scores (0 or -inf,
            or any bias). It is a constant: no gradient flows into it.
        causal: also hide the future: query i sees keys j <= i + (Tk - Tq), so the last
            query sits at the last key (PyTorch's ``is_causal`` aligns the first query
            with the first key instead; the two agree when Tq == Tk).
        dropout_p: probability of zeroing each attention weight (apply it in training
            only); random numbers come from ``generator`` or lmcore.rng's default.
        scale: factor on the scores, 1 / sqrt(D) by default.
        return_weights: also return the attention probabilities (B, H, Tq, Tk), before
            dropout, as a tensor without gradient (for plots).
        attn_mask, is_causal: PyTorch's names, by keyword: ``attn_mask`` is ``mask``;
            ``is_causal`` hides the future with PyTorch's alignment (query i sees keys
            j <= i).

    A query row whose keys are all masked gives zeros and passes no gradient back.

    Example:
        >>> import numpy as np
        >>> x = Tensor(np.random.default_rng(0).normal(size=(1, 1, 3, 4)))
        >>> out, weights = scaled_dot_product_attention(x, x, x, causal=True, return_weights=True)
        >>> np.round(weights.numpy()[0, 0], 2)[0]       # the first query sees only itself
        array([1., 0., 0.])
    """
    if attn_mask is not None:
        if mask is not None:
            raise ValueError("pass the mask once, as mask= or as attn_mask=, not both")
        mask = attn_mask
    query, key, value = _as_tensor(query), _as_tensor(key), _as_tensor(value)
    _check_qkv(query, key, value)
    if not 0 <= dropout_p < 1:
        raise ValueError(f"dropout_p must lie in [0, 1), got {dropout_p}")
    xp = backend.get_array_module(query.data)
    num_queries, num_keys = query.shape[-2], key.shape[-2]
    allowed = additive = None
    if mask is not None:
        mask = xp.asarray(_data_of(mask))
        scores_shape = query.shape[:-1] + (num_keys,)
        try:
            fits = np.broadcast_shapes(mask.shape, scores_shape) == scores_shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"attention mask of shape {mask.shape} does not broadcast to the scores "
                f"(B, H, Tq, Tk) = {scores_shape}; a padding mask (B, Tk) should be "
                "reshaped to (B, 1, 1, Tk)."
            )
        if mask.dtype == bool:
            allowed = mask
        elif mask.dtype.kind == "f":
            additive = mask.astype(query.dtype, copy=False)
        else:
            raise TypeError(
                f"attention mask must be boolean (True = may attend) or floating (added to "
                f"the scores), got dtype {mask.dtype}"
            )
    if is_causal and num_queries != num_keys:  # PyTorch's alignment: query i sees j <= i
        first_aligned = xp.tri(num_queries, num_keys, k=0, dtype=bool)
        allowed = first_aligned if allowed is None else allowed & first_aligned
    elif is_causal:
        causal = True  # the two alignments agree
    only_causal = causal and mask is None and allowed is None
    if causal:
        future_hidden = causal_mask(num_queries, num_keys, xp)
        allowed = future_hidden if allowed is None else allowed & future_hidden
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    if dropout_p > 0 and generator is None:
        generator = default_generator(xp)
    function = ScaledDotProductAttention(
        allowed, additive, scale, dropout_p, generator, only_causal, return_weights
    )
    out = function(query, key, value)
    if return_weights:
        return out, Tensor._make(function.probs, None, 0)
    return out


def _check_qkv(query: Tensor, key: Tensor, value: Tensor) -> None:
    shapes = f"query {query.shape}, key {key.shape}, value {value.shape}"
    if query.ndim < 2 or not query.ndim == key.ndim == value.ndim:
        raise ValueError(
            f"scaled_dot_product_attention needs query, key and value of shape "
            f"(B, H, T, D) with the same number of dimensions, got {shapes}"
        )
    if key.shape[:-1] != value.shape[:-1] or query.shape[-1] != key.shape[-1]:
        raise ValueError(
            "scaled_dot_product_attention needs key (B, H, Tk, D) and value (B, H, Tk, Dv) "
            f"of the same length Tk, and query (B, H, Tq, D) of the keys' head width D, got {shapes}"
        )
    if query.shape[:-2] != key.shape[:-2]:
        raise ValueError(
            f"query, key and value must share their leading (B, H) dimensions, got {shapes}"
        )


# ---------------------------------------------------------------------------
# Heads


class SplitHeads(Function):
    def __init__(self, num_chunks, num_heads):
        self.num_chunks, self.num_heads = num_chunks, num_heads

    def forward(self, x):  # x: (B, T, n * C)
        batch, length, width = x.shape
        self.input_shape = x.shape
        head_dim = width // (self.num_chunks * self.num_heads)
        heads = x.reshape(batch, length, self.num_chunks, self.num_heads, head_dim)
        heads = heads.transpose(2, 0, 3, 1, 4)  # (n, B, H, T, D), a view
        return tuple(heads[i] for i in range(self.num_chunks))

    def backward(self, *grads):  # each (B, H, T, D)
        like = next(g for g in grads if g is not None)
        xp = backend.get_array_module(like)
        grad = xp.zeros(self.input_shape, dtype=like.dtype)
        batch, length, _ = self.input_shape
        view = grad.reshape(batch, length, self.num_chunks, self.num_heads, -1)
        for i, g in enumerate(grads):
            if g is not None:
                view[:, :, i] = g.transpose(0, 2, 1, 3)
        return grad


class MergeHeads(Function):
    def forward(self, x):  # x: (B, H, T, D)
        batch, heads, length, head_dim = self.input_shape = x.shape
        return x.transpose(0, 2, 1, 3).reshape(batch, length, heads * head_dim)

    def backward(self, grad):  # grad: (B, T, C)
        batch, heads, length, head_dim = self.input_shape
        return grad.reshape(batch, length, heads, head_dim).transpose(0, 2, 1, 3)


def split_heads(x, num_heads: int, num_chunks: int = 1) -> tuple[Tensor, ...]:
    """(B, T, n·C) → n tensors (B, H, T, D) with C = H·D: e.g. queries, keys and values
    from one fused projection (``num_chunks=3``). One operation, no copies in forward.

    Example:
        >>> qkv = Tensor(np.zeros((2, 5, 3 * 8)))
        >>> [t.shape for t in split_heads(qkv, num_heads=4, num_chunks=3)]
        [(2, 4, 5, 2), (2, 4, 5, 2), (2, 4, 5, 2)]
    """
    x = _as_tensor(x)
    if x.ndim != 3 or x.shape[-1] % (num_chunks * num_heads):
        raise ValueError(
            f"split_heads needs (B, T, {num_chunks} * H * D) with H = {num_heads}, "
            f"got shape {x.shape}; the last dimension must divide by {num_chunks * num_heads}."
        )
    return SplitHeads(num_chunks, num_heads)(x)


def merge_heads(x) -> Tensor:
    """(B, H, T, D) → (B, T, H·D), the heads side by side, as one operation.

    Example:
        >>> merge_heads(Tensor(np.zeros((2, 4, 5, 3)))).shape
        (2, 5, 12)
    """
    x = _as_tensor(x)
    if x.ndim != 4:
        raise ValueError(f"merge_heads needs (B, H, T, D), got shape {x.shape}")
    return MergeHeads()(x)


# ---------------------------------------------------------------------------
# Rotary position embedding


def rotary_tables(
    length: int, head_dim: int, base: float = 10000.0, offset: int = 0, xp=np, dtype=np.float32
):
    """cos and sin (T, D/2) of the angles ``(offset + t) * base^(-2i/D)`` for RoPE.

    Example:
        >>> cos, sin = rotary_tables(4, 8)
        >>> cos.shape, float(cos[0, 0]), float(sin[1, 0])     # position 1 turns pair 0 by 1 rad
        ((4, 4), 1.0, 0.8414709568023682)
    """
    if head_dim % 2:
        raise ValueError(f"rotary embedding needs an even head width, got {head_dim}")
    inverse_frequency = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    positions = np.arange(offset, offset + length, dtype=np.float64)
    angles = np.outer(positions, inverse_frequency)  # (T, D/2), in float64 for accuracy
    return xp.asarray(np.cos(angles), dtype=dtype), xp.asarray(np.sin(angles), dtype=dtype)


class Rotary(Function):
    def __init__(self, cos, sin):
        self.cos, self.sin = cos, sin  # (T, D/2)

    def forward(self, x):  # x: (..., T, D)
        return self._rotate(x, self.sin)

    def backward(self, grad):  # the inverse rotation: by -angle
        return self._rotate(grad, -self.sin)

    def _rotate(self, x, sin):
        xp = backend.get_array_module(x)
        half = x.shape[-1] // 2
        first, second = x[..., :half], x[..., half:]
        out = xp.empty(x.shape, dtype=x.dtype)  # C order, whatever x's strides
        low, high = out[..., :half], out[..., half:]
        turned = xp.multiply(second, sin)  # the one temporary, (..., T, D/2)
        xp.multiply(first, self.cos, out=low)
        low -= turned  # first cos - second sin
        xp.multiply(first, sin, out=turned)
        xp.multiply(second, self.cos, out=high)
        high += turned  # second cos + first sin
        return out


def apply_rotary(x, cos, sin) -> Tensor:
    """Rotate each pair (x_i, x_{i + D/2}) of x (..., T, D) by the angles in cos and sin
    (T, D/2), from :func:`rotary_tables` (the half-split pairing of GPT-NeoX and Llama).

    Rotating queries and keys by their positions makes q·k depend only on the distance
    between them (Su et al., 2021).

    Example:
        >>> cos, sin = rotary_tables(5, 4, dtype=np.float64)
        >>> apply_rotary(Tensor(np.ones((1, 2, 5, 4))), cos, sin).shape
        (1, 2, 5, 4)
    """
    x = _as_tensor(x)
    if x.ndim < 2 or cos.shape != (x.shape[-2], x.shape[-1] // 2) or x.shape[-1] % 2:
        raise ValueError(
            f"apply_rotary needs x (..., T, D) with D even and tables of shape (T, D/2), "
            f"got x {x.shape} and tables {cos.shape}"
        )
    return Rotary(cos.astype(x.dtype, copy=False), sin.astype(x.dtype, copy=False))(x)
