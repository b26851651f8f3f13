"""Reverse-mode automatic differentiation on NumPy or CuPy arrays.

Three pieces, small enough to hold in your head:

* :class:`Tensor` wraps an array (``.data``) and, when it was made by an operation
  that needs a gradient, remembers that operation (``.creator``).
* :class:`Function` is one operation: ``forward`` and ``backward`` work on raw
  arrays, so the same code runs on NumPy and CuPy. Calling a Function on tensors
  runs ``forward`` and, when some input requires a gradient, records itself as
  the creator of its outputs. The recorded functions form a graph.
* :meth:`Tensor.backward` orders that graph topologically (iteratively, so deep
  graphs never hit Python's recursion limit), calls each ``backward`` once, and
  adds gradients into the ``.grad`` of the leaf tensors.

``.grad`` is a Tensor of the tensor's shape and dtype, as in PyTorch, or ``None``
before any backward pass. Gradients add up across backward calls; set
``.grad = None`` (or call ``.grad.zero_()``) to start again. Only leaves (tensors
made by you, not by an operation) keep their gradient.

Example:
    >>> import numpy as np
    >>> x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    >>> y = (x * x).sum()
    >>> y.backward()
    >>> x.grad
    tensor([2., 4., 6.])
    >>> x.grad.zero_()
    tensor([0., 0., 0.])
"""

from __future__ import annotations

import contextlib

import numpy as np

from lmcore import backend, memory

__all__ = [
    "Function",
    "Tensor",
    "as_array",
    "detach_state",
    "enable_grad",
    "is_grad_enabled",
    "no_grad",
]


# ---------------------------------------------------------------------------
# Gradient mode


class _GradMode:
    enabled = True


def is_grad_enabled() -> bool:
    """True when operations record a graph (the default)."""
    return _GradMode.enabled


@contextlib.contextmanager
def _grad_mode(enabled: bool):
    previous = _GradMode.enabled
    _GradMode.enabled = enabled
    try:
        yield
    finally:
        _GradMode.enabled = previous


def no_grad():
    """Context manager (or decorator) under which operations record no graph.

    Use it for evaluation and for updating parameters: it saves the memory and the
    time of recording.

    Example:
        >>> w = Tensor([1.0, 2.0], requires_grad=True)
        >>> with no_grad():
        ...     y = w * 2
        >>> y.requires_grad
        False
    """
    return _grad_mode(False)


def enable_grad():
    """Context manager (or decorator) that turns recording back on inside ``no_grad``."""
    return _grad_mode(True)


# ---------------------------------------------------------------------------
# Helpers on arrays

_FLOAT_KINDS = "f"


def as_array(value, dtype=None, like=None):
    """An array from a Tensor, an array, a Python number or a (nested) list.

    Python numbers and lists become float32 (unless ``dtype`` says otherwise) on
    the device of ``like`` when given, else on the active device; arrays keep
    their dtype and device unless ``dtype`` is given.
    """
    if isinstance(value, Tensor):
        value = value.data
    if isinstance(value, (np.ndarray, np.generic)) or hasattr(value, "__cuda_array_interface__"):
        xp = backend.get_array_module(value)
        return value if dtype is None else xp.asarray(value, dtype=dtype)
    xp = backend.get_array_module(like) if like is not None else backend.xp()
    if dtype is None:
        dtype = np.asarray(value).dtype
        if dtype.kind in "fO":
            dtype = np.float32
    return xp.asarray(value, dtype=dtype)


def _check_compatible(function: Function, arrays) -> None:
    """Raise a clear error when arrays of one operation sit on different devices
    or have different floating dtypes."""
    first = arrays[0]
    for position, array in enumerate(arrays[1:], start=1):
        if type(array) is not type(first):
            devices = {backend.device_of(first), backend.device_of(array)}
            if len(devices) > 1:
                raise TypeError(
                    f"{type(function).__name__} got input 0 on {backend.device_of(first)} "
                    f"({type(first).__module__}.{type(first).__name__}) and input {position} "
                    f"on {backend.device_of(array)} ({type(array).__module__}.{type(array).__name__}); "
                    "move both to one device first, e.g. with tensor.to('cpu') or .to('cuda')."
                )
        if (
            array.dtype != first.dtype
            and array.dtype.kind in _FLOAT_KINDS
            and first.dtype.kind in _FLOAT_KINDS
        ):
            raise TypeError(
                f"{type(function).__name__} got input 0 of dtype {first.dtype} and input "
                f"{position} of dtype {array.dtype}; convert one with "
                f"tensor.to({first.dtype.name!r}) or tensor.to({array.dtype.name!r}) so both match."
            )


