"""BERT: a bidirectional Transformer encoder trained by masked-language modelling.

Word, position and token-type embeddings are summed and normalized; ``num_hidden_layers``
post-norm layers follow (``LayerNorm(x + attention(x))``, then ``LayerNorm(x + mlp(x))``),
where every position attends to every real (not padded) position of its sequence; the
masked-LM head (dense, GELU, LayerNorm) scores the vocabulary with the word embedding
matrix itself plus a bias of its own. This is the architecture of ``transformers``'
``BertForMaskedLM``, with its parameter names below three fixed prefixes:

=======================  =========================
lmcore                   Hugging Face
=======================  =========================
``embeddings.*``         ``bert.embeddings.*``
``encoder.N.*``          ``bert.encoder.layer.N.*``
``mlm_head.*``           ``cls.predictions.*``
=======================  =========================

so :meth:`BERT.from_pretrained` and :meth:`BERT.save_pretrained` read and write the
directories of ``BertForMaskedLM`` (``config.json`` and ``model.safetensors``).

Example:
    >>> import numpy as np
    >>> config = BERTConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
    ...                     num_attention_heads=4, intermediate_size=64,
    ...                     max_position_embeddings=16)
    >>> model = BERT(config)
    >>> ids = np.array([[2, 7, 1, 9, 3, 0], [2, 5, 5, 3, 0, 0]])    # (B, T), 0 pads
    >>> labels = np.full_like(ids, -100)
    >>> labels[0, 2] = 8                                            # score one position
    >>> logits, loss = model(ids, attention_mask=ids != 0, labels=labels)
    >>> logits.shape                                                # (B, T, V)
    (2, 6, 50)
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from lmcore import backend
from lmcore import functional as F
from lmcore.atomic import write_atomically
from lmcore.autograd import Tensor
from lmcore.models.gpt import _numpy, _read_hf_weights, _save_safetensors
from lmcore.nn import init
from lmcore.nn.layers import Dropout, Embedding, LayerNorm, Linear
from lmcore.nn.module import Module, ModuleList, Parameter

__all__ = ["BERT", "BERTConfig"]

# lmcore's name prefixes and Hugging Face's, in BertForMaskedLM's state dict.
HF_PREFIXES = (
    ("embeddings.", "bert.embeddings."),
    ("encoder.", "bert.encoder.layer."),
    ("mlm_head.", "cls.predictions."),
)
# BertForMaskedLM's weights that are tied to others, and what they are tied to.
_HF_TIED = {
    "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}
# Keys of BERT checkpoints that BertForMaskedLM has no use for either: the position-id
# buffer older versions saved, and the pooler and next-sentence head of BertForPreTraining.
_HF_SKIPPED = re.compile(
    r"bert\.embeddings\.position_ids|bert\.pooler\..*|cls\.seq_relationship\..*"
)
# The LayerNorm names of checkpoints converted from the original TensorFlow BERT.
_OLD_LAYER_NORM_NAMES = re.compile(r"(?<=LayerNorm\.)(gamma|beta)$")
_NEW_LAYER_NORM_NAMES = {"gamma": "weight", "beta": "bias"}
# Settings of BertConfig that lmcore's BERT follows in one way only: (default, accepted).
_HF_FIXED = {
    "hidden_act": ("gelu", ("gelu",)),
    "position_embedding_type": ("absolute", ("absolute",)),
    "is_decoder": (False, (False,)),
    "add_cross_attention": (False, (False,)),
    "tie_word_embeddings": (True, (True,)),
}
# Weight files of other formats that a Hugging Face directory may hold instead.
_OTHER_WEIGHT_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5")


@dataclass
class BERTConfig:
    """The shape of a BERT, with ``transformers``' ``BertConfig`` names and defaults (those of
    BERT-base).

    Args:
        vocab_size: number of token ids V.
        hidden_size: model width C; num_attention_heads must divide it.
        num_hidden_layers, num_attention_heads: encoder layers, heads per layer.
        intermediate_size: width of each layer's feed-forward network.
        max_position_embeddings: longest sequence T the model takes.
        type_vocab_size: number of segment (token type) ids: 2, sentence A and B.
        layer_norm_eps: epsilon of every LayerNorm (1e-12, BERT's).
        hidden_dropout_prob: dropout on the embeddings and on each residual branch.
        attention_probs_dropout_prob: dropout on the attention weights.
        initializer_range: standard deviation of the initial weights.
        pad_token_id: id of the padding token, whose embedding starts at zero (None: none).

    Example:
        >>> BERTConfig(hidden_size=30, num_attention_heads=4)
        Traceback (most recent call last):
        ...
        ValueError: BERTConfig: hidden_size 30 must divide by num_attention_heads 4
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    initializer_range: float = 0.02
    pad_token_id: int | None = 0

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"BERTConfig: hidden_size {self.hidden_size} must divide by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"BERTConfig: pad_token_id {self.pad_token_id} lies outside the vocabulary of "
                f"{self.vocab_size} ids; pass an id below vocab_size, or None."
            )


