"""The MLP language model of Bengio et al. (2003): embed a fixed window, one hidden layer, softmax.

Each of the ``context`` previous tokens is looked up in a shared embedding table, the
vectors are concatenated, passed through a tanh hidden layer, and projected to one logit
per vocabulary entry. It is an n-gram model whose counts are replaced by a function that
shares statistics between similar contexts.

Example:
    >>> import numpy as np
    >>> model = MLPLanguageModel(vocab_size=65, context=8, embed_dim=16, hidden=128)
    >>> idx = np.zeros((4, 8), dtype=np.int64)              # (B, context)
    >>> logits, loss = model(idx, targets=np.zeros(4, dtype=np.int64))
    >>> logits.shape
    (4, 65)
"""

from __future__ import annotations

from lmcore import functional as F
from lmcore import nn
from lmcore.generate import generate


class MLPLanguageModel(nn.Module):
    """Next-token logits from the previous ``context`` tokens.

    Args:
        vocab_size: number of token ids.
        context: how many previous tokens the model sees (the n − 1 of an n-gram).
        embed_dim: width of each token's embedding.
        hidden: width of the tanh hidden layer.
        dropout: dropout on the hidden layer during training.
    """

    def __init__(
        self, vocab_size: int, context: int, embed_dim: int, hidden: int, dropout: float = 0.0
    ):
        super().__init__()
        self.vocab_size, self.context = vocab_size, context
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.hidden = nn.Linear(context * embed_dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden, vocab_size)

    def forward(self, idx, targets=None):
        """``idx`` (B, context) int → logits (B, V); with ``targets`` (B,) also the mean loss."""
        if idx.ndim != 2 or idx.shape[1] != self.context:
            raise ValueError(
                f"MLPLanguageModel expects token ids of shape (batch, {self.context}), "
                f"got {tuple(idx.shape)}"
            )
        x = self.embedding(idx)  # (B, context, D)
        x = x.reshape(x.shape[0], -1)  # (B, context * D)
        x = self.dropout(self.hidden(x).tanh())  # (B, H)
        logits = self.output(x)  # (B, V)
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits, targets)

    def generate(
        self,
        idx,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
        **options,
    ):
        """Continue each sequence of ``idx`` (B, T), T >= ``context``, by up to
        ``max_new_tokens`` tokens, each predicted from the ``context`` tokens before it;
        returns the ids (B, T + new). The sampling arguments are those of
        :func:`lmcore.generate.generate` (``temperature`` 0: always the likeliest token).

        Example:
            >>> import numpy as np
            >>> model = MLPLanguageModel(vocab_size=7, context=3, embed_dim=4, hidden=8)
            >>> model.generate(np.zeros((2, 3), np.int64), max_new_tokens=5, seed=0).shape
            (2, 8)
        """
        return generate(self, idx, max_new_tokens, temperature, top_k, seed, **options)

    def next_token_logits(self, idx, state=None):
        """Logits (B, V) of the token after ``idx`` (B, T), from its last ``context``
        tokens; an MLP keeps no state between calls, so ``state`` stays None."""
        if idx.shape[1] < self.context:
            raise ValueError(
                f"MLPLanguageModel needs a prompt of at least {self.context} tokens (its "
                f"context), got {idx.shape[1]}; pad it on the left, e.g. with newlines."
            )
        return self(idx[:, -self.context :]).data, None
