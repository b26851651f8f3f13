"""A recurrent language model: token embedding → RNN, LSTM or GRU stack → logits.

The model reads token ids (B, T) and predicts the next token at every position. Unlike
a fixed-window model it carries a hidden state, so it can read a stream far longer than
one batch: give each batch the state the previous batch ended with, detached with
:func:`detach_state`, and gradients flow back through the T steps of the batch only
(truncated backpropagation through time; batches from
:class:`~lmcore.data.batches.ContiguousBatches` continue each other row by row).

Example:
    >>> import numpy as np
    >>> from lmcore.data.batches import ContiguousBatches
    >>> model = RNNLanguageModel(vocab_size=10, embed_dim=8, hidden_size=16, cell="lstm")
    >>> state = None
    >>> for x, y in ContiguousBatches(np.arange(100) % 10, block_size=8, batch_size=4):
    ...     logits, loss, state = model(x, y, state)
    ...     loss.backward()
    ...     state = detach_state(state)      # keep the values, cut the graph
    >>> logits.shape, state[0].shape         # (B, T, V); h_n (num_layers, B, H)
    ((4, 8, 10), (1, 4, 16))
"""

from __future__ import annotations

from lmcore import backend, nn
from lmcore import functional as F
from lmcore.autograd import Tensor, detach_state
from lmcore.generate import generate
from lmcore.models.token_ids import checked_token_ids
from lmcore.nn.recurrent import GRU, LSTM, RNN

__all__ = ["RNNLanguageModel", "detach_state"]

CELLS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


class RNNLanguageModel(nn.Module):
    """Next-token logits from an embedding, a recurrent stack and a linear read-out.

    Args:
        vocab_size: number of token ids.
        embed_dim: width of each token's embedding.
        hidden_size: width of the recurrent state.
        num_layers: recurrent layers stacked.
        cell: ``"rnn"`` (tanh), ``"lstm"`` or ``"gru"``.
        dropout: dropout on the embeddings, between recurrent layers and before the
            read-out, during training (Zaremba et al., 2014: never on the recurrence).

    The recurrent stack is ``self.rnn`` (an :class:`~lmcore.nn.recurrent.LSTM` etc.), so its
    parameters are named ``rnn.weight_ih_l0`` and so on, as in PyTorch.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        hidden_size: int,
        num_layers: int = 1,
        cell: str = "lstm",
        dropout: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        self.vocab_size, self.cell = vocab_size, cell
        self.embedding = nn.Embedding(vocab_size, embed_dim, device=device, dtype=dtype)
        self.rnn = CELLS[cell](
            embed_dim, hidden_size, num_layers, dropout=dropout, device=device, dtype=dtype
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size, device=device, dtype=dtype)

    def forward(self, idx, targets=None, state=None):
        """Logits (B, T, V) for token ids ``idx`` (B, T) and the state after the last token;
        returns ``(logits, state)``, or ``(logits, loss, state)`` with ``targets`` (B, T)
        (mean cross-entropy, targets of -100 ignored). ``state`` is what an earlier call
        returned (zeros when None): h_n (num_layers, B, H), or (h_n, c_n) for an LSTM."""
        idx = self._checked_ids(idx)
        # Time-major inside: the embedding gathers (T, B, E) directly and the recurrence
        # reads contiguous steps; the logits go back to (B, T, V) as a view.
        if self.training and self.dropout.p > 0:
            x, state = self.rnn(self.dropout(self.embedding(idx.T)), state)  # (T, B, H)
        else:  # nothing between the embedding and the first projection: one lookup
            gx = F.embedding_linear(  # (T, B, G*H)
                idx.T, self.embedding.weight, self.rnn.weight_ih_l0, self.rnn.bias_ih_l0
            )
            x, state = self.rnn.forward_projected(gx, state)  # (T, B, H)
        logits = self.head(self.dropout(x))  # (T, B, V)
        if targets is None:
            return logits.transpose(0, 1), state
        targets = targets.data if isinstance(targets, Tensor) else targets
        loss = F.cross_entropy(logits, backend.get_array_module(idx).asarray(targets).T)
        return logits.transpose(0, 1), loss, state

    def _checked_ids(self, idx):
        """``idx`` as an integer array on the model's device, or a clear error."""
        return checked_token_ids(idx, self.head.weight.data, "RNNLanguageModel", self.vocab_size)

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
        returns the ids (B, T + new) on the model's device.

        The prompt is read once; after that each new token costs one step of the
        recurrence, since the state summarizes everything before it. ``temperature``
        divides the logits (0: always the most likely token), ``top_k`` keeps the k most
        likely tokens, ``seed`` fixes the draws; ``options`` are the other arguments of
        :func:`lmcore.generate.generate` (``top_p``, ``repetition_penalty``, stop
        conditions). Runs in evaluation mode and restores the mode afterwards.

        Example:
            >>> import numpy as np
            >>> model = RNNLanguageModel(vocab_size=5, embed_dim=4, hidden_size=8, cell="gru")
            >>> model.generate(np.zeros((2, 3), np.int64), max_new_tokens=4, seed=0).shape
            (2, 7)
        """
        return generate(self, idx, max_new_tokens, temperature, top_k, seed, **options)

    def next_token_logits(self, idx, state=None):
        """Logits (B, V) of the token after ``idx`` (B, T) and the new state: the whole
        prompt at first (``state`` None), then only the last token (see
        :mod:`lmcore.generate`)."""
        logits, state = self(idx if state is None else idx[:, -1:], state=state)
        return logits.data[:, -1, :], state

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, cell={self.cell!r}"
