"""GPT: a decoder-only Transformer language model, with GPT-2's structure and weight layout.

Token embeddings (``wte``) plus position information (learned ``wpe``, fixed sinusoids,
or rotary embeddings inside attention), ``n_layer`` pre-norm blocks (``h.0`` ...), a
final LayerNorm (``ln_f``) and a projection to the vocabulary (``lm_head``), which by
default shares its weight with ``wte``. Parameter names match the Hugging Face ``gpt2``
checkpoints, so :meth:`GPT.load_gpt2` reads their ``model.safetensors`` directly.

Example:
    >>> import numpy as np
    >>> config = GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=4, n_embd=64)
    >>> model = GPT(config)
    >>> idx = np.zeros((3, 16), dtype=np.int64)                    # (B, T)
    >>> logits, loss = model(idx, targets=idx)
    >>> logits.shape                                               # (B, T, V)
    (3, 16, 65)
    >>> model.generate(idx[:1, :4], max_new_tokens=5, seed=0).shape
    (1, 9)
"""

from __future__ import annotations

import math
import os
import re
from collections import OrderedDict
from dataclasses import asdict, dataclass

import numpy as np

from lmcore import backend
from lmcore import functional as F
from lmcore.atomic import write_atomically
from lmcore.autograd import Tensor, no_grad
from lmcore.generate import sample_next
from lmcore.nn import init
from lmcore.nn.attention import SinusoidalPositionalEncoding
from lmcore.nn.layers import Dropout, Embedding, LayerNorm, Linear
from lmcore.nn.module import Module, ModuleList
from lmcore.nn.transformer import Block
from lmcore.optim import AdamW, weight_decay_groups
from lmcore.rng import default_generator

__all__ = ["GPT", "GPTConfig"]

POSITIONAL_KINDS = ("learned", "sinusoidal", "rotary")
GPT2_HEAD_DIM = 64  # every GPT-2 size: small 768/12, medium 1024/16, large 1280/20, xl 1600/25
# Weights that GPT-2 keeps in Conv1D layout (in, out): transposed of Linear's (out, in).
_CONV1D_WEIGHT = re.compile(r"h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight")
# Causal-mask buffers that some GPT-2 files carry; they hold no learned numbers.
_MASK_BUFFER = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)")


