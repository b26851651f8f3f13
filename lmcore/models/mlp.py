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