def _as_ndarray(array):
    """NumPy turns 0-d results into scalars (np.float32); keep them arrays."""
    return np.asarray(array) if isinstance(array, np.generic) else array


# ---------------------------------------------------------------------------
# Function


class Function:
    """One differentiable operation, written on raw arrays.

    Subclasses implement ``forward(*arrays)`` returning an array (or a tuple of
    arrays) and ``backward(*grad_outputs)`` returning one gradient per input (a
    tuple when there are several inputs; ``None`` for an input that needs none).
    ``self.needs_grad[i]`` tells whether input ``i`` requires a gradient, so
    ``backward`` can skip work. Anything ``forward`` stores on ``self`` for the
    backward pass is released after it. ``backward`` must not modify the
    gradients it receives in place: they may be shared.

    Example:
        >>> class Square(Function):
        ...     def forward(self, x):
        ...         self.x = x
        ...         return x * x
        ...     def backward(self, grad):
        ...         return 2 * self.x * grad
        >>> x = Tensor([3.0], requires_grad=True)
        >>> Square()(x).backward(np.ones(1, np.float32))
        >>> x.grad
        tensor([6.], dtype=float32)
    """

    inputs: tuple[Tensor, ...] | None
    needs_grad: tuple[bool, ...]
    num_outputs: int = 1  # set by __call__ when forward returns a tuple

    def __call__(self, *inputs: Tensor):
        arrays = [t.data for t in inputs]
        if len(arrays) > 1:
            _check_compatible(self, arrays)
        self.needs_grad = needs_grad = tuple(t.requires_grad for t in inputs)
        outputs = self.forward(*arrays)
        creator = None
        if _GradMode.enabled and any(needs_grad):
            creator = self
            self.inputs = inputs
            self.input_versions = tuple(t._version for t in inputs)  # see Tensor's in-place ops
        if type(outputs) is not tuple:
            return Tensor._make(outputs, creator, 0)
        self.num_outputs = len(outputs)
        return tuple(Tensor._make(y, creator, i) for i, y in enumerate(outputs))

    def forward(self, *arrays):
        raise NotImplementedError(f"{type(self).__name__} must implement forward(*arrays)")

    def backward(self, *grad_outputs):
        raise NotImplementedError(f"{type(self).__name__} must implement backward(*grads)")

    def release(self) -> None:
        """Forget the inputs and whatever ``forward`` saved: the graph behind is freed."""
        self.__dict__.clear()
        self.inputs = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


# ---------------------------------------------------------------------------
# Tensor


