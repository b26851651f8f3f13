"""Multi-head self-attention and positional encodings.

* :class:`MultiHeadAttention`: one fused q, k, v projection (GPT-2's ``c_attn``), the
  fused attention operation of :mod:`lmcore.functional.fused_attention`, an output projection (``c_proj``).
* :class:`KVCache`: the keys and values of earlier positions, kept for generation so that
  each new token attends to them without computing them again.
* :class:`RotaryEmbedding`: rotary position embedding (RoPE) of queries and keys.
* :class:`SinusoidalPositionalEncoding`: the fixed sine and cosine position vectors of
  "Attention Is All You Need", called like a position :class:`~lmcore.nn.layers.Embedding`.

Example:
    >>> import numpy as np
    >>> from lmcore.autograd import Tensor
    >>> attn = MultiHeadAttention(embed_dim=32, num_heads=4, causal=True)
    >>> x = Tensor(np.random.default_rng(0).normal(size=(2, 10, 32)).astype(np.float32))
    >>> attn(x).shape                                   # (B, T, C)
    (2, 10, 32)
"""

from __future__ import annotations

import numpy as np

from lmcore import backend
from lmcore.autograd import Tensor
from lmcore.functional.fused_attention import apply_rotary, merge_heads, rotary_tables, split_heads
from lmcore.functional.fused_attention import scaled_dot_product_attention as attention
from lmcore.nn.layers import Dropout, Linear
from lmcore.nn.module import Module

__all__ = [
    "KVCache",
    "MultiHeadAttention",
    "RotaryEmbedding",
    "SinusoidalPositionalEncoding",
    "document_mask",
]


def document_mask(position_ids):
    """(B, T, T) boolean, True where query i and key j lie in the same document of a
    packed row: ``position_ids`` (B, T) count from 0 within each document, and a document
    starts at the first position and wherever the count does not go on by one (a reset to
    0, as packing writes it). With a causal mask on top, each document attends to itself
    alone, as if it were its own sequence.

    Example:
        >>> document_mask(np.array([[0, 1, 0, 1, 2]]))[0].astype(int)
        array([[1, 1, 0, 0, 0],
               [1, 1, 0, 0, 0],
               [0, 0, 1, 1, 1],
               [0, 0, 1, 1, 1],
               [0, 0, 1, 1, 1]])
    """
    xp = backend.get_array_module(position_ids)
    positions = xp.asarray(position_ids)
    if positions.ndim != 2 or positions.dtype.kind not in "iu":
        raise ValueError(
            f"position_ids must be integers of shape (B, T), got {positions.dtype} "
            f"{positions.shape}"
        )
    starts = xp.ones(positions.shape, dtype=bool)
    starts[:, 1:] = positions[:, 1:] != positions[:, :-1] + 1
    document = xp.cumsum(starts, axis=1)  # (B, T): which document each position is in
    return document[:, :, None] == document[:, None, :]


class RotaryEmbedding(Module):
    """Rotates queries or keys (B, H, T, D) by angles proportional to their positions.

    No parameters: the cos and sin tables are computed for the positions asked for
    (``offset`` to ``offset + T``, so a key-value cache can continue where it stopped)
    and kept for the next call with the same positions.

    Example:
        >>> rope = RotaryEmbedding(head_dim=8)
        >>> rope(Tensor(np.ones((1, 2, 5, 8), np.float32))).shape
        (1, 2, 5, 8)
    """

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RotaryEmbedding needs an even head width, got {head_dim}")
        self.head_dim, self.base = head_dim, base
        self._tables_key = self._tables = None

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        if x.ndim < 2 or x.shape[-1] != self.head_dim:
            raise ValueError(
                f"{self!r} expects (..., T, {self.head_dim}), got shape {tuple(x.shape)}"
            )
        xp = backend.get_array_module(x.data)
        key = (xp.__name__, x.dtype, offset, x.shape[-2])
        if key != self._tables_key:
            self._tables = rotary_tables(
                x.shape[-2], self.head_dim, self.base, offset, xp=xp, dtype=x.dtype
            )
            self._tables_key = key
        return apply_rotary(x, *self._tables)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base:g}"