# -- the layers -------------------------------------------------------------------------


class BERTEmbeddings(Module):
    """Word + position + token-type embeddings, LayerNorm, dropout: ids (B, T) → (B, T, C)."""

    def __init__(self, c: BERTConfig, device=None, dtype=None):
        super().__init__()
        kinds = dict(device=device, dtype=dtype)
        self.word_embeddings = Embedding(c.vocab_size, c.hidden_size, **kinds)
        self.position_embeddings = Embedding(c.max_position_embeddings, c.hidden_size, **kinds)
        self.token_type_embeddings = Embedding(c.type_vocab_size, c.hidden_size, **kinds)
        self.LayerNorm = LayerNorm(c.hidden_size, eps=c.layer_norm_eps, **kinds)
        self.dropout = Dropout(c.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids) -> Tensor:  # (B, T), (B, T) -> (B, T, C)
        xp = backend.get_array_module(input_ids)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(xp.arange(input_ids.shape[1]))  # + (T, C)
        return self.dropout(self.LayerNorm(x))


class BERTSelfAttention(Module):
    """Multi-head attention with separate ``query``, ``key`` and ``value`` projections:
    (B, T, C) → (B, T, C), the heads side by side, before the output projection."""

    def __init__(self, c: BERTConfig, device=None, dtype=None):
        super().__init__()
        width, kinds = c.hidden_size, dict(device=device, dtype=dtype)
        self.num_heads, self.dropout_p = c.num_attention_heads, c.attention_probs_dropout_prob
        self.query = Linear(width, width, **kinds)
        self.key = Linear(width, width, **kinds)
        self.value = Linear(width, width, **kinds)

    def forward(self, x: Tensor, mask) -> Tensor:  # (B, T, C), (B, 1, 1, T) or None
        (q,) = F.split_heads(self.query(x), self.num_heads)  # (B, H, T, D)
        (k,) = F.split_heads(self.key(x), self.num_heads)
        (v,) = F.split_heads(self.value(x), self.num_heads)
        dropout_p = self.dropout_p if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=dropout_p)
        return F.merge_heads(y)  # (B, T, C)


class BERTResidualOutput(Module):
    """``LayerNorm(residual + dropout(dense(x)))``: the end of each half of a layer
    (Hugging Face's ``BertSelfOutput`` and ``BertOutput``)."""

    def __init__(self, in_features: int, c: BERTConfig, device=None, dtype=None):
        super().__init__()
        kinds = dict(device=device, dtype=dtype)
        self.dense = Linear(in_features, c.hidden_size, **kinds)
        self.LayerNorm = LayerNorm(c.hidden_size, eps=c.layer_norm_eps, **kinds)
        self.dropout = Dropout(c.hidden_dropout_prob)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:  # (B, T, in), (B, T, C) -> (B, T, C)
        return self.LayerNorm(residual + self.dropout(self.dense(x)))


