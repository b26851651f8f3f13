"""Recurrent layers with PyTorch's names, shapes, gate order, parameters and init.

:class:`RNN`, :class:`LSTM` and :class:`GRU` run stacks of layers over whole sequences
(one fused operation per layer, see :mod:`lmcore.functional.recurrence`); :class:`RNNCell`,
:class:`LSTMCell` and :class:`GRUCell` take one step. Sequences are (T, B, I), or
(B, T, I) with ``batch_first=True``, or (T, I) for a single unbatched sequence. States
are (num_layers, B, H) and always batch-second, as in PyTorch. Layer ``k`` has
``weight_ih_l{k}`` (G*H, in), ``weight_hh_l{k}`` (G*H, H), ``bias_ih_l{k}`` and
``bias_hh_l{k}`` (G*H,) with G = 1 (RNN), 4 (LSTM: i, f, g, o) or 3 (GRU: r, z, n), all
drawn from U(-1/sqrt(H), 1/sqrt(H)), so a PyTorch state dict loads as is. With
``bidirectional=True`` each layer also has the ``*_l{k}_reverse`` weights of a second
direction, which reads the sequence backwards; its outputs follow the first direction's
(T, B, 2H), and states are (2 * num_layers, B, H). LSTM projections are not implemented.

Example:
    >>> import numpy as np
    >>> from lmcore.autograd import Tensor
    >>> lstm = LSTM(input_size=8, hidden_size=16, num_layers=2, batch_first=True)
    >>> x = Tensor(np.ones((4, 10, 8), np.float32))          # (B, T, I)
    >>> output, (h_n, c_n) = lstm(x)
    >>> output.shape, h_n.shape, c_n.shape
    ((4, 10, 16), (2, 4, 16), (2, 4, 16))
    >>> [name for name, _ in lstm.named_parameters()][:4]
    ['weight_ih_l0', 'weight_hh_l0', 'bias_ih_l0', 'bias_hh_l0']
"""

from __future__ import annotations

import math

import numpy as np

from lmcore import backend
from lmcore import functional as F
from lmcore.autograd import Tensor
from lmcore.functional.recurrence import (
    NONLINEARITIES,
    GRURecurrence,
    LSTMRecurrence,
    RNNRecurrence,
)
from lmcore.nn import init
from lmcore.nn.module import Module, Parameter

__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNCell"]


def _as_tensor(value) -> Tensor:
    return value if isinstance(value, Tensor) else Tensor(value)


def _check_sizes(input_size: int, hidden_size: int, num_layers: int = 1) -> None:
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(num_layers, (int, np.integer)) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")


