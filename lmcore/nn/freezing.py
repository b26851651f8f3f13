"""Freezing for fine-tuning: which parameters train, and at what learning rate.

* :func:`set_requires_grad`, :func:`freeze`, :func:`unfreeze`: by module or by name
  pattern (glob like ``"h.*.attn.*"``, or a compiled regular expression).
* :func:`layer_groups`: a Transformer's parameters from the bottom (embeddings) to the top
  (final norm and heads), one group per block.
* :func:`layerwise_lr_groups`: optimizer parameter groups with layer-wise learning-rate
  decay (the top at ``lr``, each group below ``decay`` times the one above it).
* :class:`GradualUnfreezing`: the top group trains first, then one more group below
  every ``every`` steps (ULMFiT, Howard and Ruder 2018).
* :func:`trainable_parameters`, :func:`count_parameters`: what the optimizer should see.

Example:
    >>> from lmcore.models import GPT, GPTConfig
    >>> gpt = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=2, n_head=2, n_embd=8))
    >>> _ = freeze(gpt)
    >>> _ = unfreeze(gpt, "h.1.*")                      # the top block only
    >>> count_parameters(gpt)                           # (trainable, all)
    (872, 1984)
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

from lmcore.nn.module import Module, ModuleList, Parameter

__all__ = [
    "GradualUnfreezing",
    "count_parameters",
    "freeze",
    "layer_groups",
    "layerwise_lr_groups",
    "set_requires_grad",
    "trainable_parameters",
    "unfreeze",
]


def _selector(patterns):
    """A function name -> bool from glob strings and compiled regexes (None: everything)."""
    if patterns is None:
        return lambda name: True
    if isinstance(patterns, (str, re.Pattern)):
        patterns = [patterns]
    patterns = list(patterns)
    for p in patterns:
        if not isinstance(p, (str, re.Pattern)):
            raise TypeError(
                f"a name pattern is a glob string ('h.*.attn.*') or a compiled regex "
                f"(re.compile(...)), got {type(p).__name__}"
            )

    def selected(name: str) -> bool:
        return any(
            p.fullmatch(name) is not None
            if isinstance(p, re.Pattern)
            else fnmatch.fnmatchcase(name, p)
            for p in patterns
        )

    return selected


def set_requires_grad(
    model: Module, requires_grad: bool, patterns=None, modules: Iterable[Module] = ()
) -> list[str]:
    """Set ``requires_grad`` of the parameters of ``model`` whose dotted names match
    ``patterns`` (globs or compiled regexes, matching the whole name), or of every
    parameter of ``modules``; with neither, of all. Returns the names changed.

    Example:
        >>> from lmcore import nn
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
        >>> set_requires_grad(net, False, re.compile(r"\\d\\.bias"))
        ['0.bias', '1.bias']
    """
    modules = list(modules)
    chosen = None if patterns is None and not modules else _selector(patterns or [])
    in_modules = {id(p) for m in modules for p in m.parameters()}
    changed = []
    for name, param in model.named_parameters():
        if chosen is None or chosen(name) or id(param) in in_modules:
            param.requires_grad = requires_grad
            changed.append(name)
    if patterns is not None and not changed:
        names = [n for n, _ in model.named_parameters()]
        raise ValueError(
            f"no parameter of {type(model).__name__} matches {patterns!r}; its names look "
            f"like: {', '.join(names[:6])}"
        )
    return changed


def freeze(model: Module, patterns=None, modules: Iterable[Module] = ()) -> list[str]:
    """Stop training the matching parameters (all by default); see :func:`set_requires_grad`.

    Example:
        >>> from lmcore import nn
        >>> freeze(nn.Linear(2, 2), "weight")
        ['weight']
    """
    return set_requires_grad(model, False, patterns, modules)


def unfreeze(model: Module, patterns=None, modules: Iterable[Module] = ()) -> list[str]:
    """Train the matching parameters again (all by default); see :func:`set_requires_grad`.

    Example:
        >>> from lmcore import nn
        >>> layer = nn.Linear(2, 2).requires_grad_(False)
        >>> unfreeze(layer, modules=[layer])
        ['weight', 'bias']
    """
    return set_requires_grad(model, True, patterns, modules)


def trainable_parameters(model: Module) -> list[Parameter]:
    """The parameters that train (``requires_grad``), each once: give these, not all, to an
    optimizer.

    Example:
        >>> from lmcore import nn
        >>> net = nn.Sequential(nn.Linear(2, 2).requires_grad_(False), nn.Linear(2, 1))
        >>> [p.shape for p in trainable_parameters(net)]
        [(1, 2), (1,)]
    """
    return [p for p in model.parameters() if p.requires_grad]


def count_parameters(model: Module) -> tuple[int, int]:
    """(trainable, all) parameter counts, shared parameters counted once.

    Example:
        >>> from lmcore import nn
        >>> count_parameters(nn.Sequential(nn.Linear(2, 2).requires_grad_(False), nn.Linear(2, 1)))
        (3, 9)
    """
    return Module.num_parameters(model, only_trainable=True), Module.num_parameters(model)


def _blocks(model: Module) -> tuple[str, ModuleList]:
    """The name and the ModuleList of a model's stack of blocks (the longest one)."""
    stacks = [(n, m) for n, m in model.named_modules() if isinstance(m, ModuleList) and len(m)]
    if not stacks:
        raise ValueError(
            f"{type(model).__name__} has no ModuleList of blocks; give the groups yourself "
            "(lists of parameter-name patterns)."
        )
    return max(stacks, key=lambda item: len(item[1]))