@dataclass
class GPTConfig:
    """The shape of a GPT.

    Args:
        vocab_size: number of token ids V.
        block_size: longest sequence (context) T the model takes.
        n_layer, n_head, n_embd: blocks, heads per block, model width C (n_head divides C).
        dropout: on embeddings, attention weights and residual branches, in training.
        bias: biases in Linear and LayerNorm layers (GPT-2: True).
        tie_weights: ``lm_head`` shares its weight with the token embedding ``wte``.
        positional: "learned" (GPT-2's ``wpe``), "sinusoidal" (fixed) or "rotary" (RoPE).
    """

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    bias: bool = True
    tie_weights: bool = True
    positional: str = "learned"

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_embd {self.n_embd} must divide by n_head {self.n_head}")
        if self.positional not in POSITIONAL_KINDS:
            raise ValueError(
                f"GPTConfig: positional must be one of {', '.join(POSITIONAL_KINDS)}, "
                f"got {self.positional!r}"
            )
        if self.positional == "rotary" and (self.n_embd // self.n_head) % 2:
            raise ValueError(
                f"GPTConfig: rotary positions need an even head width, got "
                f"n_embd / n_head = {self.n_embd // self.n_head}"
            )


class GPT(Module):
    """A GPT language model: token ids (B, T) → next-token logits (B, T, V).

    Weights start as in GPT-2: every Linear and Embedding weight from N(0, 0.02²), biases
    zero, and the projections that write into the residual stream (``c_proj``) from
    N(0, (0.02 / sqrt(2 n_layer))²), so the stream's variance stays steady with depth.
    """

    def __init__(self, config: GPTConfig, device=None, dtype=None):
        super().__init__()
        self.config = config
        c = config
        kinds = dict(device=device, dtype=dtype)
        self.wte = Embedding(c.vocab_size, c.n_embd, **kinds)
        if c.positional == "learned":
            self.wpe = Embedding(c.block_size, c.n_embd, **kinds)
        elif c.positional == "sinusoidal":
            self.wpe = SinusoidalPositionalEncoding(c.n_embd, c.block_size, **kinds)
        else:
            self.wpe = None
        self.drop = Dropout(c.dropout)
        rotary = c.positional == "rotary"
        self.h = ModuleList(
            Block(c.n_embd, c.n_head, c.dropout, c.bias, rotary=rotary, **kinds)
            for _ in range(c.n_layer)
        )
        self.ln_f = LayerNorm(c.n_embd, bias=c.bias, **kinds)
        self.lm_head = Linear(c.n_embd, c.vocab_size, bias=False, **kinds)
        if c.tie_weights:
            self.lm_head.weight = self.wte.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2's initialization (see the class docstring)."""
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, module in self.named_modules():
            if isinstance(module, (Linear, Embedding)):
                std = residual_std if name.endswith("c_proj") else 0.02
                init.normal_(module.weight, 0.0, std)
            if isinstance(module, Linear) and module.bias is not None:
                init.zeros_(module.bias)

    # -- forward ---------------------------------------------------------------------
    def forward(self, idx, targets=None, padding_mask=None):
        """Logits (B, T, V) for token ids ``idx`` (B, T); with ``targets`` (B, T) also the
        mean cross-entropy (targets of -100 are ignored). ``padding_mask`` (B, T) is True at
        real tokens."""
        idx = self._checked_ids(idx)
        xp = backend.get_array_module(idx)
        x = self.wte(idx)  # (B, T, C)
        if self.wpe is not None:
            x = x + self.wpe(xp.arange(idx.shape[1]))  # + (T, C)
        x = self.drop(x)
        for block in self.h:
            x = block(x, padding_mask)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits, targets)

    def _checked_ids(self, idx):
        """``idx`` as an integer array on the model's device, or a clear error."""
        xp = backend.get_array_module(self.wte.weight.data)
        idx = xp.asarray(idx.data if isinstance(idx, Tensor) else idx)
        if idx.ndim != 2 or idx.dtype.kind not in "iu":
            raise ValueError(
                f"GPT takes integer token ids of shape (B, T), got {idx.dtype} {idx.shape}; "
                "add a batch dimension with ids[None] for one sequence."
            )
        if idx.shape[1] > self.config.block_size:
            raise ValueError(
                f"GPT got a sequence of {idx.shape[1]} tokens, longer than its block_size "
                f"{self.config.block_size}; keep the last {self.config.block_size} tokens "
                "(ids[:, -block_size:]) or build the model with a larger block_size."
            )
        if idx.size:
            low, high = int(idx.min()), int(idx.max())
            if low < 0 or high >= self.config.vocab_size:
                bad = low if low < 0 else high
                raise IndexError(
                    f"GPT got token id {bad}, outside its vocabulary of {self.config.vocab_size} "
                    f"ids (0 to {self.config.vocab_size - 1}); use the tokenizer the model was "
                    "built for, or a larger vocab_size."
                )
        return idx

    # -- sizes and training ----------------------------------------------------------
    def num_parameters(self, non_embedding: bool = False, only_trainable: bool = False) -> int:
        """Parameters, the tied ``wte``/``lm_head`` weight counted once. With
        ``non_embedding`` the learned position embeddings are left out, the count that
        scaling laws use (the token embeddings stay, as they double as ``lm_head``).

        Example:
            >>> cfg = GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=4)
            >>> GPT(cfg).num_parameters() - GPT(cfg).num_parameters(non_embedding=True)
            32
        """
        count = super().num_parameters(only_trainable)
        if non_embedding and isinstance(self.wpe, Embedding):
            count -= self.wpe.weight.size
        return count

    def configure_optimizer(
        self, weight_decay: float = 0.1, lr: float = 6e-4, betas: tuple[float, float] = (0.9, 0.95)
    ) -> AdamW:
        """AdamW with weight decay on matrices and embeddings only (biases and LayerNorm
        weights are not decayed), GPT-2/3's recipe.

        Example:
            >>> cfg = GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=4)
            >>> [g["weight_decay"] for g in GPT(cfg).configure_optimizer(0.1).param_groups]
            [0.1, 0.0]
        """
        return AdamW(weight_decay_groups(self, weight_decay), lr=lr, betas=betas)

    # -- sampling ----------------------------------------------------------------------
    def generate(
        self,
        idx,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
    ):
        """Continue each sequence of ``idx`` (B, T) by ``max_new_tokens`` sampled tokens;
        returns the ids (B, T + max_new_tokens) as an integer array on the model's device.

        Each step runs the whole (cropped to ``block_size``) context again: simple, and
        quadratic in length; a key-value cache avoids that. ``temperature`` divides the
        logits (0 means always the most likely token); ``top_k`` samples among the k most
        likely tokens only; ``seed`` fixes the draws (else lmcore.rng's generator is used).
        Runs in evaluation mode (no dropout) and restores the mode afterwards.
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be a positive number of tokens, got {top_k}")
        idx = self._checked_ids(idx)
        xp = backend.get_array_module(idx)
        generator = default_generator(xp) if seed is None else xp.random.default_rng(seed)
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                for _ in range(max_new_tokens):
                    logits = self(idx[:, -self.config.block_size :]).data[:, -1, :]  # (B, V)
                    next_ids = sample_next(logits, temperature, top_k, generator)  # (B, 1)
                    idx = xp.concatenate([idx, next_ids.astype(idx.dtype)], axis=1)
        finally:
            self.train(was_training)
        return idx

    # -- GPT-2 weights -----------------------------------------------------------------
    @classmethod
    def from_gpt2_state_dict(cls, state_dict, n_head: int | None = None, device=None, dtype=None):
        """A GPT holding the weights of a Hugging Face GPT-2 state dict (arrays by name).

        Keys may carry the ``transformer.`` prefix; causal-mask buffers (``h.N.attn.bias``)
        are ignored; ``lm_head.weight``, when present and different from ``wte.weight``,
        unties the two. Vocabulary, context, width and depth come from the shapes. The
        number of heads cannot: it defaults to width / 64, right for every GPT-2 size
        (small 12, medium 16, large 20, xl 25); pass ``n_head`` for anything else. The
        dtype defaults to the checkpoint's (float32 for GPT-2).
        """
        weights = {k: _numpy(v) for k, v in _strip_gpt2_names(state_dict).items()}
        if "wte.weight" not in weights or "wpe.weight" not in weights:
            raise KeyError(
                "not a GPT-2 state dict: it lacks wte.weight or wpe.weight; keys found: "
                + ", ".join(list(weights)[:8])
            )
        vocab_size, n_embd = weights["wte.weight"].shape
        layers = {int(m.group(1)) for k in weights if (m := re.match(r"h\.(\d+)\.", k))}
        if n_head is None:
            if n_embd % GPT2_HEAD_DIM:
                raise ValueError(
                    f"cannot infer the number of heads of a width-{n_embd} model (GPT-2 sizes "
                    f"have heads of width {GPT2_HEAD_DIM}); pass n_head=."
                )
            n_head = n_embd // GPT2_HEAD_DIM
        lm_head = weights.pop("lm_head.weight", None)
        tied = lm_head is None or np.array_equal(lm_head, weights["wte.weight"])
        config = GPTConfig(
            vocab_size=vocab_size,
            block_size=weights["wpe.weight"].shape[0],
            n_layer=len(layers),
            n_head=n_head,
            n_embd=n_embd,
            tie_weights=tied,
        )
        model = cls(config, device=device, dtype=dtype or weights["wte.weight"].dtype)
        ours = {k: v.T if _CONV1D_WEIGHT.fullmatch(k) else v for k, v in weights.items()}
        ours["lm_head.weight"] = ours["wte.weight"] if tied else lm_head
        model.load_state_dict(ours)
        return model

    @classmethod
    def load_gpt2(cls, path, n_head: int | None = None, device=None, dtype=None) -> GPT:
        """A GPT from a GPT-2 ``model.safetensors`` file (see :meth:`from_gpt2_state_dict`)."""
        from safetensors.numpy import load_file

        return cls.from_gpt2_state_dict(load_file(os.fspath(path)), n_head, device, dtype)

    def to_gpt2_state_dict(self) -> OrderedDict:
        """The weights as NumPy arrays in the Hugging Face GPT-2 layout: HF names, Conv1D
        weights transposed to (in, out), no causal-mask buffers, ``lm_head.weight`` only
        when it is not tied to ``wte``. Needs ``positional="learned"`` and ``bias=True``."""
        if self.config.positional != "learned" or not self.config.bias:
            raise ValueError(
                "the GPT-2 layout needs learned positions and biases; this model has "
                f"positional={self.config.positional!r}, bias={self.config.bias}. Save it "
                "with state_dict() instead."
            )
        result = OrderedDict()
        for name, array in self.state_dict().items():
            if name == "lm_head.weight" and self.config.tie_weights:
                continue
            array = _numpy(array)
            result[name] = np.ascontiguousarray(
                array.T if _CONV1D_WEIGHT.fullmatch(name) else array
            )
        return result

    def save_gpt2(self, path) -> None:
        """Write :meth:`to_gpt2_state_dict` to a safetensors file, atomically (a partial file
        never replaces a good one). The metadata says ``format: pt`` as in GPT-2's own
        files, so Hugging Face loaders accept it too."""
        from safetensors.numpy import save_file

        write_atomically(
            path,
            lambda temporary: save_file(
                self.to_gpt2_state_dict(), temporary, metadata={"format": "pt"}
            ),
        )

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in asdict(self.config).items())


def _strip_gpt2_names(state_dict) -> dict:
    """HF GPT-2 names without the ``transformer.`` prefix and without mask buffers."""
    weights = {}
    for key, value in state_dict.items():
        name = key.removeprefix("transformer.")
        if not _MASK_BUFFER.fullmatch(name):
            weights[name] = value
    return weights


def _numpy(array) -> np.ndarray:
    """A NumPy array from a NumPy or CuPy array (or anything NumPy can read)."""
    if hasattr(array, "__cuda_array_interface__"):
        return backend.to_device(array, "cpu")
    return np.asarray(array)
