"""Recurrent layers as fused operations: one graph node runs a whole sequence.

A recurrent layer has two parts, and each is computed the fast way:

* the **input projection** ``x_t @ W_ih^T + b_ih`` does not depend on earlier steps,
  so all T steps are one matrix multiply of (T*B, I) by (I, G*H)
  (:func:`lmcore.functional.arithmetic.linear`; G is the number of gates: 1, 4 or 3);
* the **recurrence** ``h_t = f(gx_t + h_{t-1} @ W_hh^T + b_hh)`` is one
  :class:`~lmcore.autograd.Function` that loops over time in ``forward`` and keeps the
  hidden states and gate activations; its ``backward`` is backpropagation through time
  written by hand: per step one (B, G*H) @ (G*H, H) product and a few elementwise
  operations (whatever does not depend on the step before is computed for several steps
  at once: for all of them on a GPU, four at a time on NumPy, where four steps' arrays
  stay in the CPU's cache), and at the end the gradients of ``W_hh`` and ``b_hh`` as one matrix multiply
  over all T*B rows.

So a layer over T steps is two nodes of the graph, not hundreds of tiny ones.
Sequences are time-major: (T, B, features). Gates follow PyTorch's order (LSTM: i, f,
g, o; GRU: r, z, n). ``exp`` is about twice as fast as ``tanh`` in NumPy, so gates are
computed as sigmoids, ``1 / (1 + exp(-a))`` (an overflow to inf correctly gives 0), and
an LSTM's tanh gate as ``2 * sigmoid(2a) - 1``: one ``exp`` call serves all four gates.

Example:
    >>> import numpy as np
    >>> from lmcore.autograd import Tensor
    >>> T, B, I, H = 5, 2, 3, 4
    >>> rng = np.random.default_rng(0)
    >>> x = Tensor(rng.standard_normal((T, B, I)), requires_grad=True)
    >>> h0, c0 = Tensor(np.zeros((B, H))), Tensor(np.zeros((B, H)))
    >>> w_ih = Tensor(rng.standard_normal((4 * H, I)), requires_grad=True)
    >>> w_hh = Tensor(rng.standard_normal((4 * H, H)), requires_grad=True)
    >>> output, h_n, c_n = lstm_layer(x, h0, c0, w_ih, w_hh)
    >>> output.shape, h_n.shape
    ((5, 2, 4), (2, 4))
    >>> output.sum().backward()
    >>> w_hh.grad.shape
    (16, 4)
"""

from __future__ import annotations

import numpy as np

from lmcore import backend
from lmcore.autograd import Function, Tensor
from lmcore.functional.arithmetic import linear

__all__ = [
    "GRURecurrence",
    "LSTMRecurrence",
    "RNNRecurrence",
    "gru_layer",
    "lstm_layer",
    "rnn_layer",
]

NONLINEARITIES = ("tanh", "relu")
_FACTOR_SPAN = 4  # steps of backward factors made at once on NumPy: they stay in cache


# ---------------------------------------------------------------------------
# Helpers on arrays


def _sigmoid_of_negated_(xp, u):
    """``1 / (1 + exp(u))`` in place: the sigmoid of ``a`` when ``u = -a``. Large ``u``
    overflows ``exp`` to inf, which gives the right 0; NumPy's warning about it is muted."""
    with np.errstate(over="ignore"):
        xp.exp(u, out=u)
    u += 1
    xp.divide(1, u, out=u)  # NumPy's reciprocal of float32 is slower than this division


def _derivative_times_(xp, out, y, times, tanh: bool):
    """``out = y' * times`` in place, from the activation ``y``: ``(1 - y^2) * times``
    for a tanh, ``y * (1 - y) * times`` for a sigmoid."""
    if tanh:
        xp.multiply(y, y, out=out)
        xp.subtract(1, out, out=out)
    else:
        xp.subtract(1, y, out=out)
        out *= y
    out *= times


