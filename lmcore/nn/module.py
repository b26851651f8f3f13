"""Modules: objects that own parameters and sub-modules, and compute a ``forward``.

A :class:`Module` registers whatever :class:`Parameter` or :class:`Module` you assign
to one of its attributes, so a model is written as plain Python and still knows
its parameters by dotted name (``layers.0.weight``), moves them between devices
and dtypes, switches dropout between training and evaluation, and saves and loads
them as a ``state_dict`` of arrays with PyTorch's names.

Example:
    >>> import numpy as np
    >>> from lmcore.nn import Linear
    >>> class TwoLayers(Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.hidden = Linear(3, 8)
    ...         self.out = Linear(8, 2)
    ...     def forward(self, x):  # (N, 3) -> (N, 2)
    ...         return self.out(self.hidden(x).relu())
    >>> model = TwoLayers()
    >>> [name for name, _ in model.named_parameters()]
    ['hidden.weight', 'hidden.bias', 'out.weight', 'out.bias']
    >>> model(Tensor(np.ones((4, 3), np.float32))).shape
    (4, 2)
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict, namedtuple
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from lmcore import backend
from lmcore.autograd import Tensor, no_grad

__all__ = [
    "IncompatibleKeys",
    "evaluation_mode",
    "Module",
    "ModuleDict",
    "ModuleList",
    "Parameter",
    "ParameterDict",
    "ParameterList",
    "Sequential",
    "functional_call",
]


@contextlib.contextmanager
def evaluation_mode(model):
    """Evaluation mode (dropout off) with no graph recorded inside; the model's own mode is
    restored afterwards.

    Example:
        >>> from lmcore import nn
        >>> layer = nn.Dropout(0.5)
        >>> with evaluation_mode(layer):
        ...     layer.training
        False
        >>> layer.training
        True
    """
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            yield model
    finally:
        model.train(was_training)


class Parameter(Tensor):
    """A tensor that a :class:`Module` learns: it requires a gradient and is registered
    by assignment to a module attribute.

    Example:
        >>> w = Parameter(np.zeros((2, 3), np.float32))
        >>> w.requires_grad, w.shape
        (True, (2, 3))
    """

    __slots__ = ()

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of every layer and model: subclasses call ``super().__init__()``,
    assign their parameters and sub-modules as attributes, and define ``forward``.
    Calling the module calls ``forward``.
    """

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- registration by attribute assignment ---------------------------------
    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__() ran; call "
                f"super().__init__() first in {type(self).__name__}.__init__"
            )
        if isinstance(value, Parameter):
            self._register(self._parameters, name, value)
        elif isinstance(value, Module):
            self._register(self._modules, name, value)
        elif name in self._parameters:
            if value is not None:
                raise TypeError(
                    f"{type(self).__name__}.{name} is a parameter; assign a Parameter "
                    f"(or None), not {type(value).__name__}. To change its values in "
                    f"place, write to .data."
                )
            self._parameters[name] = None
        elif name in self._modules:
            if value is not None:
                raise TypeError(
                    f"{type(self).__name__}.{name} is a sub-module; assign a Module "
                    f"(or None), not {type(value).__name__}."
                )
            self._modules[name] = None
        elif name in self._buffers:
            self._buffers[name] = None if value is None else _as_buffer(value)
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        # Called only when normal lookup fails: parameters, buffers and modules live in dicts.
        for registry in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(registry)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        if not self._forget(name):
            object.__delattr__(self, name)

    def _forget(self, name: str, keep: dict | None = None) -> bool:
        """Remove ``name`` from every registry but ``keep`` and from the plain attributes;
        True if it was there."""
        found = False
        for registry in (self._parameters, self._buffers, self._modules):
            if registry is not keep:
                found |= registry.pop(name, False) is not False
        self._non_persistent.discard(name)
        if name in self.__dict__:
            object.__delattr__(self, name)
            found = True
        return found

    def _register(self, registry: dict, name: str, value) -> None:
        """Put ``value`` in ``registry``; a name already there keeps its place in the order."""
        self._forget(name, keep=registry)
        registry[name] = value

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` under ``name``; ``None`` records an absent one (``bias=False``)."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter needs a Parameter or None, got {type(param)}")
        self._register(self._parameters, name, param)

    def register_buffer(self, name: str, value, persistent: bool = True) -> None:
        """Register a tensor that is state but not learned (a mask, running statistics).

        Buffers move with :meth:`to`; persistent ones are saved in the ``state_dict``.

        Example:
            >>> m = Module()
            >>> m.register_buffer("mask", np.tril(np.ones((3, 3), bool)), persistent=False)
            >>> m.mask.shape, list(m.state_dict())
            ((3, 3), [])
        """
        self._register(self._buffers, name, None if value is None else _as_buffer(value))
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Register ``module`` under ``name`` (what attribute assignment does).

        Example:
            >>> from lmcore.nn import Linear
            >>> m = Module()
            >>> m.add_module("proj", Linear(2, 2))
            >>> [name for name, _ in m.named_children()]
            ['proj']
        """
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module needs a Module or None, got {type(module)}")
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(
                f"a sub-module's name must be a non-empty string without '.', got {name!r}; "
                "the dot separates the levels of names like 'layers.0.weight'."
            )
        if name not in self._modules and hasattr(self, name):
            raise KeyError(
                f"{type(self).__name__} already has an attribute {name!r}; register the "
                "sub-module under another name."
            )
        self._register(self._modules, name, module)

    register_module = add_module

    def get_submodule(self, target: str) -> Module:
        """The sub-module at the dotted path ``target`` ("" is this module).

        Example:
            >>> from lmcore.nn import Linear
            >>> net = Sequential(Linear(2, 3), Sequential(Linear(3, 1)))
            >>> net.get_submodule("1.0")
            Linear(in_features=3, out_features=1, bias=True)
        """
        module = self
        for part in target.split(".") if target else ():
            child = module._modules.get(part)
            if child is None:
                raise AttributeError(
                    f"{type(module).__name__} has no sub-module {part!r} (looking for "
                    f"{target!r}); it has: {', '.join(module._modules) or 'none'}"
                )
            module = child
        return module

    # -- walking the tree ------------------------------------------------------
    def named_modules(
        self, memo: set | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        """This module and all below it with dotted names (this one is ``prefix``),
        parents before children; a module reached twice comes once unless
        ``remove_duplicate`` is False.

        Example:
            >>> from lmcore.nn import Linear
            >>> [name for name, _ in Sequential(Linear(2, 2), Sequential(Linear(2, 1))).named_modules()]
            ['', '0', '1', '1.0']
        """
        memo = set() if memo is None else memo
        if self in memo:
            return
        if remove_duplicate:
            memo.add(self)
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(
                    memo, f"{prefix}.{name}" if prefix else name, remove_duplicate
                )

    def modules(self) -> Iterator[Module]:
        """This module and all below it, each once (see :meth:`named_modules`).

        Example:
            >>> from lmcore.nn import Linear, ReLU
            >>> [type(m).__name__ for m in Sequential(Linear(2, 2), ReLU()).modules()]
            ['Sequential', 'Linear', 'ReLU']
        """
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """The direct sub-modules with their attribute names.

        Example:
            >>> from lmcore.nn import Linear
            >>> [name for name, _ in Sequential(Linear(2, 2), Linear(2, 1)).named_children()]
            ['0', '1']
        """
        seen: set[int] = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self) -> Iterator[Module]:
        """The direct sub-modules (see :meth:`named_children`)."""
        for _, module in self.named_children():
            yield module

    def _named_members(self, registry: str, prefix: str, recurse: bool, remove_duplicate: bool):
        """(dotted name, tensor) from ``registry`` ("_parameters" or "_buffers") of this
        module, and of those below it when ``recurse``; a shared tensor comes once, under
        its first name, unless ``remove_duplicate`` is False."""
        if recurse:
            modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
        else:
            modules = [(prefix, self)]
        seen: set[int] = set()
        for module_name, module in modules:
            for name, tensor in getattr(module, registry).items():
                if tensor is None or (remove_duplicate and id(tensor) in seen):
                    continue
                seen.add(id(tensor))
                yield (f"{module_name}.{name}" if module_name else name), tensor

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        """Every parameter with its dotted name (starting with ``prefix``); only this
        module's own with ``recurse=False``. A parameter shared by two modules (tied
        weights) comes once, under its first name.

        Example:
            >>> from lmcore.nn import Linear
            >>> net = Sequential(Linear(2, 2))
            >>> [name for name, _ in net.named_parameters(prefix="net")]
            ['net.0.weight', 'net.0.bias']
            >>> list(net.named_parameters(recurse=False))
            []
        """
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """Every parameter, each once (see :meth:`named_parameters`); what an optimizer takes.

        Example:
            >>> from lmcore.nn import Linear
            >>> [p.shape for p in Linear(3, 2).parameters()]
            [(2, 3), (2,)]
        """
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Tensor]]:
        """Every buffer with its dotted name, as :meth:`named_parameters`.

        Example:
            >>> m = Module()
            >>> m.register_buffer("mask", np.ones(3, bool))
            >>> [name for name, _ in m.named_buffers()]
            ['mask']
        """
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        """Every buffer, each once (see :meth:`named_buffers`)."""
        for _, buffer in self.named_buffers(recurse=recurse):
            yield buffer

    def num_parameters(self, only_trainable: bool = False) -> int:
        """How many numbers the model learns (shared parameters counted once).

        Example:
            >>> from lmcore.nn import Linear
            >>> Linear(3, 4).num_parameters()  # 4 * 3 weights + 4 biases
            16
        """
        return sum(p.size for p in self.parameters() if p.requires_grad or not only_trainable)

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call ``fn`` on every sub-module, then on this one (e.g. a custom init); returns self.

        Example:
            >>> from lmcore.nn import Linear, init
            >>> def zero_biases(m):
            ...     if isinstance(m, Linear):
            ...         init.zeros_(m.bias)
            >>> bool(Sequential(Linear(2, 2)).apply(zero_biases)[0].bias.data.any())
            False
        """
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # -- modes and gradients -----------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode here and below (dropout active); returns self."""
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        """Set evaluation mode here and below (dropout off); returns self."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (False) or unfreeze every parameter; returns self.

        Example:
            >>> from lmcore.nn import Linear
            >>> Linear(3, 2).requires_grad_(False).num_parameters(only_trainable=True)
            0
        """
        for param in self.parameters():
            param.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the gradients (or fill them with zeros when ``set_to_none=False``)."""
        for param in self.parameters():
            if set_to_none:
                param._grad = None
            elif param._grad is not None:
                param._grad[...] = 0

    # -- saving and loading ------------------------------------------------------
    def _named_state(self) -> Iterator[tuple[str, Tensor]]:
        """Parameters and persistent buffers under every name they have (tied ones, and
        those of a module registered twice, under each name, as in PyTorch)."""
        for module_name, module in self.named_modules(remove_duplicate=False):
            dot = f"{module_name}." if module_name else ""
            for name, param in module._parameters.items():
                if param is not None:
                    yield dot + name, param
            for name, buffer in module._buffers.items():
                if buffer is not None and name not in module._non_persistent:
                    yield dot + name, buffer

    def state_dict(
        self, *, destination: dict | None = None, prefix: str = "", keep_vars: bool = False
    ) -> OrderedDict:
        """Name -> array (a copy) for every parameter and persistent buffer, names
        starting with ``prefix``; with ``keep_vars=True`` the tensors themselves
        (Parameters and buffer Tensors), not copies. Entries go into ``destination``
        when given.

        Example:
            >>> from lmcore.nn import Linear
            >>> {k: v.shape for k, v in Linear(3, 2).state_dict().items()}
            {'weight': (2, 3), 'bias': (2,)}
            >>> type(Linear(3, 2).state_dict(keep_vars=True)["weight"]).__name__
            'Parameter'
        """
        destination = OrderedDict() if destination is None else destination
        for name, tensor in self._named_state():
            destination[prefix + name] = tensor if keep_vars else tensor.data.copy()
        return destination

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy values into the parameters and buffers, in place, converted to each one's
        dtype and device. A value may be an array of any library: NumPy, CuPy, a torch
        tensor (on any device, bfloat16 included), an lmcore Tensor, or anything with
        ``__array__`` or ``__dlpack__``.

        Every problem is found before anything is written: keys the model has that
        ``state_dict`` lacks (missing), keys it has that the model lacks (unexpected),
        and shapes that differ. Shape mismatches always raise; missing and unexpected
        keys raise when ``strict`` is True, else they are returned.

        Example:
            >>> from lmcore.nn import Linear
            >>> layer = Linear(2, 1)
            >>> layer.load_state_dict({"weight": [[1.0, 2.0]], "bias": np.zeros(1)})
            IncompatibleKeys(missing_keys=[], unexpected_keys=[])
            >>> layer.weight.data
            array([[1., 2.]], dtype=float32)
        """
        targets = OrderedDict(self._named_state())
        missing = [name for name in targets if name not in state_dict]
        unexpected = [name for name in state_dict if name not in targets]
        values = {
            name: _array_from(state_dict[name], name) for name in targets if name in state_dict
        }
        mismatched = [
            f"{name}: checkpoint {tuple(value.shape)}, model {targets[name].shape}"
            for name, value in values.items()
            if tuple(value.shape) != targets[name].shape
        ]
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if mismatched:
            problems.append("shape mismatches: " + "; ".join(mismatched))
        if problems:
            raise RuntimeError(
                f"cannot load the state_dict into {type(self).__name__}:\n  "
                + "\n  ".join(problems)
                + "\nWas it saved from a model of another architecture or configuration? "
                "Build the model with the same settings, or pass strict=False to load only "
                "the keys both share (shapes must still match)."
            )
        for name, value in values.items():
            target = targets[name]
            target.data[...] = _convert(value, target.data)
        return IncompatibleKeys(missing, unexpected)

    # -- device and dtype --------------------------------------------------------
    def to(self, device=None, dtype=None, non_blocking: bool = False) -> Module:
        """Move every parameter, gradient and buffer to ``device`` (``"cpu"``, ``"cuda"``)
        and cast the floating ones to ``dtype`` (``"float64"``, ``np.float32``), in place;
        returns self. As in PyTorch, a dtype may come first (``to("float64")``), and a
        tensor gives both its device and dtype. ``non_blocking`` is accepted and ignored.

        Example:
            >>> from lmcore.nn import Linear
            >>> Linear(2, 2).to("float64").weight.dtype
            dtype('float64')
            >>> Linear(2, 2).to(device="cpu", dtype=np.float16).bias.dtype
            dtype('float16')
        """
        device, dtype = _device_and_dtype(device, dtype, type(self).__name__)
        for tensor in [*self.parameters(), *self.buffers()]:
            tensor.data = _moved(tensor.data, device, dtype)
            if tensor._grad is not None:
                tensor._grad = _moved(tensor._grad, device, dtype)
        return self

    def cpu(self) -> Module:
        """Move everything to the CPU (NumPy arrays); returns self.

        Example:
            >>> from lmcore.nn import Linear
            >>> Linear(2, 2).cpu().weight.device
            'cpu'
        """
        return self.to("cpu")

    def cuda(self, device: int | None = None) -> Module:
        """Move everything to the GPU (CuPy arrays); returns self. lmcore uses the current
        CUDA device, so ``device`` may only be None or 0.

        Example:
            ``model.cuda()`` is ``model.to("cuda")``; without a GPU and CuPy it raises
            RuntimeError saying what to install.
        """
        if device not in (None, 0):
            raise ValueError(
                f"{type(self).__name__}.cuda() takes no device index but 0 (lmcore uses the "
                f"current CUDA device), got {device!r}; choose the GPU with "
                "CUDA_VISIBLE_DEVICES instead."
            )
        return self.to("cuda")

    def float(self) -> Module:
        """Cast the floating parameters and buffers to float32; returns self.

        Example:
            >>> from lmcore.nn import Linear
            >>> Linear(2, 2, dtype="float64").float().weight.dtype
            dtype('float32')
        """
        return self.to(dtype=np.float32)

    def double(self) -> Module:
        """Cast the floating parameters and buffers to float64; returns self.

        Example:
            >>> from lmcore.nn import Linear
            >>> Linear(2, 2).double().weight.dtype
            dtype('float64')
        """
        return self.to(dtype=np.float64)

    def half(self) -> Module:
        """Cast the floating parameters and buffers to float16; returns self.

        Example:
            >>> from lmcore.nn import Linear
            >>> Linear(2, 2).half().weight.dtype
            dtype('float16')
        """
        return self.to(dtype=np.float16)

    # -- printing ----------------------------------------------------------------
    def extra_repr(self) -> str:
        """The settings shown between the parentheses of the repr; layers override it."""
        return ""

    def __repr__(self) -> str:
        lines = [line for line in self.extra_repr().split("\n") if line]
        for name, module in self._modules.items():
            child = repr(module).replace("\n", "\n  ")
            lines.append(f"({name}): {child}")
        if not self._modules:
            return f"{type(self).__name__}({', '.join(lines)})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


class Sequential(Module):
    """Modules applied one after the other; ``forward(x)`` passes ``x`` through each.

    Children are named ``0``, ``1``, ... or, given one dict (an ``OrderedDict``), by its
    keys. A slice is a Sequential that keeps the original names, as in PyTorch.

    Example:
        >>> from lmcore.nn import Linear, ReLU
        >>> net = Sequential(Linear(4, 8), ReLU(), Linear(8, 1))
        >>> net(Tensor(np.ones((5, 4), np.float32))).shape
        (5, 1)
        >>> [name for name, _ in net.named_parameters()][:2]
        ['0.weight', '0.bias']
        >>> [name for name, _ in net[1:].named_children()]
        ['1', '2']
        >>> named = Sequential(OrderedDict(hidden=Linear(4, 8), act=ReLU()))
        >>> named.hidden.out_features
        8
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], dict):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            for index, module in enumerate(modules):
                self.add_module(str(index), module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def __getitem__(self, index: int | slice):
        if isinstance(index, slice):
            return type(self)(OrderedDict(list(self._modules.items())[index]))
        return list(self._modules.values())[index]

    def __setitem__(self, index: int, module: Module) -> None:
        self.add_module(list(self._modules)[index], module)

    def append(self, module: Module) -> Sequential:
        """Add ``module`` at the end, named by its position; returns self.

        Example:
            >>> from lmcore.nn import Linear
            >>> len(Sequential(Linear(2, 2)).append(Linear(2, 1)))
            2
        """
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> Sequential:
        """Append each of ``modules``; returns self."""
        for module in modules:
            self.append(module)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())


class ModuleList(Module):
    """A list of modules whose parameters are registered (a plain Python list would hide
    them), named ``0``, ``1``, ...; it has no ``forward``: iterate over it.

    Example:
        >>> from lmcore.nn import Linear
        >>> blocks = ModuleList([Linear(4, 4) for _ in range(3)])
        >>> len(blocks), [name for name, _ in blocks.named_parameters()][-1]
        (3, '2.bias')
    """

    def __init__(self, modules: Iterable[Module] = ()):
        super().__init__()
        self.extend(modules)

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for module in modules:
            self.append(module)
        return self

    def __getitem__(self, index: int | slice):
        if isinstance(index, slice):
            return ModuleList(list(self._modules.values())[index])
        return list(self._modules.values())[index]

    def __setitem__(self, index: int, module: Module) -> None:
        self.add_module(str(range(len(self))[index]), module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())


class ModuleDict(Module):
    """A dict of modules whose parameters are registered under their keys, in insertion
    order; it has no ``forward``: look modules up by key.

    Example:
        >>> from lmcore.nn import Linear
        >>> heads = ModuleDict({"sentiment": Linear(8, 2), "topic": Linear(8, 5)})
        >>> heads["topic"].out_features, list(heads)
        (5, ['sentiment', 'topic'])
        >>> [name for name, _ in heads.named_parameters()][:2]
        ['sentiment.weight', 'sentiment.bias']
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def _known(self, key: str) -> str:
        if key not in self._modules:
            raise KeyError(
                f"ModuleDict has no key {key!r}; its keys: {', '.join(self._modules) or 'none'}"
            )
        return key

    def __getitem__(self, key: str) -> Module:
        return self._modules[self._known(key)]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        del self._modules[self._known(key)]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __contains__(self, key: str) -> bool:
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules) -> None:
        """Add or replace entries from a mapping or an iterable of (key, module) pairs."""
        pairs = modules.items() if hasattr(modules, "items") else modules
        for key, module in pairs:
            self[key] = module

    def pop(self, key: str) -> Module:
        """Remove the entry ``key`` and return its module."""
        module = self[key]
        del self[key]
        return module

    def clear(self) -> None:
        self._modules.clear()


class ParameterList(Module):
    """A list of parameters, registered under ``0``, ``1``, ... (a plain Python list would
    hide them from ``parameters()``); tensors and arrays put in become Parameters.

    Example:
        >>> weights = ParameterList([np.zeros((2, 3)), np.ones(3)])
        >>> [(name, p.shape) for name, p in weights.named_parameters()]
        [('0', (2, 3)), ('1', (3,))]
        >>> isinstance(weights[1], Parameter)
        True
    """

    def __init__(self, values: Iterable | None = None):
        super().__init__()
        if values is not None:
            self.extend(values)

    def append(self, value) -> ParameterList:
        self.register_parameter(str(len(self)), _as_parameter(value))
        return self

    def extend(self, values: Iterable) -> ParameterList:
        for value in values:
            self.append(value)
        return self

    def __getitem__(self, index: int | slice):
        if isinstance(index, slice):
            return ParameterList(list(self._parameters.values())[index])
        return list(self._parameters.values())[index]

    def __setitem__(self, index: int, value) -> None:
        self.register_parameter(str(range(len(self))[index]), _as_parameter(value))

    def __len__(self) -> int:
        return len(self._parameters)

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self._parameters.values())

    def __repr__(self) -> str:
        lines = [
            f"({name}): Parameter of shape {tuple(p.shape)}, {p.dtype}, on {p.device}"
            for name, p in self._parameters.items()
        ]
        return (
            "ParameterList(" + "".join(f"\n  {line}" for line in lines) + ("\n)" if lines else ")")
        )


class ParameterDict(Module):
    """A dict of parameters registered under their keys, in insertion order; tensors and
    arrays put in become Parameters (as ``torch.nn.ParameterDict``).

    Example:
        >>> scales = ParameterDict({"query": np.ones(4), "key": np.ones(4)})
        >>> [(name, p.shape) for name, p in scales.named_parameters()]
        [('query', (4,)), ('key', (4,))]
        >>> "key" in scales, isinstance(scales["key"], Parameter)
        (True, True)
    """

    def __init__(self, parameters=None):
        super().__init__()
        if parameters is not None:
            self.update(parameters)

    def _known(self, key: str) -> str:
        if key not in self._parameters:
            raise KeyError(
                f"ParameterDict has no key {key!r}; its keys: "
                f"{', '.join(self._parameters) or 'none'}"
            )
        return key

    def __getitem__(self, key: str) -> Parameter:
        return self._parameters[self._known(key)]

    def __setitem__(self, key: str, value) -> None:
        self.register_parameter(key, _as_parameter(value))

    def __delitem__(self, key: str) -> None:
        del self._parameters[self._known(key)]

    def __len__(self) -> int:
        return len(self._parameters)

    def __iter__(self) -> Iterator[str]:
        return iter(self._parameters)

    def __contains__(self, key: str) -> bool:
        return key in self._parameters

    def keys(self):
        return self._parameters.keys()

    def values(self):
        return self._parameters.values()

    def items(self):
        return self._parameters.items()

    def update(self, parameters) -> None:
        """Add or replace entries from a mapping or an iterable of (key, value) pairs."""
        pairs = parameters.items() if hasattr(parameters, "items") else parameters
        for key, value in pairs:
            self[key] = value

    def pop(self, key: str) -> Parameter:
        """Remove the entry ``key`` and return its parameter."""
        value = self[key]
        del self[key]
        return value

    def __repr__(self) -> str:
        lines = [
            f"({name}): Parameter of shape {tuple(p.shape)}, {p.dtype}, on {p.device}"
            for name, p in self._parameters.items()
        ]
        body = "".join(f"\n  {line}" for line in lines)
        return "ParameterDict(" + body + ("\n)" if lines else ")")


def functional_call(module: Module, tensors: dict, args, kwargs: dict | None = None):
    """Call ``module`` with some of its parameters or buffers replaced by the given
    tensors (dotted names), then put the originals back, as ``torch.func.functional_call``.

    Gradients flow to the given tensors, which makes a module's forward a function of
    its parameters, e.g. for a gradient check.

    Example:
        >>> from lmcore.nn import Linear
        >>> layer = Linear(2, 1)
        >>> weight, bias = Tensor(np.zeros((1, 2), np.float32)), Tensor(np.ones(1, np.float32))
        >>> x = Tensor(np.ones((3, 2), np.float32))
        >>> functional_call(layer, {"weight": weight, "bias": bias}, x).numpy().ravel()
        array([1., 1., 1.], dtype=float32)
    """
    modules = dict(module.named_modules())
    swaps = []
    for name, tensor in tensors.items():
        owner_name, _, key = name.rpartition(".")
        owner = modules.get(owner_name)
        registry = None
        if owner is not None:
            registry = next(
                (r for r in (owner._parameters, owner._buffers) if r.get(key) is not None), None
            )
        if registry is None:
            known = [n for n, _ in module.named_parameters()] + [
                n for n, _ in module.named_buffers()
            ]
            raise KeyError(
                f"{type(module).__name__} has no parameter or buffer named {name!r}; "
                f"it has: {', '.join(known)}"
            )
        swaps.append((registry, key, registry[key]))
        registry[key] = tensor
    try:
        return module(*(args if isinstance(args, tuple) else (args,)), **(kwargs or {}))
    finally:
        for registry, key, original in reversed(swaps):
            registry[key] = original


# ---------------------------------------------------------------------------
# Helpers for arrays on either device


def _as_buffer(value) -> Tensor:
    return value if isinstance(value, Tensor) else Tensor(value)


def _as_parameter(value) -> Parameter:
    """``value`` if it is a Parameter, else a Parameter made from a tensor or an array."""
    if isinstance(value, Parameter):
        return value
    if isinstance(value, Tensor) or hasattr(value, "shape"):
        return Parameter(value)
    raise TypeError(
        f"a ParameterList or ParameterDict holds Parameters (or tensors and arrays, which "
        f"become Parameters), "
        f"got {type(value).__name__}"
    )


def _array_from(value, name: str):
    """A NumPy or CuPy array from a state_dict value of any array library."""
    if isinstance(value, Tensor):
        return value.data
    if isinstance(value, (np.ndarray, np.generic)) or type(value).__module__.startswith("cupy"):
        return value
    if all(hasattr(value, method) for method in ("detach", "cpu", "numpy")):  # a torch tensor
        value = value.detach().cpu()
        try:
            return value.numpy()
        except TypeError:  # bfloat16 has no NumPy dtype: widen to float32 first
            return value.float().numpy()
    if hasattr(value, "__array__"):
        return np.asarray(value)
    if hasattr(value, "__dlpack__"):
        on_cpu = value.__dlpack_device__()[0] == 1  # DLPack's kDLCPU
        return np.from_dlpack(value) if on_cpu else backend.xp("cuda").from_dlpack(value)
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"the state_dict value for {name!r} ({type(value).__name__}) is not an array; "
            "give NumPy or CuPy arrays, tensors, or nested lists of numbers."
        ) from err


def _convert(array, like):
    """``array`` (NumPy or CuPy) on ``like``'s device with ``like``'s dtype."""
    return backend.to_device(array, backend.device_of(like)).astype(like.dtype, copy=False)


def _device_and_dtype(device, dtype, owner: str) -> tuple[str | None, np.dtype | None]:
    """The device ("cpu", "cuda" or None) and floating dtype (or None) that ``to()`` was
    given, in any of PyTorch's ways: ``to(device)``, ``to(dtype)``, ``to(device, dtype)``,
    ``to(tensor)``."""
    if isinstance(device, Tensor):  # to(tensor): its device and dtype
        device, dtype = device.device, device.dtype if dtype is None else dtype
    if device is not None and not (isinstance(device, str) and device in backend.DEVICES):
        if dtype is not None:
            raise ValueError(f"{owner}.to() got device={device!r}; a device is 'cpu' or 'cuda'.")
        device, dtype = None, device  # to("float64"): a dtype in the device's place
    if dtype is not None:
        given = dtype
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            dtype = None
        if dtype is None or dtype.kind != "f":
            raise ValueError(
                f"{owner}.to() takes a device ('cpu' or 'cuda') and/or a floating dtype "
                f"('float32', 'float64', 'float16'), got {given!r}"
            )
    if device == "cuda" and not backend.gpu_available():
        raise RuntimeError(
            f"{owner}.to('cuda'): no usable GPU was found. On a machine with an NVIDIA "
            'GPU, install CuPy with pip install "lmcore[gpu]" (or pip install '
            "cupy-cuda12x); otherwise keep the model on the CPU."
        )
    return device, dtype


def _moved(array, device: str | None, dtype: np.dtype | None):
    """``array`` on ``device`` and, if it is floating, cast to ``dtype`` (None: unchanged)."""
    if device is not None:
        array = backend.to_device(array, device)
    if dtype is not None and array.dtype.kind == "f":
        array = array.astype(dtype, copy=False)
    return array
