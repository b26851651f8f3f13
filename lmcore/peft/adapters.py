"""Bottleneck adapters, soft prompts and BitFit: three more ways to tune few parameters.

* :class:`BottleneckAdapter` (Houlsby et al. 2019): ``h + up(act(down(h)))`` on the output
  of a sub-layer (attention, MLP), before it joins the residual stream. ``up`` starts at
  zero, so the wrapped model starts equal to the base model.
* :class:`PromptTuningConfig` (Lester et al. 2021): ``num_virtual_tokens`` learned
  embeddings put before every input; nothing of the model changes.
* :class:`BitFitConfig` (Ben Zaken et al. 2022): train the biases only.

Example:
    >>> import numpy as np
    >>> from lmcore.autograd import Tensor
    >>> adapter = BottleneckAdapter(16, bottleneck=4)
    >>> h = Tensor(np.ones((2, 3, 16), np.float32))                   # (B, T, C)
    >>> bool(np.array_equal(adapter(h).numpy(), h.numpy()))           # up = 0 at start
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lmcore import backend
from lmcore import functional as F
from lmcore.autograd import Tensor
from lmcore.nn import init
from lmcore.nn.layers import Linear
from lmcore.nn.module import Module

__all__ = [
    "AdapterConfig",
    "Adapted",
    "BitFitConfig",
    "BottleneckAdapter",
    "PromptTuningConfig",
    "default_adapter_targets",
]


class BottleneckAdapter(Module):
    """``h + up(gelu(down(h)))``: (..., C) -> (..., C) through a bottleneck of width m.

    ``down`` (m, C) starts as a Linear does and ``up`` (C, m) with zero weight and bias,
    so the adapter starts as the identity.

    Example:
        >>> BottleneckAdapter(16, bottleneck=4).num_parameters()  # 4*16 + 4 + 16*4 + 16
        148
    """

    def __init__(self, width: int, bottleneck: int = 16, device=None, dtype=None):
        super().__init__()
        if bottleneck < 1:
            raise ValueError(f"the adapter's bottleneck must be at least 1, got {bottleneck}")
        self.down = Linear(width, bottleneck, device=device, dtype=dtype)
        self.up = Linear(bottleneck, width, device=device, dtype=dtype)
        init.zeros_(self.up.weight)
        init.zeros_(self.up.bias)

    def forward(self, h: Tensor) -> Tensor:  # (..., C) -> (..., m) -> (..., C)
        return h + self.up(F.gelu(self.down(h)))


class Adapted(Module):
    """A sub-layer followed by a :class:`BottleneckAdapter` on its output. The sub-layer
    (``base_layer``) is the original module, not a copy; extra arguments go to it.

    Example:
        >>> from lmcore.nn import MLP
        >>> Adapted(MLP(8), width=8, bottleneck=2).adapter.up.weight.shape
        (8, 2)
    """

    def __init__(self, base_layer: Module, width: int, bottleneck: int):
        super().__init__()
        weight = next(base_layer.parameters()).data
        self.base_layer = base_layer
        self.adapter = BottleneckAdapter(
            width, bottleneck, device=backend.device_of(weight), dtype=weight.dtype
        )

    def forward(self, x, *args, **kwargs):
        return self.adapter(self.base_layer(x, *args, **kwargs))


def default_adapter_targets(model: Module) -> str:
    r"""Where Houlsby adapters go: after each attention and each MLP of a GPT block
    (``h.N.attn``, ``h.N.mlp``), after the two output projections of each BERT layer
    (before their residual LayerNorm).

    Example:
        >>> from lmcore.models import GPT, GPTConfig
        >>> print(default_adapter_targets(GPT(GPTConfig(11, 8, 1, 2, 8))))
        h\.\d+\.(attn|mlp)
    """
    from lmcore.models.bert import BERT
    from lmcore.models.gpt import GPT

    for name, module in model.named_modules():
        prefix = rf"{name}\." if name else ""
        if isinstance(module, GPT):
            return prefix + r"h\.\d+\.(attn|mlp)"
        if isinstance(module, BERT):
            return prefix + r"encoder\.\d+\.(attention\.output|output)\.dense"
    raise ValueError(
        f"no default adapter places for a {type(model).__name__}: pass target_modules "
        "(a regex of the sub-layers whose output gets an adapter)"
    )


@dataclass
class AdapterConfig:
    """Houlsby adapters of width ``bottleneck`` after the modules ``target_modules``
    selects (names or one regex, as in :class:`~lmcore.peft.lora.LoraConfig`; default:
    :func:`default_adapter_targets`). ``train_layer_norms`` also trains the LayerNorms,
    as Houlsby et al. did.

    Example:
        >>> AdapterConfig(bottleneck=8).peft_type
        'ADAPTER'
    """

    bottleneck: int = 16
    target_modules: list[str] | str | None = None
    train_layer_norms: bool = True
    peft_type: str = field(default="ADAPTER", init=False)


@dataclass
class PromptTuningConfig:
    """``num_virtual_tokens`` learned vectors put before every sequence of a GPT; they
    start as the embeddings of random tokens of the vocabulary (or of
    ``init_token_ids``, e.g. the ids of a task description).

    Example:
        >>> PromptTuningConfig(num_virtual_tokens=10).peft_type
        'PROMPT_TUNING'
    """

    num_virtual_tokens: int = 20
    init_token_ids: list[int] | None = None
    seed: int = 0
    peft_type: str = field(default="PROMPT_TUNING", init=False)


@dataclass
class BitFitConfig:
    """Train every bias and nothing else (``train_head`` also trains the task head of a
    :mod:`~lmcore.models.heads` model, which a fresh task needs).

    Example:
        >>> BitFitConfig().peft_type
        'BITFIT'
    """

    train_head: bool = True
    peft_type: str = field(default="BITFIT", init=False)