class BERTAttention(Module):
    """Self-attention and its residual output: (B, T, C) → (B, T, C)."""

    def __init__(self, c: BERTConfig, device=None, dtype=None):
        super().__init__()
        self.self = BERTSelfAttention(c, device, dtype)  # Hugging Face's name: attention.self
        self.output = BERTResidualOutput(c.hidden_size, c, device, dtype)

    def forward(self, x: Tensor, mask) -> Tensor:
        return self.output(self.self(x, mask), x)


class BERTIntermediate(Module):
    """The feed-forward network's first half: ``gelu(dense(x))``, GELU in its exact erf
    form, (B, T, C) → (B, T, intermediate_size)."""

    def __init__(self, c: BERTConfig, device=None, dtype=None):
        super().__init__()
        self.dense = Linear(c.hidden_size, c.intermediate_size, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.dense(x), approximate="none")


class BERTLayer(Module):
    """One post-norm encoder layer: (B, T, C) → (B, T, C)."""

    def __init__(self, c: BERTConfig, device=None, dtype=None):
        super().__init__()
        self.attention = BERTAttention(c, device, dtype)
        self.intermediate = BERTIntermediate(c, device, dtype)
        self.output = BERTResidualOutput(c.intermediate_size, c, device, dtype)

    def forward(self, x: Tensor, mask) -> Tensor:
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class BERTPredictionTransform(Module):
    """``LayerNorm(gelu(dense(x)))``, (B, T, C) → (B, T, C), before the vocabulary scores."""

    def __init__(self, c: BERTConfig, device=None, dtype=None):
        super().__init__()
        kinds = dict(device=device, dtype=dtype)
        self.dense = Linear(c.hidden_size, c.hidden_size, **kinds)
        self.LayerNorm = LayerNorm(c.hidden_size, eps=c.layer_norm_eps, **kinds)

    def forward(self, x: Tensor) -> Tensor:
        return self.LayerNorm(F.gelu(self.dense(x), approximate="none"))


class BERTMLMHead(Module):
    """Vocabulary scores (B, T, V) from hidden states (B, T, C): the transform, then the
    word embedding matrix (V, C), tied, and a bias (V,) of the head's own."""

    def __init__(self, c: BERTConfig, device=None, dtype=None):
        super().__init__()
        self.transform = BERTPredictionTransform(c, device, dtype)
        self.bias = Parameter(backend.xp(device).zeros(c.vocab_size, dtype=dtype or np.float32))

    def forward(self, x: Tensor, word_embeddings: Tensor) -> Tensor:
        return F.linear(self.transform(x), word_embeddings, self.bias)


# -- the model ------------------------------------------------------------------------