def _hidden_states(xp, h0, T: int):
    """A (T + 1, B, H) buffer whose first row is ``h0``: row t + 1 will hold h_t, so
    rows [:-1] are the states each step starts from and rows [1:] the outputs."""
    hs = xp.empty((T + 1,) + h0.shape, dtype=h0.dtype)
    hs[0] = h0
    return hs


def _start_gradient(xp, grad_final, like):
    """The gradient that flows into the last step from the final state (a fresh array)."""
    return xp.zeros_like(like) if grad_final is None else grad_final.copy()


def _recurrent_weight_grads(xp, grad_pre, h_prev, needs_weight: bool, needs_bias: bool):
    """dW_hh = sum_t grad_pre_t^T @ h_{t-1} and db_hh = sum_t grad_pre_t, each as one
    product over all T*B rows: grad_pre (T, B, G*H), h_prev (T, B, H)."""
    G = grad_pre.shape[-1]
    rows = grad_pre.reshape(-1, G)  # (T*B, G*H)
    grad_w = rows.T @ h_prev.reshape(-1, h_prev.shape[-1]) if needs_weight else None
    grad_b = xp.ones(rows.shape[0], dtype=rows.dtype) @ rows if needs_bias else None
    return grad_w, grad_b


# ---------------------------------------------------------------------------
# The recurrences


class RNNRecurrence(Function):
    """``h_t = tanh(gx_t + h_{t-1} @ W_hh^T + b_hh)`` (or relu) for t = 1..T.

    Inputs: ``gx`` (T, B, H) = x @ W_ih^T + b_ih, ``h0`` (B, H), ``w_hh`` (H, H) and,
    when the layer has biases, ``b_hh`` (H,). Outputs: every h_t (T, B, H) and h_T (B, H).
    """

    def __init__(self, nonlinearity: str = "tanh"):
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity

    def forward(self, gx, h0, w_hh, b_hh=None):
        xp = backend.get_array_module(gx)
        T = gx.shape[0]
        hs = _hidden_states(xp, h0, T)  # (T + 1, B, H)
        w_hh_t = w_hh.T  # (H, H)
        product = xp.empty_like(h0)  # (B, H)
        for t in range(T):
            xp.matmul(hs[t], w_hh_t, out=product)
            h = hs[t + 1]
            xp.add(gx[t], product, out=h)
            if b_hh is not None:
                h += b_hh
            if self.nonlinearity == "tanh":
                xp.tanh(h, out=h)
            else:
                xp.maximum(h, 0, out=h)
        self.hs, self.w_hh = hs, w_hh
        return hs[1:], hs[T]

    def backward(self, grad_output, grad_final):
        xp = backend.get_array_module(self.hs)
        hs, w_hh = self.hs, self.w_hh
        T = hs.shape[0] - 1
        h = hs[1:]  # (T, B, H)
        slope = 1 - h * h if self.nonlinearity == "tanh" else (h > 0).astype(h.dtype)
        grad_pre = xp.empty_like(h)  # d loss / d pre-activation, (T, B, H)
        grad_h = _start_gradient(xp, grad_final, hs[0])  # (B, H)
        for t in reversed(range(T)):
            if grad_output is not None:
                grad_h += grad_output[t]
            xp.multiply(grad_h, slope[t], out=grad_pre[t])
            xp.matmul(grad_pre[t], w_hh, out=grad_h)
        has_bias = len(self.needs_grad) > 3
        grad_w, grad_b = _recurrent_weight_grads(
            xp, grad_pre, hs[:-1], self.needs_grad[2], has_bias and self.needs_grad[3]
        )
        return (grad_pre, grad_h, grad_w) + ((grad_b,) if has_bias else ())