def layer_groups(model: Module) -> list[tuple[str, list[str]]]:
    """The parameter names of a Transformer in groups from the bottom to the top:
    ``"embeddings"`` (everything before the blocks), one group per block (``"h.0"``,
    ``"encoder.1"``...), and ``"top"`` (final norm, output and task heads). Tied
    parameters count once, in their first group.

    Example:
        >>> from lmcore.models import GPT, GPTConfig
        >>> gpt = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=2, n_head=2, n_embd=8))
        >>> [(name, len(names)) for name, names in layer_groups(gpt)]
        [('embeddings', 2), ('h.0', 12), ('h.1', 12), ('top', 2)]
    """
    stack_name, stack = _blocks(model)
    prefixes = [f"{stack_name}.{i}." if stack_name else f"{i}." for i in range(len(stack))]
    groups: dict[str, list[str]] = {"embeddings": []}
    groups.update({p[:-1]: [] for p in prefixes})
    groups["top"] = []
    seen_block = False
    for name, _ in model.named_parameters():
        owner = next((p[:-1] for p in prefixes if name.startswith(p)), None)
        if owner is not None:
            seen_block = True
            groups[owner].append(name)
        else:
            groups["top" if seen_block else "embeddings"].append(name)
    return [(key, names) for key, names in groups.items() if names]


def layerwise_lr_groups(
    model: Module,
    lr: float,
    decay: float = 1.0,
    weight_decay: float = 0.0,
    only_trainable: bool = True,
) -> list[dict]:
    """Optimizer parameter groups with layer-wise learning-rate decay: the top group at
    ``lr``, the block below at ``lr * decay``, and so on down to the embeddings; matrices
    with ``weight_decay``, biases and norm weights without. Frozen parameters are left out
    unless ``only_trainable=False`` (for :class:`GradualUnfreezing`, whose frozen groups
    get no gradient, so the optimizer skips them until they thaw). Groups go from the
    bottom up, as :func:`layer_groups`; empty ones are dropped.

    Example:
        >>> from lmcore import optim
        >>> from lmcore.models import GPT, GPTConfig
        >>> gpt = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=2, n_head=2, n_embd=8))
        >>> groups = layerwise_lr_groups(gpt, lr=1e-3, decay=0.5, weight_decay=0.1)
        >>> [(g["lr"], g["weight_decay"]) for g in groups][:3]     # embeddings, then h.0
        [(0.000125, 0.1), (0.00025, 0.1), (0.00025, 0.0)]
        >>> opt = optim.AdamW(groups)
    """
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1], got {decay}")
    params = dict(model.named_parameters())
    groups = layer_groups(model)
    result = []
    for depth, (_, names) in enumerate(groups[::-1]):  # the top first: depth 0
        chosen = [params[n] for n in names if params[n].requires_grad or not only_trainable]
        matrices, vectors = [p for p in chosen if p.ndim >= 2], [p for p in chosen if p.ndim < 2]
        group_lr = lr * decay**depth
        parts = [(matrices, weight_decay), (vectors, 0.0)]
        result[:0] = [
            {"params": members, "lr": group_lr, "weight_decay": decay_of}
            for members, decay_of in parts
            if members
        ]
    if not result:
        raise ValueError(
            f"{type(model).__name__} has no trainable parameter; unfreeze some, or pass "
            "only_trainable=False for gradual unfreezing."
        )
    return result


class GradualUnfreezing:
    """ULMFiT's gradual unfreezing: at step 1 only the top group of
    :func:`layer_groups` (plus anything in ``always``, e.g. a task head or LoRA weights)
    trains; every ``every`` steps one more group below it thaws. Call it with the step
    before each optimizer step (``Trainer(..., callbacks=[unfreezing])`` does); what
    trains depends on the step alone, so a resumed run continues exactly.

    Example:
        >>> from lmcore.models import GPT, GPTConfig
        >>> gpt = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=2, n_head=2, n_embd=8))
        >>> unfreezing = GradualUnfreezing(gpt, every=10)
        >>> [unfreezing.apply(step) for step in (1, 10, 11, 21, 31)]
        [['top'], ['top'], ['top', 'h.1'], ['top', 'h.1', 'h.0'], ['top', 'h.1', 'h.0', 'embeddings']]
    """

    def __init__(self, model: Module, every: int, always=()):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive number of steps, got {every!r}")
        self.model, self.every = model, every
        self.groups = list(reversed(layer_groups(model)))  # top first
        self.always = _selector(always) if always else (lambda name: False)

    def apply(self, step: int) -> list[str]:
        """Set ``requires_grad`` for ``step`` (1-based); returns the groups that train."""
        thawed = min(len(self.groups), 1 + max(step - 1, 0) // self.every)
        training = {n for _, names in self.groups[:thawed] for n in names}
        for name, param in self.model.named_parameters():
            param.requires_grad = name in training or self.always(name)
        return [group for group, _ in self.groups[:thawed]]

    def __call__(self, trainer, step: int) -> None:
        self.apply(step)