class BERT(Module):
    """BERT with its masked-LM head: token ids (B, T) → vocabulary logits (B, T, V).

    Weights start as in ``transformers``: every Linear and Embedding weight from
    N(0, initializer_range²), the padding token's embedding zero, biases zero, LayerNorm
    weights one.
    """

    def __init__(self, config: BERTConfig, device=None, dtype=None):
        super().__init__()
        self.config = config
        self.embeddings = BERTEmbeddings(config, device, dtype)
        self.encoder = ModuleList(
            BERTLayer(config, device, dtype) for _ in range(config.num_hidden_layers)
        )
        self.mlm_head = BERTMLMHead(config, device, dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``transformers``' initialization (see the class docstring)."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (Linear, Embedding)):
                init.normal_(module.weight, 0.0, std)
            if isinstance(module, Linear):
                init.zeros_(module.bias)
        if self.config.pad_token_id is not None:
            self.embeddings.word_embeddings.weight.data[self.config.pad_token_id] = 0
        init.zeros_(self.mlm_head.bias)

    # -- forward ---------------------------------------------------------------------
    def encode(self, input_ids, attention_mask=None, token_type_ids=None) -> Tensor:
        """The encoder's last hidden states (B, T, C), before the masked-LM head
        (``transformers``: ``model.bert(...).last_hidden_state``). Arguments as in
        :meth:`forward`."""
        input_ids = self._checked_ids("input_ids", input_ids, self.config.vocab_size)
        if token_type_ids is None:
            token_type_ids = backend.get_array_module(input_ids).zeros_like(input_ids)
        else:
            token_type_ids = self._checked_ids(
                "token_type_ids", token_type_ids, self.config.type_vocab_size, input_ids.shape
            )
        mask = None
        if attention_mask is not None:
            mask = self._checked_attention_mask(attention_mask, input_ids.shape)
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, C)
        for layer in self.encoder:
            x = layer(x, mask)
        return x

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        """Logits (B, T, V) for token ids ``input_ids`` (B, T); with ``labels`` (B, T) also
        the mean cross-entropy over the labelled positions (labels of -100 are not scored).

        ``attention_mask`` (B, T) is 1 (or True) at real tokens and 0 at padding, which no
        position attends to; ``token_type_ids`` (B, T) are segment ids (0 by default).
        """
        x = self.encode(input_ids, attention_mask, token_type_ids)
        logits = self.mlm_head(x, self.embeddings.word_embeddings.weight)  # (B, T, V)
        if labels is None:
            return logits
        labels = self._checked_labels(labels, logits.shape[:2])
        return logits, F.cross_entropy(logits, labels, ignore_index=-100)

    def _array(self, name: str, values):
        """``values`` as an array on the model's device, or a clear error if not 2-D."""
        xp = backend.get_array_module(self.embeddings.word_embeddings.weight.data)
        array = xp.asarray(values.data if isinstance(values, Tensor) else values)
        if array.ndim != 2:
            raise ValueError(
                f"BERT takes {name} of shape (B, T), got shape {array.shape}; add a batch "
                "dimension with [None] for one sequence."
            )
        return array

    def _checked_ids(self, name: str, ids, count: int, shape=None):
        """Integer ids in [0, count) of shape (B, T) (``shape`` when given), or a clear error."""
        ids = self._array(name, ids)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"BERT takes integer {name}, got dtype {ids.dtype}")
        if shape is not None and ids.shape != shape:
            raise ValueError(f"BERT got {name} of shape {ids.shape}; input_ids have {shape}")
        length, longest = ids.shape[1], self.config.max_position_embeddings
        if length > longest:
            raise ValueError(
                f"BERT got a sequence of {length} tokens, longer than its "
                f"max_position_embeddings {longest}; split the text into pieces of at most "
                f"{longest} tokens, or build the model with a larger max_position_embeddings."
            )
        if ids.size:
            low, high = int(ids.min()), int(ids.max())
            if low < 0 or high >= count:
                raise IndexError(
                    f"BERT got {name} value {low if low < 0 else high}, outside 0 to "
                    f"{count - 1}"
                    + (
                        "; use the tokenizer the model was built for, or a larger vocab_size."
                        if name == "input_ids"
                        else f" (type_vocab_size {count})."
                    )
                )
        return ids

    def _checked_attention_mask(self, attention_mask, shape):
        """The padding mask as booleans (B, 1, 1, T), True at keys that may be attended."""
        mask = self._array("attention_mask", attention_mask)
        if mask.shape != shape:
            raise ValueError(
                f"BERT got attention_mask of shape {mask.shape}; input_ids have {shape}"
            )
        if mask.dtype != bool:
            if bool(((mask != 0) & (mask != 1)).any()):
                raise ValueError(
                    "BERT's attention_mask holds 1 at real tokens and 0 at padding; got "
                    "other values. (An additive mask of 0 and -inf is not accepted here.)"
                )
            mask = mask != 0
        return mask[:, None, None, :]

    def _checked_labels(self, labels, shape):
        labels = self._array("labels", labels)
        if labels.shape != shape or labels.dtype.kind not in "iu":
            raise ValueError(
                f"BERT needs integer labels of the shape of input_ids {shape}, got "
                f"{labels.dtype} {labels.shape}"
            )
        scored = labels[labels != -100]
        if scored.size and (int(scored.min()) < 0 or int(scored.max()) >= self.config.vocab_size):
            raise IndexError(
                f"BERT's labels are token ids below vocab_size {self.config.vocab_size}, or "
                f"-100 where a position is not scored; got values from {int(scored.min())} "
                f"to {int(scored.max())}."
            )
        return labels

    # -- Hugging Face files -----------------------------------------------------------
    @classmethod
    def from_pretrained(cls, directory, device=None, dtype="float32") -> BERT:
        """A BERT from a Hugging Face ``BertForMaskedLM`` directory (``config.json`` and
        ``model.safetensors``, or the shards its index lists), as ``transformers`` or
        :meth:`save_pretrained` write it.

        The shape comes from ``config.json`` and every weight is checked against it. The
        decoder weight and bias, tied to the word embeddings and to ``cls.predictions.bias``,
        may be stored or left out (``transformers`` leaves them out); stored, they must
        equal what they are tied to. Keys that ``BertForMaskedLM`` also ignores (the
        pooler and next-sentence head of ``BertForPreTraining`` checkpoints, the
        ``position_ids`` buffer) are skipped, and old LayerNorm names (``gamma``, ``beta``)
        are read as ``weight`` and ``bias``. float16 and bfloat16 files become ``dtype``.
        As in ``transformers``, the model comes back in evaluation mode.

        Example:
            >>> import tempfile
            >>> config = BERTConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1,
            ...                     num_attention_heads=2, intermediate_size=32,
            ...                     max_position_embeddings=8)
            >>> with tempfile.TemporaryDirectory() as directory:
            ...     BERT(config).save_pretrained(directory)
            ...     again = BERT.from_pretrained(directory)
            >>> again.config.hidden_size, again.training
            (16, False)
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(
                f"BERT.from_pretrained: no directory {directory}; it should hold config.json "
                "and model.safetensors."
            )
        config = _config_from_hf(directory / "config.json")
        if not any((directory / name).is_file() for name in _SAFETENSORS_FILES):
            others = [name for name in _OTHER_WEIGHT_FILES if (directory / name).exists()]
            raise FileNotFoundError(
                f"BERT.from_pretrained: {directory} has no model.safetensors"
                + (
                    f", only {', '.join(others)}; lmcore reads safetensors only: load it in "
                    "transformers and save it again with save_pretrained."
                    if others
                    else "."
                )
            )
        source, weights = _read_hf_weights(directory)
        model = cls(config, device=device, dtype=dtype)
        model.load_state_dict(_from_hf_names(weights, source, model))
        return model.eval()

    def save_pretrained(self, directory) -> None:
        """Write the model as ``transformers`` writes a ``BertForMaskedLM``: ``config.json``
        (``BertConfig``'s keys) and ``model.safetensors`` (Hugging Face names, without the
        tied decoder weight and bias), each file atomically, into ``directory`` (made if
        missing). ``transformers`` and :meth:`from_pretrained` both load it.

        Example:
            >>> import os, tempfile
            >>> config = BERTConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1,
            ...                     num_attention_heads=2, intermediate_size=32)
            >>> with tempfile.TemporaryDirectory() as directory:
            ...     BERT(config).save_pretrained(directory)
            ...     sorted(os.listdir(directory))
            ['config.json', 'model.safetensors']
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _save_safetensors(directory / "model.safetensors", self.to_hf_state_dict())
        text = json.dumps(self._hf_config(), indent=2, sort_keys=True) + "\n"
        write_atomically(
            directory / "config.json", lambda temporary: Path(temporary).write_text(text)
        )

    def to_hf_state_dict(self) -> OrderedDict:
        """The weights as NumPy arrays under ``BertForMaskedLM``'s names (the tied decoder
        weight and bias left out, as ``transformers`` saves them).

        Example:
            >>> config = BERTConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1,
            ...                     num_attention_heads=2, intermediate_size=32)
            >>> names = list(BERT(config).to_hf_state_dict())
            >>> names[0]
            'bert.embeddings.word_embeddings.weight'
            >>> [name for name in names if name.startswith("cls.")]    # no decoder weight
            ['cls.predictions.bias', 'cls.predictions.transform.dense.weight',
             'cls.predictions.transform.dense.bias', 'cls.predictions.transform.LayerNorm.weight',
             'cls.predictions.transform.LayerNorm.bias']
        """
        return OrderedDict(
            (_hf_name(name), np.ascontiguousarray(_numpy(array)))
            for name, array in self.state_dict().items()
        )

    def _hf_config(self) -> dict:
        """``config.json`` for :meth:`save_pretrained`: ``BertConfig``'s keys and values."""
        return {
            "model_type": "bert",
            "architectures": ["BertForMaskedLM"],
            **{key: default for key, (default, _) in _HF_FIXED.items()},
            **asdict(self.config),
            "dtype": str(np.dtype(self.embeddings.word_embeddings.weight.dtype)),
        }

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in asdict(self.config).items())


_SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json")


def _hf_name(name: str) -> str:
    """The Hugging Face name of an lmcore BERT parameter."""
    for ours, theirs in HF_PREFIXES:
        if name.startswith(ours):
            return theirs + name.removeprefix(ours)
    raise KeyError(f"{name} has none of BERT's prefixes")


def _config_from_hf(path: Path) -> BERTConfig:
    """The BERTConfig of a Hugging Face ``config.json`` (``BertConfig``'s defaults for what
    it leaves out), or an error naming what lmcore's BERT cannot follow."""
    if not path.is_file():
        raise FileNotFoundError(
            f"BERT.from_pretrained: {path.parent} has no config.json (it holds: "
            f"{', '.join(sorted(p.name for p in path.parent.iterdir())) or 'nothing'})"
        )
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    model_type = settings.get("model_type")
    if model_type != "bert":
        raise ValueError(
            f"{path} describes a model of type {model_type!r} "
            f"({', '.join(settings.get('architectures') or ['no architecture named'])}), not "
            "'bert'; BERT.from_pretrained reads BertForMaskedLM checkpoints only."
        )
    for key, (default, accepted) in _HF_FIXED.items():
        value = settings.get(key, default)
        if value not in accepted:
            raise ValueError(
                f"{path} sets {key}={value!r}, which lmcore's BERT cannot follow: it has "
                f"{key}={default!r}."
            )
    defaults = {f.name: f.default for f in fields(BERTConfig)}
    return BERTConfig(**{key: settings.get(key, default) for key, default in defaults.items()})