class LSTMRecurrence(Function):
    """The LSTM recurrence, gates in PyTorch's order (input i, forget f, cell g, output o)::

        i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of (gx_t + h_{t-1} @ W_hh^T + b_hh)
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)

    Inputs: ``gx`` (T, B, 4H) = x @ W_ih^T + b_ih, ``h0`` and ``c0`` (B, H), ``w_hh``
    (4H, H) and, with biases, ``b_hh`` (4H,). Outputs: every h_t (T, B, H), h_T and c_T.
    """

    def forward(self, gx, h0, c0, w_hh, b_hh=None):
        xp = backend.get_array_module(gx)
        T, B, G = gx.shape
        H = G // 4
        # One exp for all gates: the pre-activations are scaled by -1 (i, f, o) and -2 (g),
        # folded into W_hh and, a few steps at a time, into gx, so that 1 / (1 + exp(u))
        # gives sigmoid(a) for i, f, o and sigmoid(2a) for g, and tanh(a) = 2 sigmoid(2a) - 1.
        scale = xp.full(G, -1, dtype=gx.dtype)  # (4H,)
        scale[2 * H : 3 * H] = -2
        bias = None if b_hh is None else b_hh * scale  # (4H,)
        w_scaled_t = xp.ascontiguousarray((w_hh * scale[:, None]).T)  # (H, 4H)
        gates = xp.empty_like(gx)  # (T, B, 4H): the gate activations, step by step
        hs, cs = _hidden_states(xp, h0, T), _hidden_states(xp, c0, T)  # (T + 1, B, H)
        tanh_c = xp.empty((T, B, H), dtype=gx.dtype)
        product, input_times_cell = xp.empty((B, G), dtype=gx.dtype), xp.empty_like(h0)
        span = _FACTOR_SPAN if xp is np else T
        for t in range(T):
            if t % span == 0:  # the next few steps' scaled gx + b_hh, while it is in cache
                steps = slice(t, min(t + span, T))
                xp.multiply(gx[steps], scale, out=gates[steps])
                if bias is not None:
                    gates[steps] += bias
            a = gates[t]  # (B, 4H)
            xp.matmul(hs[t], w_scaled_t, out=product)
            a += product
            _sigmoid_of_negated_(xp, a)
            i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
            g *= 2
            g -= 1
            c = cs[t + 1]
            xp.multiply(f, cs[t], out=c)
            xp.multiply(i, g, out=input_times_cell)
            c += input_times_cell
            xp.tanh(c, out=tanh_c[t])
            xp.multiply(o, tanh_c[t], out=hs[t + 1])
        self.gates, self.hs, self.cs, self.tanh_c, self.w_hh = gates, hs, cs, tanh_c, w_hh
        return hs[1:], hs[T], cs[T]

    def backward(self, grad_output, grad_h_final, grad_c_final):
        xp = backend.get_array_module(self.gates)
        gates, hs, cs, tanh_c, w_hh = self.gates, self.hs, self.cs, self.tanh_c, self.w_hh
        T, B, G = gates.shape
        H = G // 4
        i, f, g, o = (gates[..., k * H : (k + 1) * H] for k in range(4))  # (T, B, H) each
        # What does not depend on the step before is made for a few steps at once (on
        # NumPy, few enough to stay in cache; on a GPU, all of them), gate-major in
        # contiguous slots: d pre(i, f, g) / d c_t, d pre(o) / d h_t, d c_t / d h_t.
        span = _FACTOR_SPAN if xp is np else T
        factors = xp.empty((min(span, T), 5, B, H), dtype=gates.dtype)
        ifg_from_c, o_from_h, cell_from_h = factors[:, :3], factors[:, 3], factors[:, 4]
        grad_pre = xp.empty((T, B, 4, H), dtype=gates.dtype)  # d loss / d pre-activations
        grad_h = _start_gradient(xp, grad_h_final, hs[0])  # (B, H)
        grad_c = _start_gradient(xp, grad_c_final, cs[0])
        from_h = xp.empty_like(grad_c)
        w_hh_t = w_hh.T  # (H, 4H): BLAS runs (H, 4H) @ (4H, B) faster than (B, 4H) @ (4H, H)
        for start in reversed(range(0, T, span)):
            steps = slice(start, min(start + span, T))
            n = steps.stop - start
            pairs = ((i, g), (f, cs[:-1]), (g, i), (o, tanh_c), (tanh_c, o))
            for k, (gate, times) in enumerate(pairs):
                _derivative_times_(xp, factors[:n, k], gate[steps], times[steps], tanh=k in (2, 4))
            for t in reversed(range(start, steps.stop)):
                s = t - start
                if grad_output is not None:
                    grad_h += grad_output[t]
                xp.multiply(grad_h, cell_from_h[s], out=from_h)
                grad_c += from_h
                xp.multiply(grad_c, ifg_from_c[s], out=grad_pre[t, :, :3].transpose(1, 0, 2))
                xp.multiply(grad_h, o_from_h[s], out=grad_pre[t, :, 3])
                grad_c *= f[t]
                xp.matmul(w_hh_t, grad_pre[t].reshape(B, G).T, out=grad_h.T)
        grad_pre = grad_pre.reshape(T, B, G)
        has_bias = len(self.needs_grad) > 4
        grad_w, grad_b = _recurrent_weight_grads(
            xp, grad_pre, hs[:-1], self.needs_grad[3], has_bias and self.needs_grad[4]
        )
        return (grad_pre, grad_h, grad_c, grad_w) + ((grad_b,) if has_bias else ())