class _Recurrent(Module):
    """What the recurrent layers and cells share: parameters, init and the per-mode step.

    ``mode`` is ``"rnn"``, ``"lstm"`` or ``"gru"``; ``gates`` is G.
    """

    mode: str
    gates: int

    def _make_parameters(self, suffix: str, in_features: int, bias: bool, device, dtype):
        """``weight_ih{suffix}`` (G*H, in), ``weight_hh{suffix}`` (G*H, H) and the biases."""
        xp, dtype = backend.xp(device), np.dtype(dtype or np.float32)
        rows = self.gates * self.hidden_size
        shapes = {"weight_ih": (rows, in_features), "weight_hh": (rows, self.hidden_size)}
        if bias:
            shapes |= {"bias_ih": (rows,), "bias_hh": (rows,)}
        for name, shape in shapes.items():
            setattr(self, name + suffix, Parameter(xp.zeros(shape, dtype=dtype)))
        if not bias:
            self.register_parameter("bias_ih" + suffix, None)
            self.register_parameter("bias_hh" + suffix, None)

    def reset_parameters(self) -> None:
        """Every weight and bias from U(-1/sqrt(H), 1/sqrt(H)), PyTorch's init."""
        bound = 1 / math.sqrt(self.hidden_size)
        for param in self.parameters():
            init.uniform_(param, -bound, bound)

    def _layer(self, x: Tensor | None, state: tuple[Tensor, ...], suffix: str, projected=None):
        """One layer over ``x`` (T, B, in) from ``state`` ((h0,) or (h0, c0), each (B, H)):
        returns (output (T, B, H), h_T) or, for an LSTM, (output, h_T, c_T). ``projected``,
        when given, is the input projection ``x @ W_ih^T + b_ih`` (T, B, G*H) already made."""
        w_ih, w_hh, b_ih, b_hh = (
            getattr(self, name + suffix)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )
        gx = F.linear(x, w_ih, b_ih) if projected is None else projected  # (T, B, G*H)
        if self.mode == "lstm":
            recurrence = LSTMRecurrence()
        elif self.mode == "gru":
            recurrence = GRURecurrence()
        else:
            recurrence = RNNRecurrence(self.nonlinearity)
        inputs = (gx, *state, w_hh)
        return recurrence(*inputs) if b_hh is None else recurrence(*inputs, b_hh)

    def _zeros(self, *shape: int) -> Tensor:
        """A zero state on the device and with the dtype of the weights."""
        weight = next(self.parameters())
        xp = backend.get_array_module(weight.data)
        return Tensor(xp.zeros(shape, dtype=weight.dtype))

    def _split_state(self, hx, expected: tuple[int, ...]) -> tuple[Tensor, ...]:
        """``hx`` (a tensor, or for an LSTM a pair) checked against ``expected``."""
        names = ("h0", "c0") if self.mode == "lstm" else ("h0",)
        if self.mode == "lstm" and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError(
                f"{self!r} takes its initial state as a pair (h0, c0), each of shape "
                f"{expected}, got {type(hx).__name__}; pass hx=(h0, c0) or None for zeros."
            )
        states = tuple(hx) if self.mode == "lstm" else (hx,)
        states = tuple(_as_tensor(s) for s in states)
        for name, state in zip(names, states):
            if state.shape != expected:
                raise ValueError(
                    f"{self!r} expects {name} of shape {expected}, got {tuple(state.shape)}"
                    f"{self._state_layout}."
                )
        return states