def _from_hf_names(weights: dict, source: str, model: BERT) -> dict:
    """The state dict of ``model`` (lmcore names) from Hugging Face ``weights``, or an
    error listing every missing, unexpected or wrongly tied key."""
    weights = {
        _OLD_LAYER_NORM_NAMES.sub(lambda m: _NEW_LAYER_NORM_NAMES[m.group(1)], key): value
        for key, value in weights.items()
        if not _HF_SKIPPED.fullmatch(key)
    }
    if "cls.predictions.bias" not in weights and "cls.predictions.decoder.bias" in weights:
        weights["cls.predictions.bias"] = weights["cls.predictions.decoder.bias"]
    ours = {_hf_name(name): name for name in model.state_dict()}
    missing = [name for name in ours if name not in weights]
    unexpected = [name for name in weights if name not in ours and name not in _HF_TIED]
    untied = [
        f"{tied} differs from {target}"
        for tied, target in _HF_TIED.items()
        if tied in weights
        and target in weights
        and not np.array_equal(_numpy(weights[tied]), _numpy(weights[target]))
    ]
    problems = [
        f"{kind}: {', '.join(names)}"
        for kind, names in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("untied weights", untied),
        )
        if names
    ]
    if problems:
        c = model.config
        raise RuntimeError(
            f"cannot load {source} into a BERT with vocab_size={c.vocab_size}, "
            f"hidden_size={c.hidden_size}, num_hidden_layers={c.num_hidden_layers}:\n  "
            + "\n  ".join(problems)
            + "\nIs it a complete BertForMaskedLM checkpoint (lmcore's BERT ties the decoder to "
            "the word embeddings)?"
        )
    return {name: weights[theirs] for theirs, name in ours.items()}