class GRURecurrence(Function):
    """The GRU recurrence, gates in PyTorch's order (reset r, update z, new n)::

        r, z = sigmoid(gx_t[r, z] + h_{t-1} @ W_h[r, z]^T + b_h[r, z])
        n = tanh(gx_t[n] + r * (h_{t-1} @ W_hn^T + b_hn))
        h_t = (1 - z) * n + z * h_{t-1}

    Inputs: ``gx`` (T, B, 3H) = x @ W_ih^T + b_ih, ``h0`` (B, H), ``w_hh`` (3H, H) and,
    with biases, ``b_hh`` (3H,). Outputs: every h_t (T, B, H) and h_T (B, H).
    """

    def forward(self, gx, h0, w_hh, b_hh=None):
        xp = backend.get_array_module(gx)
        T, B, G = gx.shape
        H = G // 3
        hs = _hidden_states(xp, h0, T)  # (T + 1, B, H)
        gates = xp.empty_like(gx)  # r, z, n activations, (T, B, 3H)
        hidden_n = xp.empty((T, B, H), dtype=gx.dtype)  # h_{t-1} @ W_hn^T + b_hn
        w_hh_t = w_hh.T  # (H, 3H)
        product = xp.empty((B, G), dtype=gx.dtype)
        for t in range(T):
            xp.matmul(hs[t], w_hh_t, out=product)
            if b_hh is not None:
                product += b_hh
            rz, n = gates[t, :, : 2 * H], gates[t, :, 2 * H :]
            xp.add(gx[t, :, : 2 * H], product[:, : 2 * H], out=rz)
            xp.negative(rz, out=rz)
            _sigmoid_of_negated_(xp, rz)
            r, z = rz[:, :H], rz[:, H:]
            hidden_n[t] = product[:, 2 * H :]
            xp.multiply(r, hidden_n[t], out=n)
            n += gx[t, :, 2 * H :]
            xp.tanh(n, out=n)
            h = hs[t + 1]  # n + z * (h_{t-1} - n)
            xp.subtract(hs[t], n, out=h)
            h *= z
            h += n
        self.gates, self.hidden_n, self.hs, self.w_hh = gates, hidden_n, hs, w_hh
        return hs[1:], hs[T]

    def backward(self, grad_output, grad_final):
        xp = backend.get_array_module(self.gates)
        gates, hidden_n, hs, w_hh = self.gates, self.hidden_n, self.hs, self.w_hh
        T, B, G = gates.shape
        H = G // 3
        r, z, n = (gates[..., k * H : (k + 1) * H] for k in range(3))  # (T, B, H) each
        h_prev = hs[:-1]
        # Factors from d loss / d h_t to each pre-activation, for all steps at once; the
        # gradient of gx and that of (h @ W_hh^T + b_hh) differ only in the n part.
        n_from_h = (1 - z) * (1 - n * n)
        input_from_h = xp.empty((T, B, 3, H), dtype=gates.dtype)  # d gx / d h_t
        input_from_h[:, :, 0] = n_from_h * hidden_n * r * (1 - r)
        input_from_h[:, :, 1] = (h_prev - n) * z * (1 - z)
        input_from_h[:, :, 2] = n_from_h
        hidden_from_h = input_from_h.copy()  # d (h W_hh^T + b_hh) / d h_t
        hidden_from_h[:, :, 2] *= r
        grad_input = xp.empty_like(input_from_h)  # (T, B, 3, H)
        grad_hidden = xp.empty_like(input_from_h)
        grad_h = _start_gradient(xp, grad_final, hs[0])  # (B, H)
        product = xp.empty_like(grad_h)
        for t in reversed(range(T)):
            if grad_output is not None:
                grad_h += grad_output[t]
            xp.multiply(grad_h[:, None, :], input_from_h[t], out=grad_input[t])
            xp.multiply(grad_h[:, None, :], hidden_from_h[t], out=grad_hidden[t])
            xp.matmul(grad_hidden[t].reshape(B, G), w_hh, out=product)
            grad_h *= z[t]
            grad_h += product
        has_bias = len(self.needs_grad) > 3
        grad_w, grad_b = _recurrent_weight_grads(
            xp,
            grad_hidden.reshape(T, B, G),
            h_prev,
            self.needs_grad[2],
            has_bias and self.needs_grad[3],
        )
        return (grad_input.reshape(T, B, G), grad_h, grad_w) + ((grad_b,) if has_bias else ())