class SinusoidalPositionalEncoding(Module):
    """Fixed position vectors: ``pe[t, 2i] = sin(t / 10000^(2i/C))``, ``pe[t, 2i+1] = cos(...)``.

    Called with position ids (T,) or (B, T) it returns their vectors (..., C), just as a
    learned position Embedding would, so the two are interchangeable. Nothing is learned;
    the table (max_len, C) is a buffer that is not saved in the state_dict.

    Example:
        >>> pe = SinusoidalPositionalEncoding(embed_dim=6, max_len=16)
        >>> pe(np.arange(4)).shape
        (4, 6)
        >>> pe(np.arange(1)).numpy()[0]                     # position 0: sin 0, cos 0
        array([0., 1., 0., 1., 0., 1.], dtype=float32)
    """

    def __init__(
        self, embed_dim: int, max_len: int, base: float = 10000.0, device=None, dtype=None
    ):
        super().__init__()
        if embed_dim % 2:
            raise ValueError(
                f"SinusoidalPositionalEncoding needs an even embed_dim, got {embed_dim}"
            )
        self.embed_dim, self.max_len = embed_dim, max_len
        angles = np.outer(
            np.arange(max_len, dtype=np.float64),
            base ** (-np.arange(0, embed_dim, 2, dtype=np.float64) / embed_dim),
        )  # (max_len, C/2)
        table = np.empty((max_len, embed_dim))
        table[:, 0::2], table[:, 1::2] = np.sin(angles), np.cos(angles)
        array = backend.xp(device).asarray(table, dtype=np.dtype(dtype or np.float32))
        self.register_buffer("table", array, persistent=False)

    def forward(self, positions) -> Tensor:
        positions = backend.get_array_module(self.table.data).asarray(
            positions.data if isinstance(positions, Tensor) else positions
        )
        if positions.size and (int(positions.min()) < 0 or int(positions.max()) >= self.max_len):
            raise IndexError(
                f"{self!r} covers positions 0 to {self.max_len - 1}, got positions up to "
                f"{int(positions.max())}; build it with a larger max_len."
            )
        return Tensor._make(self.table.data[positions], None, 0)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, max_len={self.max_len}"


class KVCache:
    """Keys and values that a model's attention layers computed for earlier positions,
    kept so that a new token attends to them without computing them again.

    Each layer has preallocated arrays (B, H, max_len, D) filled from position 0 on.
    The methods follow the ``Cache`` of Hugging Face ``transformers``:
    ``update(key, value, layer_idx)`` appends a layer's new keys and values and returns
    all it holds, ``get_seq_length()`` counts the positions held, ``reorder_cache``
    picks rows for beam search. For inference only: it keeps arrays, not graphs.

    Example:
        >>> cache = KVCache(num_layers=2, batch_size=1, num_heads=4, max_len=16, head_dim=8)
        >>> k = v = Tensor(np.ones((1, 4, 3, 8), np.float32))           # (B, H, T, D)
        >>> keys, values = cache.update(k, v, layer_idx=0)
        >>> keys.shape, cache.get_seq_length()
        ((1, 4, 3, 8), 3)
        >>> keys, values = cache.update(k[:, :, :1], v[:, :, :1], layer_idx=0)
        >>> keys.shape                                                   # 3 cached + 1 new
        (1, 4, 4, 8)
    """

    def __init__(
        self,
        num_layers: int,
        batch_size: int,
        num_heads: int,
        max_len: int,
        head_dim: int,
        device=None,
        dtype=None,
    ):
        xp = backend.xp(device)
        shape = (batch_size, num_heads, max_len, head_dim)
        dtype = np.dtype(dtype or np.float32)
        self.keys = [xp.empty(shape, dtype) for _ in range(num_layers)]
        self.values = [xp.empty(shape, dtype) for _ in range(num_layers)]
        self.lengths = [0] * num_layers  # positions held, per layer
        self.batch_size, self.num_heads, self.max_len, self.head_dim = shape

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """How many positions layer ``layer_idx`` holds."""
        return self.lengths[layer_idx]

    def update(self, key: Tensor, value: Tensor, layer_idx: int) -> tuple[Tensor, Tensor]:
        """Append ``key`` and ``value`` (B, H, T, D) to layer ``layer_idx``; return all its
        keys and values (B, H, held + T, D), views of the cache (no copy)."""
        if key.requires_grad or value.requires_grad:
            raise RuntimeError(
                "KVCache keeps arrays for inference, not graphs: run the model under "
                "lmcore.no_grad() to use a cache (generation does), or without "
                "past_key_values to train."
            )
        start, length = self.lengths[layer_idx], key.shape[-2]
        expected = (self.batch_size, self.num_heads, length, self.head_dim)
        if key.shape != expected or value.shape != expected:
            raise ValueError(
                f"KVCache holds (B, H, T, D) = ({self.batch_size}, {self.num_heads}, T, "
                f"{self.head_dim}); got keys {tuple(key.shape)} and values {tuple(value.shape)}"
            )
        if start + length > self.max_len:
            raise ValueError(
                f"KVCache of {self.max_len} positions: layer {layer_idx} holds {start} and "
                f"got {length} more; crop the context and start a new cache."
            )
        end = start + length
        self.keys[layer_idx][:, :, start:end] = key.data
        self.values[layer_idx][:, :, start:end] = value.data
        self.lengths[layer_idx] = end
        return Tensor(self.keys[layer_idx][:, :, :end]), Tensor(self.values[layer_idx][:, :, :end])

    def reorder_cache(self, beam_idx) -> None:
        """Row ``i`` becomes what row ``beam_idx[i]`` held (``beam_idx``: (B,) row ids), as
        beam search keeps the continuations of some beams and drops others."""
        for keys, values, end in zip(self.keys, self.values, self.lengths):
            rows = backend.get_array_module(keys).asarray(beam_idx)
            keys[:, :, :end] = keys[rows, :, :end]
            values[:, :, :end] = values[rows, :, :end]

    def reset(self) -> None:
        """Forget every position (the arrays stay, to be filled again)."""
        self.lengths = [0] * len(self.lengths)

    def __repr__(self) -> str:
        return (
            f"KVCache(num_layers={len(self.keys)}, batch_size={self.batch_size}, "
            f"num_heads={self.num_heads}, max_len={self.max_len}, head_dim={self.head_dim}, "
            f"held={self.lengths})"
        )


