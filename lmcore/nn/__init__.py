"""Neural-network building blocks: :class:`Module`, :class:`Parameter`, layers and init.

Names, argument orders, shapes and parameter names follow ``torch.nn``, so code
and weights move between the two; :mod:`lmcore.nn.functional` is ``torch.nn.functional``'s
counterpart.

Example:
    >>> import numpy as np
    >>> from lmcore import nn
    >>> from lmcore.autograd import Tensor
    >>> model = nn.Sequential(nn.Linear(4, 16), nn.GELU(), nn.LayerNorm(16), nn.Linear(16, 2))
    >>> model(Tensor(np.ones((8, 4), np.float32))).shape
    (8, 2)
    >>> model.num_parameters()
    146
"""

from lmcore.nn import freezing, functional, init
from lmcore.nn.attention import MultiHeadAttention, RotaryEmbedding, SinusoidalPositionalEncoding
from lmcore.nn.layers import GELU, Dropout, Embedding, Identity, LayerNorm, Linear, ReLU, Tanh
from lmcore.nn.losses import CrossEntropyLoss, MSELoss
from lmcore.nn.module import (
    Module,
    ModuleDict,
    ModuleList,
    Parameter,
    ParameterDict,
    ParameterList,
    Sequential,
    functional_call,
)
from lmcore.nn.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from lmcore.nn.transformer import MLP, Block

__all__ = [
    "GRU",
    "GRUCell",
    "LSTM",
    "LSTMCell",
    "RNN",
    "RNNCell",
    "MLP",
    "Block",
    "MultiHeadAttention",
    "RotaryEmbedding",
    "SinusoidalPositionalEncoding",
    "GELU",
    "CrossEntropyLoss",
    "Dropout",
    "Embedding",
    "Identity",
    "LayerNorm",
    "Linear",
    "MSELoss",
    "Module",
    "ModuleDict",
    "ModuleList",
    "Parameter",
    "ParameterDict",
    "ParameterList",
    "ReLU",
    "Sequential",
    "Tanh",
    "freezing",
    "functional",
    "functional_call",
    "init",
]