# ---------------------------------------------------------------------------
# One layer: input projection for all steps, then the recurrence


def _with_bias(inputs: tuple, bias_hh) -> tuple:
    return inputs if bias_hh is None else inputs + (bias_hh,)


def rnn_layer(
    input: Tensor,
    h0: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    nonlinearity: str = "tanh",
) -> tuple[Tensor, Tensor]:
    """An Elman RNN layer over a time-major sequence: ``input`` (T, B, I), ``h0`` (B, H),
    ``weight_ih`` (H, I), ``weight_hh`` (H, H) → (every h_t (T, B, H), h_T (B, H)).

    Example:
        >>> import numpy as np
        >>> x, h0 = Tensor(np.ones((7, 2, 3))), Tensor(np.zeros((2, 4)))
        >>> out, h_n = rnn_layer(x, h0, Tensor(np.ones((4, 3))), Tensor(np.eye(4)))
        >>> out.shape, bool((out.data[-1] == h_n.data).all())
        ((7, 2, 4), True)
    """
    gx = linear(input, weight_ih, bias_ih)  # (T, B, H): all steps in one product
    return RNNRecurrence(nonlinearity)(*_with_bias((gx, h0, weight_hh), bias_hh))


def lstm_layer(
    input: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """An LSTM layer over a time-major sequence: ``input`` (T, B, I), ``h0`` and ``c0``
    (B, H), ``weight_ih`` (4H, I), ``weight_hh`` (4H, H) → (every h_t (T, B, H), h_T, c_T).
    See the module's example."""
    gx = linear(input, weight_ih, bias_ih)  # (T, B, 4H): all steps in one product
    return LSTMRecurrence()(*_with_bias((gx, h0, c0, weight_hh), bias_hh))


def gru_layer(
    input: Tensor,
    h0: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """A GRU layer over a time-major sequence: ``input`` (T, B, I), ``h0`` (B, H),
    ``weight_ih`` (3H, I), ``weight_hh`` (3H, H) → (every h_t (T, B, H), h_T (B, H)).

    Example:
        >>> import numpy as np
        >>> x, h0 = Tensor(np.ones((7, 2, 3))), Tensor(np.zeros((2, 4)))
        >>> gru_layer(x, h0, Tensor(np.ones((12, 3))), Tensor(np.ones((12, 4))))[0].shape
        (7, 2, 4)
    """
    gx = linear(input, weight_ih, bias_ih)  # (T, B, 3H): all steps in one product
    return GRURecurrence()(*_with_bias((gx, h0, weight_hh), bias_hh))