class _RecurrentStack(_Recurrent):
    """A stack of recurrent layers over whole sequences (base of RNN, LSTM, GRU)."""

    _state_layout = (
        " (num_layers, batch, hidden_size); states are batch-second also with batch_first=True"
    )
    nonlinearity = "tanh"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        _check_sizes(input_size, hidden_size, num_layers)
        if not 0 <= dropout <= 1:
            raise ValueError(f"dropout must be a probability between 0 and 1, got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        self.bidirectional = bool(bidirectional)
        directions = self._directions()
        for k in range(num_layers):
            in_features = input_size if k == 0 else len(directions) * hidden_size
            for direction in directions:
                self._make_parameters(f"_l{k}{direction}", in_features, bias, device, dtype)
        self.reset_parameters()

    def _directions(self) -> tuple[str, ...]:
        """The parameter-name suffix of each direction: PyTorch's ``""`` and ``"_reverse"``."""
        return ("", "_reverse") if self.bidirectional else ("",)

    def forward(self, input, hx=None):
        """``input`` (T, B, I) (or (B, T, I) with ``batch_first``, or (T, I) unbatched) and
        the initial state (zeros when None) → (output (T, B, D*H), final state), the final
        state being h_n (num_layers*D, B, H), or (h_n, c_n) for an LSTM; D is 2 when
        ``bidirectional`` (the second direction reads the sequence backwards, and its
        outputs are concatenated after the first's, as in PyTorch), else 1."""
        x = _as_tensor(input)
        unbatched = x.ndim == 2
        x = self._time_major(x)  # (T, B, I)
        states = self._initial_states(hx, x.shape[1], unbatched)
        x, final = self._run(x, states)
        if unbatched:
            x, final = x.squeeze(1), tuple(s.squeeze(1) for s in final)  # (T, H), (L, H)
        elif self.batch_first:
            x = x.transpose(0, 1)  # (B, T, H)
        return x, (final if self.mode == "lstm" else final[0])

    def forward_projected(self, input_projection, hx=None):
        """The stack run from the first layer's input projection, ``x @ W_ih_l0^T + b_ih_l0``
        (T, B, G*H), made by the caller: time-major (also with ``batch_first``), batched,
        one direction only. Returns what :meth:`forward` returns for ``x``. A language model uses it with
        :func:`lmcore.functional.embedding_linear`, which projects each token of a small
        vocabulary once.

        Example:
            >>> import numpy as np
            >>> lstm = LSTM(3, 4)
            >>> x = Tensor(np.ones((5, 2, 3), np.float32))
            >>> gx = F.linear(x, lstm.weight_ih_l0, lstm.bias_ih_l0)  # (5, 2, 16)
            >>> bool(np.allclose(lstm.forward_projected(gx)[0].numpy(), lstm(x)[0].numpy()))
            True
        """
        gx = _as_tensor(input_projection)
        width = self.gates * self.hidden_size
        if self.bidirectional or gx.ndim != 3 or gx.shape[-1] != width or gx.shape[0] == 0:
            raise ValueError(
                f"{self!r}.forward_projected expects the first layer's input projection of "
                f"shape (time, batch, {width}) for one direction, got {tuple(gx.shape)}"
                f"{' on a bidirectional stack' if self.bidirectional else ''}; call the "
                "module on the input itself instead."
            )
        x, final = self._run(None, self._initial_states(hx, gx.shape[1], False), gx)
        if self.batch_first:
            x = x.transpose(0, 1)  # (B, T, H)
        return x, (final if self.mode == "lstm" else final[0])

    def _initial_states(self, hx, batch: int, unbatched: bool) -> tuple[Tensor, ...]:
        """The initial states, each (num_layers*D, B, H): zeros, or ``hx`` checked."""
        L, D, H = self.num_layers, len(self._directions()), self.hidden_size
        if hx is None:
            count = 2 if self.mode == "lstm" else 1
            return tuple(self._zeros(L * D, batch, H) for _ in range(count))
        states = self._split_state(hx, (L * D, H) if unbatched else (L * D, batch, H))
        return tuple(s.unsqueeze(1) for s in states) if unbatched else states  # (L*D, B, H)

    def _run(self, x, states, projected=None):
        """Every layer and direction over ``x`` (T, B, I) from ``states`` → (output
        (T, B, D*H), final states); ``projected`` replaces the first layer's projection."""
        directions = self._directions()
        D = len(directions)
        finals = []
        for k in range(self.num_layers):
            if k > 0 and self.training and self.dropout > 0:
                x = F.dropout(x, self.dropout)
            outputs = []
            for d, direction in enumerate(directions):
                start = tuple(s[k * D + d] for s in states)  # each (B, H)
                if direction:  # backwards in time, then back in order
                    out, *final = self._layer(x[::-1], start, f"_l{k}{direction}")
                    out = out[::-1]
                else:
                    first = projected if k == 0 else None
                    out, *final = self._layer(x, start, f"_l{k}", first)
                outputs.append(out)  # (T, B, H)
                finals.append(final)
            x = outputs[0] if D == 1 else F.cat(outputs, dim=-1)  # (T, B, D*H)
        final = tuple(F.stack(list(layer_states), dim=0) for layer_states in zip(*finals))
        return x, final

    def _time_major(self, x: Tensor) -> Tensor:
        """``x`` checked and made (T, B, I)."""
        size = self.input_size
        layout = "(batch, time, features)" if self.batch_first else "(time, batch, features)"
        if x.ndim not in (2, 3) or x.shape[-1] != size:
            raise ValueError(
                f"{self!r} expects input of shape {layout} with {size} features, or (time, {size}) for "
                f"one unbatched sequence; got {tuple(x.shape)}."
            )
        if x.ndim == 2:
            x = x.unsqueeze(1)  # (T, 1, I)
        elif self.batch_first:
            x = x.transpose(0, 1)
        if x.shape[0] == 0:
            raise ValueError(f"{self!r} got a sequence of no steps; T must be at least 1.")
        return x

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if self.mode == "rnn" and self.nonlinearity != "tanh":
            text += f", nonlinearity={self.nonlinearity!r}"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        if self.dropout:
            text += f", dropout={self.dropout}"
        if self.bidirectional:
            text += ", bidirectional=True"
        return text


class RNN(_RecurrentStack):
    """Elman RNN: ``h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)`` (or relu), layer
    after layer; returns (output, h_n).

    Example:
        >>> import numpy as np
        >>> rnn = RNN(3, 5, num_layers=2, nonlinearity="relu")
        >>> output, h_n = rnn(np.ones((7, 2, 3), np.float32))
        >>> output.shape, h_n.shape
        ((7, 2, 5), (2, 2, 5))
    """

    mode, gates = "rnn", 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
    ):
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            device, dtype,
        )  # fmt: skip
        self.nonlinearity = nonlinearity


