"""Differentiable operations on :class:`~lmcore.autograd.Tensor`.

Each operation is a :class:`~lmcore.autograd.Function` with ``forward`` and
``backward`` on raw arrays, written against the array module of its inputs
(``xp``: numpy or cupy), plus a small function with PyTorch's name and argument
order that wraps its inputs into tensors and calls it. Binary operations follow
NumPy broadcasting; their backward sums each gradient back to its input's shape.

Python numbers and arrays mixed with tensors are constants of the tensor's dtype.

The operations are grouped by family in the modules of this package (``arithmetic``,
``reductions``, ``shapes``, ``indexing``, ``activations``, ``regularization``, ``losses``,
``normalization``, ``attention``, ``conversion``); this namespace holds them all, as
``torch.nn.functional`` does (``lmcore.nn.functional`` is the same one). Importing it
gives :class:`~lmcore.autograd.Tensor` its operators (:mod:`lmcore.functional.tensor_methods`).

Example:
    >>> import numpy as np
    >>> from lmcore.autograd import Tensor
    >>> x = Tensor(np.ones((2, 3)), requires_grad=True)
    >>> loss = softmax(x * 2.0, dim=-1).sum()
    >>> loss.backward()
    >>> x.grad.shape
    (2, 3)
"""

from lmcore.functional import tensor_methods
from lmcore.functional.activations import (
    GELU,
    Exp,
    Log,
    LogSoftmax,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    exp,
    gelu,
    log,
    log_softmax,
    relu,
    sigmoid,
    softmax,
    tanh,
)
from lmcore.functional.arithmetic import (
    Add,
    Div,
    Linear,
    MatMul,
    Mul,
    Neg,
    Pow,
    Sub,
    add,
    div,
    linear,
    matmul,
    mul,
    neg,
    pow,
    sub,
)
from lmcore.functional.conversion import Cast, ToDevice, cast, to_device
from lmcore.functional.fused_attention import (
    MergeHeads,
    Rotary,
    ScaledDotProductAttention,
    SplitHeads,
    apply_rotary,
    causal_mask,
    merge_heads,
    rotary_tables,
    scaled_dot_product_attention,
    split_heads,
)
from lmcore.functional.indexing import (
    Embedding,
    EmbeddingLinear,
    GetItem,
    MaskedFill,
    Where,
    embedding,
    embedding_linear,
    getitem,
    masked_fill,
    where,
)
from lmcore.functional.loss_functions import CrossEntropy, cross_entropy, mse_loss
from lmcore.functional.normalization import (
    LayerNorm,
    ResidualLayerNorm,
    layer_norm,
    residual_layer_norm,
)
from lmcore.functional.recurrence import (
    GRURecurrence,
    LSTMRecurrence,
    RNNRecurrence,
    gru_layer,
    lstm_layer,
    rnn_layer,
)
from lmcore.functional.reductions import Max, Mean, Sum, argmax, max, mean, min, sum
from lmcore.functional.regularization import Dropout, dropout
from lmcore.functional.shapes import (
    Concat,
    Permute,
    Reshape,
    Split,
    Stack,
    cat,
    flatten,
    permute,
    reshape,
    split,
    squeeze,
    stack,
    transpose,
    unsqueeze,
)

__all__ = [
    "add", "sub", "mul", "div", "pow", "neg", "matmul", "linear",
    "sum", "mean", "max", "min", "argmax",
    "reshape", "flatten", "unsqueeze", "squeeze", "transpose", "permute",
    "getitem", "embedding", "embedding_linear", "cat", "stack", "split",
    "exp", "log", "tanh", "sigmoid", "relu", "gelu", "softmax", "log_softmax",
    "dropout", "where", "masked_fill", "cross_entropy", "mse_loss", "layer_norm",
    "residual_layer_norm", "scaled_dot_product_attention", "split_heads", "merge_heads",
    "causal_mask", "rotary_tables", "apply_rotary", "rnn_layer", "lstm_layer", "gru_layer",
    "cast", "to_device",
    # the operations themselves (Functions with forward and backward), for reading and reuse
    "Add", "Sub", "Mul", "Div", "Pow", "Neg", "MatMul", "Linear", "Sum", "Mean", "Max",
    "Reshape", "Permute", "Concat", "Stack", "Split", "GetItem", "Embedding", "EmbeddingLinear", "Where",
    "MaskedFill", "Exp", "Log", "Tanh", "Sigmoid", "ReLU", "GELU", "Softmax", "LogSoftmax",
    "Dropout", "CrossEntropy", "LayerNorm", "ResidualLayerNorm", "ScaledDotProductAttention",
    "SplitHeads", "MergeHeads", "Rotary", "RNNRecurrence", "LSTMRecurrence",
    "GRURecurrence", "Cast", "ToDevice",
]  # fmt: skip

tensor_methods.install()
