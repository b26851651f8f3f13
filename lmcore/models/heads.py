"""Task heads on a pretrained GPT or BERT: a label per sequence or a tag per token.

* :class:`SequenceClassifier`: hidden states (B, T, C) pooled to (B, C), then a Linear to
  (B, num_labels). Pooling: ``"last"`` non-padding token (a GPT's default: only the last
  position has read the whole sequence), ``"mean"`` over the non-padding tokens, or
  ``"first"`` token (a BERT's default, the [CLS] position).
* :class:`TokenClassifier`: a Linear on every position, (B, T, C) -> (B, T, num_labels).

Names follow ``transformers`` (``GPT2ForSequenceClassification``: ``transformer`` and
``score``; ``BertForSequenceClassification``: ``bert`` and ``classifier``), so LoRA adapters
of the backbone carry the same module paths in both libraries. Batches may be padded:
``attention_mask`` (B, T) is True at real tokens; without it, tokens equal to
``pad_token_id`` (when given) count as padding. Pad on the right.

Example:
    >>> import numpy as np
    >>> from lmcore.models import GPT, GPTConfig
    >>> gpt = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, n_embd=8))
    >>> model = SequenceClassifier(gpt, num_labels=3, pad_token_id=0)
    >>> ids = np.array([[5, 6, 7, 0], [8, 9, 0, 0]])                 # (B, T), 0 pads
    >>> logits, loss = model(ids, np.array([2, 0]))
    >>> logits.shape                                                  # (B, num_labels)
    (2, 3)
"""

from __future__ import annotations

import numpy as np

from lmcore import backend
from lmcore import functional as F
from lmcore.autograd import Tensor
from lmcore.models.bert import BERT
from lmcore.models.gpt import GPT
from lmcore.nn.layers import Dropout, Linear
from lmcore.nn.module import Module

__all__ = ["POOLINGS", "SequenceClassifier", "TokenClassifier", "gpt_hidden_states", "pool"]

POOLINGS = ("last", "mean", "first")


def gpt_hidden_states(gpt: GPT, idx, padding_mask=None, prefix: Tensor | None = None) -> Tensor:
    """A GPT's final hidden states (B, T, C), after ``ln_f`` and before ``lm_head``.

    ``prefix`` (P, C) are embeddings put before every sequence's tokens (soft prompts);
    the result then covers P + T positions. ``padding_mask`` (B, T) is True at real tokens.

    Example:
        >>> from lmcore.models import GPTConfig
        >>> gpt = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, n_embd=8))
        >>> gpt_hidden_states(gpt, np.zeros((2, 5), np.int64)).shape
        (2, 5, 8)
    """
    idx = gpt._checked_ids(idx)
    xp = backend.get_array_module(idx)
    batch, length = idx.shape
    x = gpt.wte(idx)  # (B, T, C)
    extra = 0
    if prefix is not None:
        extra = prefix.shape[0]
        zeros = Tensor(xp.zeros((batch, 1, 1), dtype=x.dtype))
        x = F.cat([prefix[None] + zeros, x], dim=1)  # (B, P + T, C)
        if padding_mask is not None:
            padding_mask = xp.concatenate(
                [xp.ones((batch, extra), bool), _array(padding_mask, xp)], axis=1
            )
    gpt._check_length(0, extra + length)
    if gpt.wpe is not None:
        x = x + gpt.wpe(xp.arange(extra + length))  # + (P + T, C)
    x = gpt.drop(x)
    for block in gpt.h:
        x = block(x, padding_mask)
    return gpt.ln_f(x)


def _array(values, xp):
    return xp.asarray(values.data if isinstance(values, Tensor) else values)


def pool(hidden: Tensor, mask, how: str) -> Tensor:
    """One vector per sequence from hidden states (B, T, C) -> (B, C): the ``"last"``
    position where ``mask`` (B, T) is True, the ``"mean"`` over those positions, or the
    ``"first"`` position. ``mask`` None means every position is real.

    Example:
        >>> h = Tensor(np.arange(12.0).reshape(1, 4, 3))
        >>> pool(h, np.array([[True, True, False, False]]), "last").numpy()
        array([[3., 4., 5.]])
        >>> pool(h, np.array([[True, True, False, False]]), "mean").numpy()
        array([[1.5, 2.5, 3.5]])
    """
    if how not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {how!r}")
    xp = backend.get_array_module(hidden.data)
    batch, length, _ = hidden.shape
    if how == "first":
        return hidden[:, 0]
    mask = xp.ones((batch, length), bool) if mask is None else _array(mask, xp).astype(bool)
    counts = mask.sum(axis=1)
    if bool((counts == 0).any()):
        raise ValueError(
            f"a sequence of the batch has no real token (rows {xp.nonzero(counts == 0)[0].tolist()}"
            "); drop empty sequences before batching."
        )
    if how == "last":
        last = length - 1 - xp.argmax(mask[:, ::-1], axis=1)  # (B,) last True position
        return hidden[xp.arange(batch), last]  # (B, C)
    weights = Tensor((mask / counts[:, None]).astype(hidden.dtype)[:, :, None])  # (B, T, 1)
    return (hidden * weights).sum(dim=1)  # (B, C)


