"""The Transformer block of GPT-2: pre-norm attention and MLP, each on a residual branch.

Two switches give the arrangements that GPT-2's is measured against: ``norm_first=False``
puts each LayerNorm after the residual addition, as the original Transformer did
(post-norm), and ``residual=False`` drops the identity path, so the block is a plain
composition of its two sub-layers.

Example:
    >>> import numpy as np
    >>> from lmcore.autograd import Tensor
    >>> block = Block(embed_dim=32, num_heads=4)
    >>> block(Tensor(np.zeros((2, 7, 32), np.float32))).shape     # (B, T, C)
    (2, 7, 32)
"""

from __future__ import annotations

from lmcore import functional as F
from lmcore.autograd import Tensor
from lmcore.nn.attention import KVCache, MultiHeadAttention
from lmcore.nn.layers import GELU, Dropout, LayerNorm, Linear
from lmcore.nn.module import Module

__all__ = ["MLP", "Block"]


class MLP(Module):
    """Position-wise feed-forward network: Linear(C, 4C), GELU (tanh form), Linear(4C, C),
    dropout. Names follow GPT-2 (``c_fc``, ``c_proj``).

    Example:
        >>> MLP(8).c_fc.weight.shape                       # (hidden, C) = (4C, C)
        (32, 8)
    """

    def __init__(
        self,
        embed_dim: int,
        hidden_dim: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        hidden_dim = hidden_dim or 4 * embed_dim
        self.c_fc = Linear(embed_dim, hidden_dim, bias=bias, device=device, dtype=dtype)
        self.gelu = GELU()
        self.c_proj = Linear(hidden_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C) -> (B, T, 4C) -> (B, T, C)
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(Module):
    """``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``: the normalization sits inside each
    residual branch (pre-norm, as GPT-2), so the residual stream itself is never rescaled.

    Args are those of :class:`~lmcore.nn.attention.MultiHeadAttention`, plus ``eps`` of the two
    LayerNorms (1e-5, GPT-2's), and two switches, for comparisons, that rearrange the same
    parameters:

    - ``norm_first=False`` (post-norm, the original Transformer's, PyTorch's default in
      ``nn.TransformerEncoderLayer``): ``ln_1(x + attn(x))``, then ``ln_2(x + mlp(x))``.
    - ``residual=False`` drops the ``x +``: ``attn(ln_1(x))`` then ``mlp(ln_2(x))``
      (pre-norm), or ``ln_1(attn(x))`` then ``ln_2(mlp(x))`` (post-norm).

    ``past_key_values`` (a :class:`~lmcore.nn.attention.KVCache`) goes to the attention,
    whose slot in it is ``layer_idx``.

    Example:
        >>> [name for name, _ in Block(8, 2).named_children()]
        ['ln_1', 'attn', 'ln_2', 'mlp']
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        causal: bool = True,
        rotary: bool = False,
        eps: float = 1e-5,
        device=None,
        dtype=None,
        layer_idx: int | None = None,
        norm_first: bool = True,
        residual: bool = True,
    ):
        super().__init__()
        self.norm_first, self.residual = norm_first, residual
        kinds = dict(device=device, dtype=dtype)
        self.ln_1 = LayerNorm(embed_dim, eps=eps, bias=bias, **kinds)
        self.attn = MultiHeadAttention(
            embed_dim,
            num_heads,
            dropout,
            bias,
            causal=causal,
            rotary=rotary,
            layer_idx=layer_idx,
            **kinds,
        )
        self.ln_2 = LayerNorm(embed_dim, eps=eps, bias=bias, **kinds)
        self.mlp = MLP(embed_dim, dropout=dropout, bias=bias, **kinds)

    def forward(
        self, x: Tensor, padding_mask=None, past_key_values: KVCache | None = None
    ) -> Tensor:  # (B, T, C) -> (B, T, C)
        if not (self.norm_first and self.residual):
            return self._other_arrangement(x, padding_mask, past_key_values)
        branch = self.attn(self.ln_1(x), padding_mask, past_key_values)
        # x + branch, and ln_2 of it, in one operation (one kernel on a GPU)
        x, normed = F.residual_layer_norm(
            x, branch, self.ln_2.weight, self.ln_2.bias, self.ln_2.eps
        )
        return x + self.mlp(normed)

    def _other_arrangement(self, x, padding_mask, past_key_values) -> Tensor:
        """Post-norm, or no residual path (see the class docstring)."""
        sublayers = (
            (self.ln_1, lambda h: self.attn(h, padding_mask, past_key_values)),
            (self.ln_2, self.mlp),
        )
        for norm, layer in sublayers:
            if self.norm_first:  # no residual: h -> layer(norm(h))
                x = layer(norm(x))
            elif self.residual:  # post-norm: h -> norm(h + layer(h))
                x = norm(x + layer(x))
            else:
                x = norm(layer(x))
        return x

    def extra_repr(self) -> str:
        settings = [] if self.norm_first else ["norm_first=False"]
        return ", ".join(settings + ([] if self.residual else ["residual=False"]))