class LSTM(_RecurrentStack):
    """Long short-term memory (gates i, f, g, o as in PyTorch); returns (output, (h_n, c_n))
    and takes ``hx=(h0, c0)``. See the module's example."""

    mode, gates = "lstm", 4


class GRU(_RecurrentStack):
    """Gated recurrent unit (gates r, z, n as in PyTorch, with
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``); returns (output, h_n).

    Example:
        >>> import numpy as np
        >>> output, h_n = GRU(3, 5, batch_first=True)(np.ones((2, 7, 3), np.float32))
        >>> output.shape, h_n.shape
        ((2, 7, 5), (1, 2, 5))
    """

    mode, gates = "gru", 3


# ---------------------------------------------------------------------------
# Cells: one time step


class _Cell(_Recurrent):
    """One step of a recurrent layer (base of RNNCell, LSTMCell, GRUCell)."""

    _state_layout = " (batch, hidden_size)"
    nonlinearity = "tanh"

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None
    ):
        super().__init__()
        _check_sizes(input_size, hidden_size)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self._make_parameters("", input_size, bias, device, dtype)
        self.reset_parameters()

    def forward(self, input, hx=None):
        """``input`` (B, I) or (I,) and the state (zeros when None) → the next state:
        h' (B, H), or (h', c') for an LSTM cell."""
        x = _as_tensor(input)
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(
                f"{self!r} expects input of shape (batch, {self.input_size}) or "
                f"({self.input_size},); got {tuple(x.shape)}."
            )
        unbatched = x.ndim == 1
        x = x.reshape(1, 1, self.input_size) if unbatched else x.unsqueeze(0)  # (1, B, I)
        B, H = x.shape[1], self.hidden_size
        if hx is None:
            states = tuple(self._zeros(B, H) for _ in range(2 if self.mode == "lstm" else 1))
        else:
            states = self._split_state(hx, (H,) if unbatched else (B, H))
            if unbatched:
                states = tuple(s.unsqueeze(0) for s in states)  # (1, H)
        _, *final = self._layer(x, states, "")  # each (B, H)
        if unbatched:
            final = [s.squeeze(0) for s in final]
        return tuple(final) if self.mode == "lstm" else final[0]

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.mode == "rnn" and self.nonlinearity != "tanh":
            text += f", nonlinearity={self.nonlinearity!r}"
        return text + ("" if self.bias else ", bias=False")


class RNNCell(_Cell):
    """One Elman RNN step: ``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)`` (or relu).

    Example:
        >>> import numpy as np
        >>> RNNCell(3, 5)(np.ones((2, 3), np.float32)).shape
        (2, 5)
    """

    mode, gates = "rnn", 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device=None,
        dtype=None,
    ):
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, device, dtype)
        self.nonlinearity = nonlinearity


class LSTMCell(_Cell):
    """One LSTM step: ``(h', c') = cell(x, (h, c))``.

    Example:
        >>> import numpy as np
        >>> h, c = LSTMCell(3, 5)(np.ones((2, 3), np.float32))
        >>> h.shape, c.shape
        ((2, 5), (2, 5))
    """

    mode, gates = "lstm", 4


class GRUCell(_Cell):
    """One GRU step: ``h' = cell(x, h)``.

    Example:
        >>> import numpy as np
        >>> GRUCell(3, 5)(np.ones(3, np.float32)).shape
        (5,)
    """

    mode, gates = "gru", 3