class _Backbone(Module):
    """What the two heads share: the backbone under its ``transformers`` name, the padding
    mask, and the hidden states."""

    def _set_backbone(self, backbone, pad_token_id):
        if isinstance(backbone, GPT):
            self.transformer = backbone
            self.width = backbone.config.n_embd
        elif isinstance(backbone, BERT):
            self.bert = backbone
            self.width = backbone.config.hidden_size
            if pad_token_id is None:
                pad_token_id = backbone.config.pad_token_id
        else:
            raise TypeError(
                f"{type(self).__name__} takes a lmcore GPT or BERT as its backbone, got "
                f"{type(backbone).__name__}"
            )
        self.pad_token_id = pad_token_id

    @property
    def backbone(self) -> Module:
        return self.transformer if "transformer" in self._modules else self.bert

    def padding_mask(self, input_ids, attention_mask):
        """(B, T) booleans, True at real tokens, or None when every token is real."""
        xp = backend.xp(backend.device_of(next(self.parameters()).data))
        if attention_mask is not None:
            mask = _array(attention_mask, xp)
            ids_shape = np.shape(input_ids.data if isinstance(input_ids, Tensor) else input_ids)
            if mask.shape != tuple(ids_shape):
                raise ValueError(
                    f"{type(self).__name__}: attention_mask {mask.shape} must have the shape "
                    f"of input_ids {tuple(ids_shape)}"
                )
            return mask.astype(bool)
        if self.pad_token_id is None:
            return None
        mask = _array(input_ids, xp) != self.pad_token_id
        return None if bool(mask.all()) else mask

    def hidden_states(self, input_ids, mask) -> Tensor:  # (B, T) -> (B, T, C)
        if "transformer" in self._modules:
            return gpt_hidden_states(self.transformer, input_ids, mask)
        return self.bert.encode(input_ids, attention_mask=mask)


class SequenceClassifier(_Backbone):
    """A label per sequence: token ids (B, T) -> logits (B, num_labels); with ``labels``
    (B,) also the mean cross-entropy.

    Args:
        backbone: a (pretrained) :class:`~lmcore.models.gpt.GPT` or :class:`~lmcore.models.bert.BERT`,
            used as it is (not copied).
        num_labels: number of classes K.
        pooling: "last", "mean" or "first" (default: "last" for a GPT, "first" for a BERT).
        pad_token_id: id that marks padding when no ``attention_mask`` is given (a BERT's
            config gives one).
        dropout: on the pooled vector, in training.

    Example:
        >>> from lmcore.models import BERT, BERTConfig
        >>> bert = BERT(BERTConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
        ...                        num_attention_heads=2, intermediate_size=32))
        >>> model = SequenceClassifier(bert, num_labels=2)
        >>> model(np.array([[2, 7, 9, 0]])).shape, model.pooling
        ((1, 2), 'first')
    """

    def __init__(
        self,
        backbone,
        num_labels: int,
        pooling: str | None = None,
        pad_token_id: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        self._set_backbone(backbone, pad_token_id)
        if not isinstance(num_labels, int) or num_labels < 1:
            raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}")
        pooling = pooling or ("last" if isinstance(backbone, GPT) else "first")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.num_labels, self.pooling = num_labels, pooling
        weight = backbone.parameters().__next__().data
        kinds = dict(device=backend.device_of(weight), dtype=weight.dtype)
        self.dropout = Dropout(dropout)
        head = Linear(self.width, num_labels, bias=not isinstance(backbone, GPT), **kinds)
        if isinstance(backbone, GPT):
            self.score = head  # GPT2ForSequenceClassification's name (no bias)
        else:
            self.classifier = head

    @property
    def head(self):
        """The output layer, a :class:`~lmcore.nn.layers.Linear`: ``score`` on a GPT,
        ``classifier`` on a BERT (Hugging Face's names)."""
        return self.score if "score" in self._modules else self.classifier

    def forward(self, input_ids, labels=None, attention_mask=None):
        mask = self.padding_mask(input_ids, attention_mask)
        hidden = self.hidden_states(input_ids, mask)  # (B, T, C)
        logits = self.head(self.dropout(pool(hidden, mask, self.pooling)))  # (B, K)
        if labels is None:
            return logits
        labels = _array(labels, backend.get_array_module(logits.data))
        if labels.shape != logits.shape[:1]:
            raise ValueError(
                f"SequenceClassifier: labels must be (B,) = {logits.shape[:1]}, one class per "
                f"sequence, got {labels.shape}"
            )
        return logits, F.cross_entropy(logits, labels)


class TokenClassifier(_Backbone):
    """A tag per token: token ids (B, T) -> logits (B, T, num_labels); with ``labels``
    (B, T) also the mean cross-entropy over the tagged positions (label -100, e.g. at
    padding, is not scored).

    Example:
        >>> from lmcore.models import GPTConfig
        >>> gpt = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, n_embd=8))
        >>> tagger = TokenClassifier(gpt, num_labels=5, pad_token_id=0)
        >>> ids, tags = np.array([[3, 4, 5, 0]]), np.array([[1, 2, 0, -100]])
        >>> logits, loss = tagger(ids, tags)
        >>> logits.shape
        (1, 4, 5)
    """

    def __init__(
        self, backbone, num_labels: int, pad_token_id: int | None = None, dropout: float = 0.0
    ):
        super().__init__()
        self._set_backbone(backbone, pad_token_id)
        if not isinstance(num_labels, int) or num_labels < 1:
            raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}")
        self.num_labels = num_labels
        weight = backbone.parameters().__next__().data
        self.dropout = Dropout(dropout)
        self.classifier = Linear(
            self.width, num_labels, device=backend.device_of(weight), dtype=weight.dtype
        )

    def forward(self, input_ids, labels=None, attention_mask=None):
        mask = self.padding_mask(input_ids, attention_mask)
        logits = self.classifier(self.dropout(self.hidden_states(input_ids, mask)))  # (B, T, K)
        if labels is None:
            return logits
        labels = _array(labels, backend.get_array_module(logits.data))
        if labels.shape != logits.shape[:2]:
            raise ValueError(
                f"TokenClassifier: labels must be (B, T) = {logits.shape[:2]}, one tag per "
                f"token (-100 where none), got {labels.shape}"
            )
        return logits, F.cross_entropy(logits, labels, ignore_index=-100)