class Tensor:
    """An array with an optional gradient and a link to the operation that made it.

    ``data`` may be a NumPy or CuPy array (kept as is, dtype included), or a Python
    number or list (made float32 on the active device). ``dtype`` converts.

    Example:
        >>> x = Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
        >>> x.shape, x.dtype
        ((2, 2), dtype('float32'))
        >>> loss = (x @ x).mean()
        >>> loss.backward()
        >>> x.grad.shape
        (2, 2)
    """

    __slots__ = (
        "data", "_grad", "_grad_tensor", "requires_grad", "creator", "output_index", "_version",
        "__weakref__",
    )  # fmt: skip
    __array_ufunc__ = None  # ndarray <op> Tensor defers to Tensor's reflected operators
    __hash__ = object.__hash__  # __eq__ is element-wise; hash by identity

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        data = _as_ndarray(as_array(data, dtype=dtype))
        if requires_grad and data.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(
                f"only floating tensors can require a gradient, got dtype {data.dtype}; "
                "pass dtype='float32' (or float64)."
            )
        self.data = data
        self._grad = None  # the gradient array; .grad wraps it in a Tensor
        self._grad_tensor = None
        self.requires_grad = requires_grad
        self.creator = None
        self.output_index = 0
        self._version = 0  # counts in-place changes, so stale saved values are caught

    @classmethod
    def _make(cls, data, creator: Function | None, output_index: int) -> Tensor:
        """Fast constructor used by operations (no conversion, no checks)."""
        t = object.__new__(cls)
        t.data = _as_ndarray(data)
        t._grad = None
        t._grad_tensor = None
        t.requires_grad = creator is not None
        t.creator = creator
        t.output_index = output_index
        t._version = 0
        return t

    # -- the gradient -----------------------------------------------------------
    @property
    def grad(self) -> Tensor | None:
        """The gradient, a Tensor (no history) sharing its memory with the gradient that
        backward() fills and optimizers read, or None; in-place changes to it stick.

        Example:
            >>> w = Tensor([1.0, 2.0], requires_grad=True)
            >>> (w * w).sum().backward()
            >>> w.grad.mul_(0.5) is w.grad
            True
            >>> w.grad
            tensor([1., 2.], dtype=float32)
        """
        array = self._grad
        if array is None:
            return None
        wrapper = self._grad_tensor
        if wrapper is None or wrapper.data is not array:
            wrapper = self._grad_tensor = Tensor._make(array, None, 0)
        return wrapper

    @grad.setter
    def grad(self, value) -> None:
        if value is None:
            self._grad = self._grad_tensor = None
            return
        array = value.data if isinstance(value, Tensor) else _as_ndarray(value)
        if not (isinstance(array, np.ndarray) or hasattr(array, "__cuda_array_interface__")):
            raise TypeError(
                f"assigned grad must be a Tensor, an array or None, got {type(value).__name__}"
            )
        if array.shape != self.data.shape:
            raise RuntimeError(
                f"assigned grad has data of a different size: grad shape {array.shape}, "
                f"tensor shape {self.data.shape}"
            )
        if array.dtype != self.data.dtype:
            raise RuntimeError(
                f"assigned grad has data of a different type: grad dtype {array.dtype}, "
                f"tensor dtype {self.data.dtype}"
            )
        if backend.device_of(array) != self.device:
            raise RuntimeError(
                f"assigned grad is on {backend.device_of(array)}, the tensor on {self.device}"
            )
        self._grad = array
        self._grad_tensor = value if isinstance(value, Tensor) and not value.requires_grad else None

    # -- array-like attributes ---------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        """The number of elements, as NumPy's ``size``; called, the shape, as PyTorch's
        ``size()``: ``t.size`` is an int, ``t.size()`` the shape, ``t.size(0)`` one dim.

        Example:
            >>> t = Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
            >>> t.size, t.size(), t.size(-1), t.numel()
            (6, (2, 3), 3, 6)
        """
        return _Size(self.data.size, self.data.shape)

    def numel(self) -> int:
        return self.data.size

    def dim(self) -> int:
        return self.data.ndim

    @property
    def device(self) -> str:
        return backend.device_of(self.data)

    @property
    def is_leaf(self) -> bool:
        return self.creator is None

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        body = "tensor" + repr(_to_numpy(self.data))[5:].replace("\n      ", "\n       ")
        extra = ", requires_grad=True" if self.requires_grad else ""
        if self.device != "cpu":
            extra += ", device='cuda'"
        return body[:-1] + extra + ")" if extra else body

    def item(self) -> float:
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(
                f"item() needs a tensor of one element, this one has shape {self.shape}"
            )
        return self.data.item()

    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (copied from the GPU when on CUDA; never part of a graph)."""
        return _to_numpy(self.data)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """The data as a NumPy array, so ``np.allclose(t, expected)`` works; like PyTorch
        and CuPy, a tensor on the GPU refuses: call ``.numpy()`` to copy it over.

        Example:
            >>> np.asarray(Tensor([1.0, 2.0]))
            array([1., 2.], dtype=float32)
        """
        if self.device != "cpu":
            raise TypeError(
                f"a tensor on {self.device} does not convert to NumPy implicitly; call "
                ".numpy() (copies it to the host) or .to('cpu') first."
            )
        return np.array(self.data, dtype=dtype, copy=copy)

    def tolist(self):
        return self.data.tolist()

    def __bool__(self) -> bool:
        return bool(self.data)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    # -- in-place changes -----------------------------------------------------
    def _check_in_place(self, what: str) -> None:
        """Refuse an in-place change that would corrupt a gradient: a leaf that requires
        grad while gradients are recorded, or a tensor that an operation produced. (A
        tensor saved by an operation and changed later is caught by backward().)"""
        if not _GradMode.enabled:
            return
        if self.requires_grad and self.is_leaf:
            raise RuntimeError(
                f"{what} on a leaf tensor that requires grad, while gradients are recorded: "
                "the change would not be differentiable. Update parameters inside "
                "`with lmcore.no_grad():` (as an optimizer does)."
            )
        if self.creator is not None:
            raise RuntimeError(
                f"{what} on a tensor computed by {type(self.creator).__name__}, while "
                "gradients are recorded: its backward pass may need the old values. Use the "
                "out-of-place form (x = x + y), or detach() first."
            )

    def _in_place(self, what: str, change) -> Tensor:
        self._check_in_place(what)
        change(self.data)
        self._version += 1
        return self

    def __iadd__(self, other):
        return self._in_place("+=", lambda a: a.__iadd__(_data_of(other)))

    def __isub__(self, other):
        return self._in_place("-=", lambda a: a.__isub__(_data_of(other)))

    def __imul__(self, other):
        return self._in_place("*=", lambda a: a.__imul__(_data_of(other)))

    def __itruediv__(self, other):
        return self._in_place("/=", lambda a: a.__itruediv__(_data_of(other)))

    def add_(self, other, alpha: float = 1) -> Tensor:
        """``self += alpha * other``, in place; returns self (PyTorch's ``add_``)."""
        other = _data_of(other)
        return self._in_place("add_", lambda a: a.__iadd__(other if alpha == 1 else alpha * other))

    def sub_(self, other, alpha: float = 1) -> Tensor:
        other = _data_of(other)
        return self._in_place("sub_", lambda a: a.__isub__(other if alpha == 1 else alpha * other))

    def mul_(self, other) -> Tensor:
        return self._in_place("mul_", lambda a: a.__imul__(_data_of(other)))

    def div_(self, other) -> Tensor:
        return self._in_place("div_", lambda a: a.__itruediv__(_data_of(other)))

    def zero_(self) -> Tensor:
        """Set every element to 0, in place; returns self.

        Example:
            >>> w = Tensor([1.0, 2.0], requires_grad=True)
            >>> with no_grad():
            ...     w.zero_()
            tensor([0., 0.], dtype=float32, requires_grad=True)
        """
        return self.fill_(0)

    def fill_(self, value) -> Tensor:
        return self._in_place("fill_", lambda a: a.fill(value))

    def copy_(self, src) -> Tensor:
        """Copy ``src`` (a tensor, array or number, broadcast to this shape) into this
        tensor, in place, keeping this tensor's dtype and device; returns self."""
        src = _data_of(src)
        xp = backend.get_array_module(self.data)
        if backend.device_of(src) != self.device and hasattr(src, "shape"):
            src = backend.to_device(src, self.device)

        def copy(a):
            a[...] = xp.asarray(src, dtype=a.dtype)

        return self._in_place("copy_", copy)

    def clamp_(self, min=None, max=None) -> Tensor:
        """Limit every element to [min, max], in place; returns self."""
        xp = backend.get_array_module(self.data)
        return self._in_place("clamp_", lambda a: xp.clip(a, min, max, out=a))

    def clone(self) -> Tensor:
        """A copy with its own memory that stays in the graph (gradients flow back)."""
        return _Clone()(self)

    # -- graph control --------------------------------------------------------
    def detach(self) -> Tensor:
        """The same data with no history: gradients do not flow through the result."""
        return Tensor._make(self.data, None, 0)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Turn gradient tracking of a leaf on or off, in place; returns self."""
        if not self.is_leaf:
            raise RuntimeError("requires_grad_ applies to leaf tensors; call detach() first.")
        if requires_grad and self.data.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(f"only floating tensors can require a gradient, got {self.dtype}")
        self.requires_grad = requires_grad
        return self

    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Add d(self)/d(leaf) times ``grad`` into every leaf's ``.grad``.

        ``grad`` defaults to 1 for a one-element tensor. The graph is freed
        afterwards; pass ``retain_graph=True`` to call backward through it again.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input had "
                "requires_grad=True, or it was computed under no_grad() or detached."
            )
        xp = backend.get_array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a one-element tensor, this one has "
                    f"shape {self.shape}; reduce it (e.g. .sum()) or pass grad=."
                )
            grad = xp.ones_like(self.data)
        else:
            grad = _as_ndarray(as_array(grad, dtype=self.dtype, like=self.data)).copy()
            if grad.shape != self.shape:
                raise ValueError(f"grad has shape {grad.shape}, the tensor has {self.shape}")
        run_backward(self, grad, retain_graph)

    # Comparisons give boolean tensors that are not part of any graph.
    def __lt__(self, other):
        return Tensor._make(self.data < _data_of(other), None, 0)

    def __le__(self, other):
        return Tensor._make(self.data <= _data_of(other), None, 0)

    def __gt__(self, other):
        return Tensor._make(self.data > _data_of(other), None, 0)

    def __ge__(self, other):
        return Tensor._make(self.data >= _data_of(other), None, 0)

    def __eq__(self, other):
        return Tensor._make(self.data == _data_of(other), None, 0)

    def __ne__(self, other):
        return Tensor._make(self.data != _data_of(other), None, 0)


def detach_state(state):
    """A recurrent state (a tensor, or a tuple such as an LSTM's (h, c)) with the same values
    and no history, so the next backward pass stops here; None stays None.

    Example:
        >>> h = Tensor(np.ones((1, 2, 3)), requires_grad=True) * 2
        >>> detach_state(h).requires_grad, detach_state((h, h))[1].requires_grad
        (False, False)
    """
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(s.detach() for s in state)
    return state.detach()


def _data_of(value):
    return value.data if isinstance(value, Tensor) else value


class _Size(int):
    """An int (the number of elements) that, called, gives the shape or one dimension."""

    def __new__(cls, count: int, shape: tuple[int, ...]):
        size = super().__new__(cls, count)
        size.shape = shape
        return size

    def __call__(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]


class _Clone(Function):
    def forward(self, x):
        return x.copy()

    def backward(self, grad):
        return grad


def _to_numpy(array) -> np.ndarray:
    return np.asarray(array) if backend.device_of(array) == "cpu" else array.get()


# ---------------------------------------------------------------------------
# The backward pass


def _topological_order(root: Function) -> list[Function]:
    """Functions reachable from ``root``, each after all functions that feed it."""
    order: list[Function] = []
    visited: set[Function] = set()
    stack: list[tuple[Function, bool]] = [(root, False)]
    while stack:
        function, inputs_done = stack.pop()
        if inputs_done:
            order.append(function)
            continue
        if function in visited:
            continue
        if function.inputs is None:
            raise RuntimeError(
                "backward() through a graph that was already freed by an earlier backward(); "
                "pass retain_graph=True to the first call to go through it twice."
            )
        visited.add(function)
        stack.append((function, True))
        for t in function.inputs:
            creator = t.creator
            if creator is not None and creator not in visited:
                stack.append((creator, False))
    return order


def run_backward(root: Tensor, grad, retain_graph: bool = False) -> None:
    """Propagate ``grad`` (d loss / d root) back to every leaf that requires grad.

    Gradients wait in ``pending`` until they are complete: an intermediate
    tensor's under (its creator, output index), a leaf's under the leaf itself.
    The first gradient to arrive is kept as is (it may be shared, e.g. the two
    inputs of an addition get the same array); a second one makes a fresh sum,
    which later arrivals update in place. At the end each leaf's gradient is
    added into the leaf's gradient array (``leaf._grad``, which ``leaf.grad`` wraps),
    which always owns its memory (never a view, never shared with another tensor), so
    ``.grad`` can safely be updated in place.
    """
    if not memory.configured and backend.device_of(grad) == "cpu":
        memory.keep_freed_memory()  # from the first backward pass on NumPy arrays
    pending: dict[object, object] = {}
    owned: set[object] = set()

    def send(key, g) -> None:
        existing = pending.get(key)
        if existing is None:
            pending[key] = g
        elif key in owned:
            existing += g
        else:
            pending[key] = _as_ndarray(existing + g)
            owned.add(key)

    if root.creator is None:
        pending[root] = grad
    else:
        pending[(root.creator, root.output_index)] = grad
        for function in reversed(_topological_order(root.creator)):
            grads_out = [pending.pop((function, i), None) for i in range(function.num_outputs)]
            if any(g is not None for g in grads_out):
                _check_versions(function)
                grads_in = function.backward(*grads_out)
                if type(grads_in) is not tuple:
                    grads_in = (grads_in,)
                if len(grads_in) != len(function.inputs):
                    raise RuntimeError(
                        f"{type(function).__name__}.backward returned {len(grads_in)} gradients "
                        f"for {len(function.inputs)} inputs; return one per input (None to skip)."
                    )
                for t, g, needed in zip(
                    function.inputs, grads_in, function.needs_grad, strict=True
                ):
                    if needed and g is not None:
                        _check_gradient(function, t, g)
                        send(t if t.creator is None else (t.creator, t.output_index), g)
            if not retain_graph:
                function.release()

    stored: set[int] = set()
    for leaf, g in pending.items():
        if leaf._grad is not None:
            leaf._grad += g
            continue
        if leaf not in owned and (g.base is not None or id(g) in stored):
            g = g.copy()
        stored.add(id(g))
        leaf._grad = g


def _check_versions(function: Function) -> None:
    """Refuse to differentiate through inputs changed in place after the forward pass."""
    for i, (t, version) in enumerate(zip(function.inputs, function.input_versions)):
        if t._version != version:
            raise RuntimeError(
                f"input {i} of {type(function).__name__} (shape {t.shape}) was changed in "
                "place after the forward pass used it, so its gradient would be wrong; "
                "change a copy (clone()) instead, or change it after backward()."
            )


def _check_gradient(function: Function, t: Tensor, g) -> None:
    if g.shape != t.data.shape or g.dtype != t.data.dtype:
        raise RuntimeError(
            f"{type(function).__name__}.backward returned a gradient of shape {g.shape} "
            f"and dtype {g.dtype} for an input of shape {t.data.shape} and dtype "
            f"{t.data.dtype}; they must match."
        )
