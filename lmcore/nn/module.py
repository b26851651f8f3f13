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

from collections import OrderedDict, namedtuple
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from lmcore import backend
from lmcore.autograd import Tensor

__all__ = ["Module", "ModuleList", "Parameter", "Sequential", "functional_call"]


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
        """Register ``module`` under ``name`` (what attribute assignment does)."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module needs a Module or None, got {type(module)}")
        self._register(self._modules, name, module)

    # -- walking the tree ------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and all below it, each once, with dotted names (this one is "")."""
        seen: set[int] = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [
                (f"{name}.{child_name}" if name else child_name, child)
                for child_name, child in module._modules.items()
                if child is not None
            ]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """The direct sub-modules with their attribute names."""
        for name, module in self._modules.items():
            if module is not None:
                yield name, module

    def children(self) -> Iterator[Module]:
        for _, module in self.named_children():
            yield module

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Every parameter with its dotted name; a parameter shared by two modules
        (tied weights) comes once, under its first name."""
        seen: set[int] = set()
        for module_name, module in self.named_modules(prefix):
            for name, param in module._parameters.items():
                if param is None or id(param) in seen:
                    continue
                seen.add(id(param))
                yield (f"{module_name}.{name}" if module_name else name), param

    def parameters(self) -> Iterator[Parameter]:
        for _, param in self.named_parameters():
            yield param

    def named_buffers(self) -> Iterator[tuple[str, Tensor]]:
        for module_name, module in self.named_modules():
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    yield (f"{module_name}.{name}" if module_name else name), buffer

    def buffers(self) -> Iterator[Tensor]:
        for _, buffer in self.named_buffers():
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
        """Call ``fn`` on every sub-module, then on this one (e.g. a custom init); returns self."""
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
        """Freeze (False) or unfreeze every parameter; returns self."""
        for param in self.parameters():
            param.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the gradients (or fill them with zeros when ``set_to_none=False``)."""
        for param in self.parameters():
            if set_to_none:
                param.grad = None
            elif param.grad is not None:
                param.grad[...] = 0

    # -- saving and loading ------------------------------------------------------
    def _named_state(self) -> Iterator[tuple[str, Tensor]]:
        """Parameters and persistent buffers under every name they have (tied ones twice)."""
        for module_name, module in self.named_modules():
            dot = f"{module_name}." if module_name else ""
            for name, param in module._parameters.items():
                if param is not None:
                    yield dot + name, param
            for name, buffer in module._buffers.items():
                if buffer is not None and name not in module._non_persistent:
                    yield dot + name, buffer

    def state_dict(self) -> OrderedDict:
        """Name -> array (a copy) for every parameter and persistent buffer.

        Example:
            >>> from lmcore.nn import Linear
            >>> {k: v.shape for k, v in Linear(3, 2).state_dict().items()}
            {'weight': (2, 3), 'bias': (2,)}
        """
        return OrderedDict((name, t.data.copy()) for name, t in self._named_state())

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy arrays (NumPy, CuPy or tensors) into the parameters and buffers, in place,
        converted to each one's dtype and device.

        Every problem is found before anything is written: keys the model has that
        ``state_dict`` lacks (missing), keys it has that the model lacks (unexpected),
        and shapes that differ. Shape mismatches always raise; missing and unexpected
        keys raise when ``strict`` is True, else they are returned.
        """
        targets = OrderedDict(self._named_state())
        missing = [name for name in targets if name not in state_dict]
        unexpected = [name for name in state_dict if name not in targets]
        mismatched = [
            f"{name}: checkpoint {tuple(state_dict[name].shape)}, model {targets[name].shape}"
            for name in targets
            if name in state_dict and tuple(state_dict[name].shape) != targets[name].shape
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
        for name, target in targets.items():
            if name in state_dict:
                target.data[...] = _convert(state_dict[name], target.data)
        return IncompatibleKeys(missing, unexpected)

    # -- device and dtype --------------------------------------------------------
    def to(self, target) -> Module:
        """Move every parameter, gradient and buffer to a device (``"cpu"``, ``"cuda"``)
        or cast the floating ones to a dtype (``"float64"``), in place; returns self.

        Example:
            >>> from lmcore.nn import Linear
            >>> Linear(2, 2).to("float64").weight.dtype
            dtype('float64')
        """
        convert = _converter(target, type(self).__name__)
        for tensor in [*self.parameters(), *self.buffers()]:
            tensor.data = convert(tensor.data)
            if tensor.grad is not None:
                tensor.grad = convert(tensor.grad)
        return self

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

    Example:
        >>> from lmcore.nn import Linear, ReLU
        >>> net = Sequential(Linear(4, 8), ReLU(), Linear(8, 1))
        >>> net(Tensor(np.ones((5, 4), np.float32))).shape
        (5, 1)
        >>> [name for name, _ in net.named_parameters()][:2]
        ['0.weight', '0.bias']
    """

    def __init__(self, *modules: Module):
        super().__init__()
        for index, module in enumerate(modules):
            self.add_module(str(index), module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def __getitem__(self, index: int | slice):
        if isinstance(index, slice):
            return Sequential(*list(self._modules.values())[index])
        return list(self._modules.values())[index]

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


def _convert(value, like):
    """``value`` (array or tensor) as an array on ``like``'s device with ``like``'s dtype."""
    array = value.data if isinstance(value, Tensor) else value
    return backend.to_device(array, backend.device_of(like)).astype(like.dtype, copy=False)


def _converter(target, owner: str) -> Callable:
    """A function that moves an array to the device ``target`` or casts it to the dtype."""
    if isinstance(target, str) and target in backend.DEVICES:
        return lambda array: backend.to_device(array, target)
    try:
        dtype = np.dtype(target)
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind != "f":
        raise ValueError(
            f"{owner}.to() takes a device ('cpu' or 'cuda') or a floating dtype "
            f"('float32', 'float64'), got {target!r}"
        )
    return lambda array: array.astype(dtype, copy=False) if array.dtype.kind == "f" else array
