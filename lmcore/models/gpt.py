"""GPT: a decoder-only Transformer language model, with GPT-2's structure and weight layout.

Token embeddings (``wte``) plus position information (learned ``wpe``, fixed sinusoids,
or rotary embeddings inside attention), ``n_layer`` pre-norm blocks (``h.0`` ...), a
final LayerNorm (``ln_f``) and a projection to the vocabulary (``lm_head``), which by
default shares its weight with ``wte``. Parameter names match the Hugging Face ``gpt2``
checkpoints: :meth:`GPT.from_pretrained` and :meth:`GPT.save_pretrained` read and write
the directories of ``transformers``' ``GPT2LMHeadModel`` (``config.json`` and
``model.safetensors``), and :meth:`GPT.load_gpt2` reads a lone ``model.safetensors``.
Generation reads the prompt once and then one token a step, keeping every layer's keys
and values in a :class:`~lmcore.nn.attention.KVCache` (:meth:`GPT.next_token_logits`).

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

import json
import math
import os
import re
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lmcore import backend
from lmcore import functional as F
from lmcore.atomic import write_atomically
from lmcore.autograd import Tensor
from lmcore.generate import generate
from lmcore.models.token_ids import checked_token_ids
from lmcore.nn import init
from lmcore.nn.attention import KVCache, SinusoidalPositionalEncoding, document_mask
from lmcore.nn.layers import Dropout, Embedding, LayerNorm, Linear
from lmcore.nn.module import Module, ModuleList
from lmcore.nn.transformer import Block
from lmcore.optim import AdamW, weight_decay_groups

__all__ = ["GPT", "GPTConfig"]

POSITIONAL_KINDS = ("learned", "sinusoidal", "rotary")
GPT2_HEAD_DIM = 64  # every GPT-2 size: small 768/12, medium 1024/16, large 1280/20, xl 1600/25
# Weights that GPT-2 keeps in Conv1D layout (in, out): transposed of Linear's (out, in).
_CONV1D_WEIGHT = re.compile(r"h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight")
# Causal-mask buffers that some GPT-2 files carry; they hold no learned numbers.
_MASK_BUFFER = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)")
GPT2_END_OF_TEXT = 50256  # the id of GPT-2's <|endoftext|>, its bos and eos token
# GPT2Config's defaults in transformers, for what a config.json leaves out.
_HF_GPT2_DEFAULTS = {
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "n_inner": None,
    "activation_function": "gelu_new",
    "resid_pdrop": 0.1,
    "embd_pdrop": 0.1,
    "attn_pdrop": 0.1,
    "layer_norm_epsilon": 1e-5,
    "initializer_range": 0.02,
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
    "add_cross_attention": False,
    "tie_word_embeddings": True,
}
_GELU_TANH = ("gelu_new", "gelu_pytorch_tanh")  # transformers' names of GELU's tanh form
# Weight files of other formats that a Hugging Face directory may hold instead.
_OTHER_WEIGHT_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5")


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
        norm_first, residual: the arrangement of each :class:`~lmcore.nn.transformer.Block`:
            GPT-2's pre-norm residual blocks (True, True), post-norm (``norm_first=False``)
            or no identity path (``residual=False``), for comparing them; only GPT-2's
            arrangement exchanges weights with GPT-2 checkpoints.
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
    norm_first: bool = True
    residual: bool = True

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
            Block(
                c.n_embd,
                c.n_head,
                c.dropout,
                c.bias,
                rotary=rotary,
                layer_idx=i,
                norm_first=c.norm_first,
                residual=c.residual,
                **kinds,
            )
            for i in range(c.n_layer)
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
    def forward(
        self, idx, targets=None, padding_mask=None, past_key_values=None, position_ids=None
    ):
        """Logits (B, T, V) for token ids ``idx`` (B, T); with ``targets`` (B, T) also the
        mean cross-entropy (targets of -100 are ignored). ``padding_mask`` (B, T) is True at
        real tokens.

        ``past_key_values`` (a :class:`~lmcore.nn.attention.KVCache`, from
        :meth:`new_cache`; inference only) holds the tokens before ``idx``: ``idx`` then
        continues them, at positions ``start`` to ``start + T`` where ``start`` is
        ``past_key_values.get_seq_length()``, and adds its keys and values to the cache.

        ``position_ids`` (B, T) are for rows that pack several examples (see
        :func:`lmcore.data.instructions.pack_examples`): each example's positions count
        from 0, and each example attends to its own tokens only
        (:func:`~lmcore.nn.attention.document_mask`), so its logits are those of the
        example alone. Rotary positions depend on distances only and need the mask alone.
        """
        idx = self._checked_ids(idx)
        xp = backend.get_array_module(idx)
        start = 0 if past_key_values is None else past_key_values.get_seq_length()
        self._check_length(start, idx.shape[1])
        positions = xp.arange(start, start + idx.shape[1])  # (T,)
        if position_ids is not None:
            positions, padding_mask = self._packed(position_ids, padding_mask, idx, past_key_values)
        x = self.wte(idx)  # (B, T, C)
        if self.wpe is not None:
            x = x + self.wpe(positions)  # + (T, C), or (B, T, C) when packed
        x = self.drop(x)
        for block in self.h:
            x = block(x, padding_mask, past_key_values)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits, targets)

    def _packed(self, position_ids, padding_mask, idx, past_key_values):
        """Positions (B, T) and the attention mask (B, T, T) of packed rows."""
        if past_key_values is not None:
            raise ValueError(
                "GPT: position_ids are for packed rows read whole; they cannot continue a "
                "KVCache (past_key_values)"
            )
        xp = backend.get_array_module(idx)
        positions = xp.asarray(
            position_ids.data if isinstance(position_ids, Tensor) else position_ids
        )
        if positions.shape != idx.shape or positions.dtype.kind not in "iu":
            raise ValueError(
                f"GPT: position_ids must be integers of the shape of idx {tuple(idx.shape)}, "
                f"got {positions.dtype} {tuple(positions.shape)}"
            )
        if positions.size and not 0 <= int(positions.min()) <= int(positions.max()) < (
            self.config.block_size
        ):
            raise ValueError(
                f"GPT: position_ids must lie in 0 to block_size - 1 = "
                f"{self.config.block_size - 1}, got {int(positions.min())} to "
                f"{int(positions.max())}"
            )
        mask = document_mask(positions)  # (B, T, T)
        if padding_mask is not None:
            padding = xp.asarray(
                padding_mask.data if isinstance(padding_mask, Tensor) else padding_mask
            )
            mask = mask & padding.astype(bool)[:, None, :]
        return positions, mask

    def _check_length(self, start: int, length: int) -> None:
        """A clear error when positions ``start`` to ``start + length`` overrun the block."""
        block = self.config.block_size
        if start + length > block:
            cached = f" after {start} cached ones" if start else ""
            raise ValueError(
                f"GPT got a sequence of {length} tokens{cached}, longer than its block_size "
                f"{block}; keep the last {block} tokens (ids[:, -block_size:]) or build the "
                "model with a larger block_size."
            )

    def _checked_ids(self, idx):
        """``idx`` as an integer array on the model's device, or a clear error (of any
        length: :meth:`forward` checks it against the block)."""
        return checked_token_ids(idx, self.wte.weight.data, "GPT", self.config.vocab_size)

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

    # -- generation --------------------------------------------------------------------
    def generate(
        self,
        idx,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
        **options,
    ):
        """Continue each sequence of ``idx`` (B, T) by up to ``max_new_tokens`` tokens;
        returns the ids (B, T + new) as an integer array on the model's device.

        ``temperature`` divides the logits (0 means always the most likely token);
        ``top_k`` samples among the k most likely tokens only; ``seed`` fixes the draws
        (else lmcore.rng's generator is used). ``options`` are those of
        :func:`lmcore.generate.generate`: ``top_p``, ``repetition_penalty``,
        ``num_beams`` and ``length_penalty``, ``eos_token_id``, ``stop_strings`` with
        ``tokenizer``, ``pad_token_id``, ``use_cache``. The prompt is read once and each
        new token then costs one position, through the key-value cache of
        :meth:`next_token_logits`. Runs in evaluation mode (no dropout) and restores the
        mode afterwards.

        Example:
            >>> config = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)
            >>> model, prompt = GPT(config), np.array([[1, 2, 3]])
            >>> cached = model.generate(prompt, 10, temperature=0)        # past the block
            >>> again = model.generate(prompt, 10, temperature=0, use_cache=False)
            >>> cached.shape, bool((cached == again).all())
            ((1, 13), True)
        """
        return generate(self, idx, max_new_tokens, temperature, top_k, seed, **options)

    def new_cache(self, batch_size: int) -> KVCache:
        """An empty :class:`~lmcore.nn.attention.KVCache` for ``batch_size`` sequences of up
        to ``block_size`` tokens, on the model's device and in its dtype.

        Example:
            >>> config = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
            >>> model = GPT(config)
            >>> cache = model.new_cache(batch_size=1)
            >>> from lmcore import no_grad
            >>> with no_grad():
            ...     logits = model(np.array([[1, 2, 3]]), past_key_values=cache)     # prefill
            ...     step = model(np.array([[4]]), past_key_values=cache)             # position 3
            >>> cache.get_seq_length(), step.shape
            (4, (1, 1, 11))
        """
        c, weight = self.config, self.wte.weight.data
        return KVCache(
            c.n_layer,
            batch_size,
            c.n_head,
            c.block_size,
            c.n_embd // c.n_head,
            device=backend.device_of(weight),
            dtype=weight.dtype,
        )

    def next_token_logits(self, idx, state=None):
        """Logits (B, V) of the token after ``idx`` (B, T), and the key-value cache to pass
        back as ``state`` with ``idx`` one token longer (see :mod:`lmcore.generate`).

        Without a cache (``state`` None) the last ``block_size`` tokens are read at once
        (the prefill) and their keys and values kept; each later call reads only the
        newest token. When that token would not fit in the block, the cache is filled
        afresh from the last ``block_size`` tokens, the context recomputation crops to, so
        the logits are those of recomputing every time, up to rounding.
        """
        cache = self.new_cache(idx.shape[0]) if state is None else state
        if 0 < cache.get_seq_length() < self.config.block_size:
            new = idx[:, -1:]  # (B, 1): the rest is cached
        else:
            cache.reset()
            new = idx[:, -self.config.block_size :]  # (B, T'): prefill
        return self(new, past_key_values=cache).data[:, -1, :], cache

    # -- GPT-2 weights -----------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, directory, device=None, dtype="float32", dropout: float | None = None
    ) -> GPT:
        """A GPT from a Hugging Face GPT-2 directory: ``config.json`` and
        ``model.safetensors`` (or the shards that ``model.safetensors.index.json`` lists),
        as :meth:`save_pretrained` or ``transformers``' ``GPT2LMHeadModel.save_pretrained``
        write them.

        Width, depth, heads, vocabulary and context come from ``config.json``, so any shape
        loads, and the weights are checked against it. Names may carry the
        ``transformer.`` prefix or not, causal-mask buffers (``attn.bias``,
        ``attn.masked_bias``) are skipped, and float16 or bfloat16 files become
        ``dtype`` (float32 unless told). ``lm_head`` is tied to ``wte`` when the config
        says ``tie_word_embeddings`` (its default). The three dropout rates of the config
        must agree, as lmcore's GPT has one; else pass ``dropout``. As in ``transformers``,
        the model comes back in evaluation mode: call ``.train()`` to train it.

        Example:
            >>> import tempfile
            >>> config = GPTConfig(vocab_size=101, block_size=32, n_layer=2, n_head=3, n_embd=48)
            >>> model = GPT(config)                       # width 48 in 3 heads: no GPT-2 size
            >>> with tempfile.TemporaryDirectory() as directory:
            ...     model.save_pretrained(directory)
            ...     again = GPT.from_pretrained(directory)
            >>> again.config.n_head, again.config.n_embd, again.training
            (3, 48, False)
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(
                f"GPT.from_pretrained: no directory {directory}"
                + (
                    "; it is a file: GPT.load_gpt2 reads a lone model.safetensors."
                    if directory.is_file()
                    else "; it should hold config.json and model.safetensors."
                )
            )
        config_path = directory / "config.json"
        config = _config_from_hf(_read_hf_config(config_path), config_path, dropout)
        source, state_dict = _read_hf_weights(directory)
        model = cls._from_gpt2_weights(_strip_gpt2_names(state_dict), config, device, dtype, source)
        return model.eval()

    def save_pretrained(self, directory) -> None:
        """Write the model as ``transformers`` writes a ``GPT2LMHeadModel``: ``config.json``
        (``GPT2Config``'s keys) and ``model.safetensors`` (names with the ``transformer.``
        prefix, Conv1D weights as (in, out), ``lm_head.weight`` only when not tied), each
        file atomically, into ``directory`` (made if missing). ``transformers`` and
        :meth:`from_pretrained` both load it. Only what GPT-2 can express is saved this
        way: learned positions and biases (see :meth:`to_gpt2_state_dict`).

        Example:
            >>> import tempfile
            >>> config = GPTConfig(vocab_size=101, block_size=32, n_layer=2, n_head=3, n_embd=48)
            >>> model = GPT(config)                       # width 48 in 3 heads: no GPT-2 size
            >>> with tempfile.TemporaryDirectory() as directory:
            ...     model.save_pretrained(directory)
            ...     sorted(os.listdir(directory))
            ['config.json', 'model.safetensors']
        """
        weights = self.to_gpt2_state_dict()  # refuses what GPT-2 cannot express, first
        hf_names = OrderedDict(
            (name if name == "lm_head.weight" else f"transformer.{name}", array)
            for name, array in weights.items()
        )
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _save_safetensors(directory / "model.safetensors", hf_names)
        text = json.dumps(self._hf_config(), indent=2, sort_keys=True) + "\n"
        write_atomically(
            directory / "config.json", lambda temporary: Path(temporary).write_text(text)
        )

    def _hf_config(self) -> dict:
        """``config.json`` for :meth:`save_pretrained`: ``GPT2Config``'s keys and values."""
        c = self.config
        end_of_text = GPT2_END_OF_TEXT if c.vocab_size > GPT2_END_OF_TEXT else None
        return {
            "model_type": "gpt2",
            "architectures": ["GPT2LMHeadModel"],
            **_HF_GPT2_DEFAULTS,
            "vocab_size": c.vocab_size,
            "n_positions": c.block_size,
            "n_ctx": c.block_size,
            "n_embd": c.n_embd,
            "n_layer": c.n_layer,
            "n_head": c.n_head,
            "resid_pdrop": c.dropout,
            "embd_pdrop": c.dropout,
            "attn_pdrop": c.dropout,
            "tie_word_embeddings": c.tie_weights,
            "bos_token_id": end_of_text,
            "eos_token_id": end_of_text,
            "torch_dtype": str(np.dtype(self.wte.weight.dtype)),
        }

    @classmethod
    def from_gpt2_state_dict(cls, state_dict, n_head: int | None = None, device=None, dtype=None):
        """A GPT holding the weights of a Hugging Face GPT-2 state dict (arrays by name).

        Keys may carry the ``transformer.`` prefix; causal-mask buffers (``h.N.attn.bias``)
        are ignored; ``lm_head.weight``, when present and different from ``wte.weight``,
        unties the two. Vocabulary, context, width and depth come from the shapes. The
        number of heads cannot: it defaults to width / 64, right for every GPT-2 size
        (small 12, medium 16, large 20, xl 25); pass ``n_head`` for anything else, or use
        :meth:`from_pretrained`, which reads it from ``config.json``. The dtype defaults
        to the checkpoint's (float32 for GPT-2).
        """
        weights = _strip_gpt2_names(state_dict)
        if "wte.weight" not in weights or "wpe.weight" not in weights:
            raise KeyError(
                "not a GPT-2 state dict: it lacks wte.weight or wpe.weight; keys found: "
                + ", ".join(list(weights)[:8])
            )
        vocab_size, n_embd = weights["wte.weight"].shape
        layers = [int(m.group(1)) for k in weights if (m := re.match(r"h\.(\d+)\.", k))]
        if n_head is None:
            if n_embd % GPT2_HEAD_DIM:
                raise ValueError(
                    f"cannot infer the number of heads of a width-{n_embd} model (GPT-2 sizes "
                    f"have heads of width {GPT2_HEAD_DIM}); pass n_head=, or keep a "
                    "config.json beside the weights and use GPT.from_pretrained."
                )
            n_head = n_embd // GPT2_HEAD_DIM
        lm_head = weights.get("lm_head.weight")
        config = GPTConfig(
            vocab_size=vocab_size,
            block_size=weights["wpe.weight"].shape[0],
            n_layer=max(layers) + 1 if layers else 0,
            n_head=n_head,
            n_embd=n_embd,
            tie_weights=lm_head is None or np.array_equal(lm_head, weights["wte.weight"]),
        )
        dtype = dtype or weights["wte.weight"].dtype
        return cls._from_gpt2_weights(weights, config, device, dtype, "the GPT-2 state dict")

    @classmethod
    def _from_gpt2_weights(cls, weights: dict, config: GPTConfig, device, dtype, source: str):
        """A GPT of ``config`` holding ``weights`` (from :func:`_strip_gpt2_names`): every
        name and shape is checked first, then the weights are loaded. The one way in for
        :meth:`from_pretrained`, :meth:`from_gpt2_state_dict` and :meth:`load_gpt2`."""
        lm_head = weights.get("lm_head.weight")
        tied_but_stored = config.tie_weights and lm_head is not None and "wte.weight" in weights
        if tied_but_stored and not np.array_equal(lm_head, weights["wte.weight"]):
            raise ValueError(
                f"{source} ties lm_head to wte (tie_word_embeddings), yet its "
                "lm_head.weight differs from wte.weight; set tie_word_embeddings to "
                "false in config.json to keep both."
            )
        model = cls(config, device=device, dtype=dtype)
        expected = {
            name: tuple(array.shape[::-1] if _CONV1D_WEIGHT.fullmatch(name) else array.shape)
            for name, array in model.state_dict().items()
            if not (name == "lm_head.weight" and config.tie_weights)
        }
        missing = [name for name in expected if name not in weights]
        unexpected = [
            name
            for name in weights
            if name not in expected and not (name == "lm_head.weight" and config.tie_weights)
        ]
        mismatched = [
            f"{name}: file {tuple(weights[name].shape)}, model {shape}"
            for name, shape in expected.items()
            if name in weights and tuple(weights[name].shape) != shape
        ]
        problems = [
            f"{kind}: {joiner.join(names)}"
            for kind, joiner, names in (
                ("missing keys", ", ", missing),
                ("unexpected keys", ", ", unexpected),
                ("shape mismatches", "; ", mismatched),
            )
            if names
        ]
        if problems:
            c = config
            raise RuntimeError(
                f"cannot load {source} into a GPT with vocab_size={c.vocab_size}, "
                f"block_size={c.block_size}, n_layer={c.n_layer}, n_head={c.n_head}, "
                f"n_embd={c.n_embd}, tie_weights={c.tie_weights}:\n  "
                + "\n  ".join(problems)
                + "\n(GPT-2 names, Conv1D weights as (in, out).) Is it a GPT-2 checkpoint, "
                "complete, and of the shape its config gives?"
            )
        ours = {
            name: array.T if _CONV1D_WEIGHT.fullmatch(name) else array
            for name, array in weights.items()
            if name != "lm_head.weight"
        }
        ours["lm_head.weight"] = ours["wte.weight"] if config.tie_weights else lm_head
        model.load_state_dict(ours)
        return model

    @classmethod
    def load_gpt2(cls, path, n_head: int | None = None, device=None, dtype=None) -> GPT:
        """A GPT from a GPT-2 ``model.safetensors`` file (see :meth:`from_gpt2_state_dict`;
        bfloat16 tensors are read as float32). :meth:`from_pretrained` reads a whole
        directory, ``config.json`` included, so it needs no ``n_head``."""
        return cls.from_gpt2_state_dict(_read_safetensors(path), n_head, device, dtype)

    def to_gpt2_state_dict(self) -> OrderedDict:
        """The weights as NumPy arrays in the Hugging Face GPT-2 layout: HF names, Conv1D
        weights transposed to (in, out), no causal-mask buffers, ``lm_head.weight`` only
        when it is not tied to ``wte``. Needs ``positional="learned"``, ``bias=True`` and
        GPT-2's pre-norm residual blocks."""
        refused = []
        if self.config.positional != "learned":
            refused.append(
                f"positional={self.config.positional!r} (GPT-2 has learned positions, "
                "positional='learned')"
            )
        if not self.config.bias:
            refused.append("bias=False (GPT-2 has biases in every Linear and LayerNorm)")
        if not (self.config.norm_first and self.config.residual):
            refused.append(
                "norm_first=False or residual=False (GPT-2's blocks are pre-norm residual ones)"
            )
        if refused:
            raise ValueError(
                "the GPT-2 layout cannot hold this model: "
                + "; ".join(refused)
                + ". Save it with state_dict() instead."
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
        files, so Hugging Face loaders accept it too. :meth:`save_pretrained` writes a
        whole directory that ``transformers`` loads, ``config.json`` included."""
        _save_safetensors(path, self.to_gpt2_state_dict())

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in asdict(self.config).items())


def _strip_gpt2_names(state_dict) -> dict:
    """NumPy arrays by HF GPT-2 name, without the ``transformer.`` prefix and without the
    mask buffers."""
    weights = {}
    for key, value in state_dict.items():
        name = key.removeprefix("transformer.")
        if not _MASK_BUFFER.fullmatch(name):
            weights[name] = _numpy(value)
    return weights


def _numpy(array) -> np.ndarray:
    """A NumPy array from a NumPy or CuPy array (or anything NumPy can read)."""
    if hasattr(array, "__cuda_array_interface__"):
        return backend.to_device(array, "cpu")
    return np.asarray(array)


# -- Hugging Face files ----------------------------------------------------------------------


def _read_hf_config(path: Path) -> dict:
    """``config.json`` of a GPT-2 directory, with ``GPT2Config``'s defaults for what it
    leaves out; a clear error when it is missing or describes another model."""
    if not path.is_file():
        raise FileNotFoundError(
            f"GPT.from_pretrained: {path.parent} has no config.json (it holds: "
            f"{', '.join(sorted(p.name for p in path.parent.iterdir())) or 'nothing'})"
        )
    try:
        with open(path, encoding="utf-8") as file:
            settings = json.load(file)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    model_type = settings.get("model_type")
    if model_type != "gpt2":
        raise ValueError(
            f"{path} describes a model of type {model_type!r}, not 'gpt2'; "
            "GPT.from_pretrained reads GPT-2 checkpoints only."
        )
    return {**_HF_GPT2_DEFAULTS, **settings}


def _config_from_hf(hf: dict, path: Path, dropout: float | None) -> GPTConfig:
    """The GPTConfig of a Hugging Face GPT-2 config, or an error naming the setting that
    lmcore's GPT cannot follow."""
    n_embd = hf["n_embd"]
    requirements = {  # setting: (accepted values, what lmcore's GPT does)
        "activation_function": (_GELU_TANH, "GELU in its tanh form, 'gelu_new'"),
        "n_inner": ((None, 4 * n_embd), f"an MLP of width 4 * n_embd = {4 * n_embd}"),
        "layer_norm_epsilon": ((1e-5,), "LayerNorm with eps 1e-5"),
        "scale_attn_weights": ((True,), "attention scores scaled by 1/sqrt(head width)"),
        "scale_attn_by_inverse_layer_idx": ((False,), "no extra scaling by layer"),
        "add_cross_attention": ((False,), "no cross-attention"),
    }
    for key, (accepted, ours) in requirements.items():
        if hf[key] not in accepted:
            raise ValueError(
                f"{path} sets {key}={hf[key]!r}, which lmcore's GPT cannot follow: it has {ours}."
            )
    if dropout is None:
        rates = {key: hf[key] for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
        if len(set(rates.values())) > 1:
            raise ValueError(
                f"{path} sets different dropout rates "
                f"({', '.join(f'{k}={v}' for k, v in rates.items())}); lmcore's GPT has "
                "one: pass dropout= to GPT.from_pretrained."
            )
        dropout = rates["resid_pdrop"]
    return GPTConfig(
        vocab_size=hf["vocab_size"],
        block_size=hf["n_positions"],
        n_layer=hf["n_layer"],
        n_head=hf["n_head"],
        n_embd=n_embd,
        dropout=dropout,
        tie_weights=bool(hf["tie_word_embeddings"]),
    )


def _read_hf_weights(directory: Path) -> tuple[str, dict]:
    """(a name for the messages, the arrays by name) from ``model.safetensors``, or from
    the shards that ``model.safetensors.index.json`` maps the names to."""
    single, index = directory / "model.safetensors", directory / "model.safetensors.index.json"
    if single.is_file():
        return str(single), _read_safetensors(single)
    if index.is_file():
        with open(index, encoding="utf-8") as file:
            shards = sorted(set(json.load(file)["weight_map"].values()))
        weights = {}
        for shard in shards:
            weights.update(_read_safetensors(directory / shard))
        return f"the shards of {index}", weights
    others = [name for name in _OTHER_WEIGHT_FILES if (directory / name).exists()]
    raise FileNotFoundError(
        f"GPT.from_pretrained: {directory} has no model.safetensors"
        + (
            f", only {', '.join(others)}; lmcore reads safetensors only: load it in "
            "transformers and save it again with save_pretrained (safetensors by default)."
            if others
            else "."
        )
    )


def _read_safetensors(path) -> dict:
    """Every tensor of a safetensors file as a NumPy array; bfloat16 ones, which NumPy
    lacks, as float32 (exactly: a bfloat16 is the top half of a float32)."""
    from safetensors import SafetensorError, safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no safetensors file {path}")
    arrays, bfloat16 = {}, []
    try:
        with safe_open(path, framework="np") as file:
            names = file.keys()  # a safe_open handle is not iterable itself
            for name in names:
                if file.get_slice(name).get_dtype() == "BF16":
                    bfloat16.append(name)
                else:
                    arrays[name] = file.get_tensor(name)
    except SafetensorError as error:
        raise ValueError(f"{path} is not a readable safetensors file: {error}") from error
    if bfloat16:
        # The format: an 8-byte little-endian header length, a JSON header giving each
        # tensor's dtype, shape and byte range, then the bytes.
        with open(path, "rb") as file:
            length = int.from_bytes(file.read(8), "little")
            header = json.loads(file.read(length))
            for name in bfloat16:
                begin, end = header[name]["data_offsets"]
                file.seek(8 + length + begin)
                bits = np.frombuffer(file.read(end - begin), dtype="<u2")
                widened = (bits.astype(np.uint32) << 16).view(np.float32)
                arrays[name] = widened.reshape(header[name]["shape"])
    return arrays


def _save_safetensors(path, weights) -> None:
    """NumPy arrays to a safetensors file, atomically, with GPT-2's ``format: pt``."""
    from safetensors.numpy import save_file

    write_atomically(
        path, lambda temporary: save_file(dict(weights), temporary, metadata={"format": "pt"})
    )
