"""LoRA (Hu et al. 2021): a frozen weight plus a trainable low-rank update.

A targeted :class:`~lmcore.nn.layers.Linear` ``W`` (out, in) becomes
``y = x W^T + b + (alpha / r) * dropout(x) A^T B^T`` with ``A`` (r, in) and ``B`` (out, r).
``A`` starts as a Linear weight does (Kaiming-uniform, as in Hugging Face PEFT) and ``B``
at zero, so the wrapped model starts exactly equal to the base model. :meth:`LoraLinear.merge`
adds ``(alpha / r) B A`` into ``W`` (no extra cost at inference) and :meth:`LoraLinear.unmerge`
takes it out again.

Names follow PEFT: the wrapped layer keeps the original as ``base_layer`` and adds
``lora_A`` and ``lora_B`` (Linear layers without bias), so an adapter file holds
``base_model.model.<module path>.lora_A.weight`` (r, in) and ``...lora_B.weight`` (out, r)
for both libraries (see :meth:`lmcore.peft.model.PeftModel.save_pretrained`).

Example:
    >>> import numpy as np
    >>> from lmcore import nn
    >>> from lmcore.autograd import Tensor
    >>> layer = LoraLinear(nn.Linear(6, 4), r=2, lora_alpha=4)
    >>> layer.lora_A.weight.shape, layer.lora_B.weight.shape, layer.scaling
    ((2, 6), (4, 2), 2.0)
    >>> x = Tensor(np.ones((3, 6), np.float32))                        # (N, in)
    >>> bool(np.allclose(layer(x).numpy(), layer.base_layer(x).numpy()))  # B = 0 at start
    True
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from lmcore import backend
from lmcore.autograd import Tensor
from lmcore.nn import init
from lmcore.nn.layers import Dropout, Identity, Linear
from lmcore.nn.module import Module

__all__ = ["LoraConfig", "LoraLinear", "find_target_modules", "inject_lora"]


@dataclass
class LoraConfig:
    """Settings of LoRA, with Hugging Face PEFT's names and defaults.

    Args:
        r: rank of the update.
        lora_alpha: the update is scaled by ``lora_alpha / r`` (``/ sqrt(r)`` with
            ``use_rslora``).
        lora_dropout: dropout on the input of the update branch, in training.
        target_modules: which Linear layers get an update: a list of names, each matching
            a module whose dotted path equals it or ends with ``"." + name``
            (``["c_attn"]``), or one regular expression that must match the whole path.
        use_rslora: scale by ``lora_alpha / sqrt(r)`` (rank-stabilized LoRA).
        bias: "none" (PEFT's default) or "all" (biases trainable too; they are then not
            part of the adapter file).

    Example:
        >>> LoraConfig(r=4, target_modules=["c_attn"]).scaling
        2.0
    """

    r: int = 8
    lora_alpha: float = 8
    lora_dropout: float = 0.0
    target_modules: list[str] | str | None = None
    use_rslora: bool = False
    bias: str = "none"
    task_type: str | None = None
    peft_type: str = field(default="LORA", init=False)

    def __post_init__(self):
        if not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"LoraConfig: r (the rank) must be a positive integer, got {self.r!r}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"LoraConfig: lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.bias not in ("none", "all"):
            raise ValueError(f"LoraConfig: bias is 'none' or 'all', got {self.bias!r}")
        if isinstance(self.target_modules, (tuple, set)):
            self.target_modules = sorted(self.target_modules)

    @property
    def scaling(self) -> float:
        """The factor on ``B A``: ``lora_alpha / r`` (or ``/ sqrt(r)`` with rsLoRA)."""
        return self.lora_alpha / (math.sqrt(self.r) if self.use_rslora else self.r)


class LoraLinear(Module):
    """A Linear layer with a LoRA update: (..., in) -> (..., out).

    ``base_layer`` is the original layer itself (not a copy), frozen. With ``merged`` True
    the update sits inside ``base_layer.weight`` and the branch is skipped.

    Example:
        >>> from lmcore import nn
        >>> layer = LoraLinear(nn.Linear(8, 8), r=4)
        >>> [name for name, p in layer.named_parameters() if p.requires_grad]
        ['lora_A.weight', 'lora_B.weight']
    """

    def __init__(
        self,
        base_layer,
        r: int = 8,
        lora_alpha: float = 8,
        lora_dropout: float = 0.0,
        use_rslora: bool = False,
    ):
        super().__init__()
        if not isinstance(base_layer, Linear):
            raise TypeError(
                f"LoRA wraps Linear layers, got {type(base_layer).__name__}; choose "
                "target_modules that name Linear layers."
            )
        if not isinstance(r, int) or r < 1:
            raise ValueError(f"LoraLinear: r must be a positive integer, got {r!r}")
        weight = base_layer.weight.data
        kinds = dict(device=backend.device_of(weight), dtype=weight.dtype)
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.r, self.lora_alpha = r, lora_alpha
        self.scaling = lora_alpha / (math.sqrt(r) if use_rslora else r)
        self.base_layer = base_layer.requires_grad_(False)
        self.lora_dropout = Dropout(lora_dropout) if lora_dropout > 0 else Identity()
        self.lora_A = Linear(self.in_features, r, bias=False, **kinds)  # kaiming-uniform, a=sqrt(5)
        self.lora_B = Linear(r, self.out_features, bias=False, **kinds)
        init.zeros_(self.lora_B.weight)
        self.merged = False

    def forward(self, x: Tensor) -> Tensor:
        result = self.base_layer(x)  # (..., out)
        if self.merged:
            return result
        update = self.lora_B(self.lora_A(self.lora_dropout(x)))  # (..., r) -> (..., out)
        return result + update * self.scaling

    def delta_weight(self):
        """The update ``scaling * B A`` (out, in) as an array, computed in float64."""
        a = self.lora_A.weight.data.astype(np.float64)
        b = self.lora_B.weight.data.astype(np.float64)
        return (b @ a) * self.scaling

    def merge(self) -> None:
        """Add the update into ``base_layer.weight``; the output stays the same (up to
        rounding) and costs one matrix product less."""
        if self.merged:
            raise RuntimeError("this LoRA layer is merged already; unmerge() it first")
        weight = self.base_layer.weight
        weight.data[...] = (weight.data.astype(np.float64) + self.delta_weight()).astype(
            weight.dtype
        )
        self.merged = True

    def unmerge(self) -> None:
        """Subtract the update from ``base_layer.weight`` again (equal to the weight before
        :meth:`merge` up to float rounding)."""
        if not self.merged:
            raise RuntimeError("this LoRA layer is not merged; nothing to unmerge")
        weight = self.base_layer.weight
        weight.data[...] = (weight.data.astype(np.float64) - self.delta_weight()).astype(
            weight.dtype
        )
        self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, lora_alpha={self.lora_alpha}, merged={self.merged}"


def _matches(name: str, targets) -> bool:
    """PEFT's rule: a string is a regex matching the whole path; a list names modules by
    their path or its last parts."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def find_target_modules(model: Module, target_modules) -> list[str]:
    """Dotted paths of the modules of ``model`` that ``target_modules`` selects (see
    :class:`LoraConfig`); a clear error when it selects none.

    Example:
        >>> from lmcore.models import GPT, GPTConfig
        >>> gpt = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8))
        >>> find_target_modules(gpt, ["c_attn"])
        ['h.0.attn.c_attn', 'h.1.attn.c_attn']
    """
    if not target_modules:
        raise ValueError(
            "target_modules is empty: name the Linear layers to adapt, e.g. ['c_attn'] for "
            "a GPT or ['query', 'value'] for a BERT."
        )
    if not isinstance(target_modules, str) and not isinstance(target_modules, Iterable):
        raise TypeError(f"target_modules is a list of names or one regex, got {target_modules!r}")
    found = [name for name, _ in model.named_modules() if name and _matches(name, target_modules)]
    if not found:
        linears = [name for name, m in model.named_modules() if isinstance(m, Linear)]
        raise ValueError(
            f"target_modules={target_modules!r} selects no module of {type(model).__name__}; "
            f"its Linear layers are: {', '.join(linears[:12])}"
            + (" ..." if len(linears) > 12 else "")
        )
    return found