class MultiHeadAttention(Module):
    """Multi-head self-attention: (B, T, C) → (B, T, C).

    ``c_attn`` (C → 3C) makes queries, keys and values for all heads at once, each
    head of width D = C / num_heads attends on its own, and ``c_proj`` (C → C) mixes the
    heads' outputs. Parameter names and shapes follow GPT-2 (with Linear's (out, in)
    weights where GPT-2 stores (in, out)).

    Args:
        embed_dim: model width C.
        num_heads: number of heads H; must divide C.
        dropout: dropout on the attention weights and on the output, in training.
        bias: whether the projections have biases.
        causal: each position attends only to itself and earlier ones (a decoder, the
            default); False lets every position see the whole sequence (an encoder).
        rotary: rotate queries and keys by position (RoPE).
        layer_idx: where the layer sits in its model, its slot in a :class:`KVCache`.

    Set ``keep_weights = True`` to keep the attention probabilities of the last call in
    ``last_weights`` (B, H, T, T), for plotting.

    Example:
        >>> attn = MultiHeadAttention(16, 2)
        >>> attn.keep_weights = True
        >>> _ = attn(Tensor(np.ones((1, 3, 16), np.float32)))
        >>> attn.last_weights.shape
        (1, 2, 3, 3)
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        causal: bool = True,
        rotary: bool = False,
        device=None,
        dtype=None,
        layer_idx: int | None = None,
    ):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(
                f"MultiHeadAttention: embed_dim {embed_dim} must divide by num_heads {num_heads}"
            )
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.dropout, self.causal = dropout, causal
        self.c_attn = Linear(embed_dim, 3 * embed_dim, bias=bias, device=device, dtype=dtype)
        self.c_proj = Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        self.resid_dropout = Dropout(dropout)
        self.rotary = RotaryEmbedding(self.head_dim) if rotary else None
        self.keep_weights = False
        self.last_weights: Tensor | None = None
        self.layer_idx = layer_idx

    def forward(
        self, x: Tensor, padding_mask=None, past_key_values: KVCache | None = None
    ) -> Tensor:
        """``x`` (B, T, C). ``past_key_values``: a :class:`KVCache` holding the keys and
        values of the positions before ``x`` (inference only); ``x`` continues them, and
        its own keys and values are added to the cache. ``padding_mask`` (B, Tk), True at
        real tokens, False at padding, over the keys: the cached positions, then ``x``'s
        (no query attends to padding). It may also be (B, Tq, Tk), True where query i may
        see key j, such as :func:`document_mask` of packed sequences; the causal mask of a
        decoder still applies on top of it."""
        if x.ndim != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(
                f"{type(self).__name__}(embed_dim={self.embed_dim}) expects input (B, T, "
                f"{self.embed_dim}), got {tuple(x.shape)}"
            )
        batch, length, _ = x.shape
        start = 0  # positions held in the cache, before x
        if past_key_values is not None:
            if self.layer_idx is None:
                raise ValueError(
                    f"{type(self).__name__} needs its layer_idx (its slot in the KVCache) to "
                    "use past_key_values; build it with layer_idx="
                )
            start = past_key_values.get_seq_length(self.layer_idx)
        mask = None
        if padding_mask is not None:
            padding_mask = backend.get_array_module(x.data).asarray(
                padding_mask.data if isinstance(padding_mask, Tensor) else padding_mask
            )
            shapes = ((batch, start + length), (batch, length, start + length))
            if padding_mask.shape not in shapes or padding_mask.dtype != bool:
                raise ValueError(
                    f"{type(self).__name__}: padding_mask must be boolean of shape (B, Tk) = "
                    f"{shapes[0]}, True at real tokens, or (B, Tq, Tk) = {shapes[1]}, True "
                    f"where a query may see a key; got {padding_mask.dtype} {padding_mask.shape}"
                )
            if padding_mask.ndim == 2:
                mask = padding_mask[:, None, None, :]  # (B, 1, 1, Tk): hide padded keys
            else:
                mask = padding_mask[:, None]  # (B, 1, Tq, Tk): the same for every head
        q, k, v = split_heads(self.c_attn(x), self.num_heads, num_chunks=3)  # 3 x (B, H, T, D)
        if self.rotary is not None:
            q, k = self.rotary(q, start), self.rotary(k, start)
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)  # 2 x (B, H, start + T, D)
        result = attention(
            q,
            k,
            v,
            mask=mask,
            causal=self.causal,
            dropout_p=self.dropout if self.training else 0.0,
            return_weights=self.keep_weights,
        )
        if self.keep_weights:
            result, self.last_weights = result
        y = merge_heads(result)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, "
            f"causal={self.causal}"
        )