def _replace(model: Module, name: str, new: Module) -> None:
    parent_name, _, child = name.rpartition(".")
    model.get_submodule(parent_name).add_module(child, new)


def inject_lora(model: Module, config: LoraConfig, names: list[str] | None = None) -> list[str]:
    """Wrap each targeted Linear of ``model`` in a :class:`LoraLinear`, in place (the base
    weights are shared, not copied); returns the wrapped paths.

    Example:
        >>> from lmcore import nn
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> inject_lora(net, LoraConfig(r=2, target_modules=r"0|2"))
        ['0', '2']
    """
    names = find_target_modules(model, config.target_modules) if names is None else names
    for name in names:
        module = model.get_submodule(name)
        if isinstance(module, LoraLinear):
            raise ValueError(f"{name} already has a LoRA update")
        if not isinstance(module, Linear):
            raise TypeError(
                f"target module {name} is a {type(module).__name__}; LoRA wraps Linear layers "
                "only: name Linear layers in target_modules."
            )
        wrapped = LoraLinear(
            module, config.r, config.lora_alpha, config.lora_dropout, config.use_rslora
        )
        _replace(model, name, wrapped)
    return names


def lora_layers(model: Module) -> dict[str, LoraLinear]:
    """Every :class:`LoraLinear` of ``model`` by dotted path."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLinear)}


def remove_lora(model: Module, merge: bool) -> None:
    """Put each wrapped Linear back in its place, with the update merged into it when
    ``merge`` (else the update is dropped and the base weights are left as they were)."""
    for name, layer in lora_layers(model).items():
        if merge and not layer.merged:
            layer.merge()
        elif not merge and layer.merged:
            layer.unmerge()
        _replace(model, name, layer.base_layer)
