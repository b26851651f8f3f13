"""Optimizers: SGD (momentum, Nesterov), Adam and AdamW, with PyTorch's formulas.

An optimizer holds ``param_groups``: a list of dicts, each with its ``params`` and
its own hyperparameters (``lr``, ``weight_decay``, ...); values left out of a group
come from the optimizer's arguments. ``step()`` updates every parameter that has a
gradient, in place, with arrays of the parameter's own library (NumPy or CuPy) and
dtype. Schedules change ``group["lr"]`` between steps.

Example:
    >>> import numpy as np
    >>> from lmcore.nn import Parameter
    >>> w = Parameter(np.array([1.0, -2.0]))
    >>> opt = SGD([w], lr=0.1)
    >>> w.grad = np.array([1.0, 1.0])
    >>> opt.step()
    >>> w.data
    array([ 0.9, -2.1])
"""

from __future__ import annotations

import copy
import math

import numpy as np

from lmcore import backend, cuda
from lmcore.autograd import Tensor
from lmcore.nn.module import Module, Parameter

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "weight_decay_groups"]


class Optimizer:
    """Base class: keeps the parameter groups and the per-parameter ``state``; subclasses
    define ``update(param, grad, state, group)`` for one parameter.

    The state follows its parameter: after ``model.to("float64")`` or ``model.to("cuda")``
    the next ``step()`` converts the parameter's state arrays to its new dtype and device.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = defaults
        self.state: dict[Parameter, dict] = {}
        self.param_groups: list[dict] = []
        if isinstance(params, (Tensor, dict)):
            raise TypeError(
                f"{type(self).__name__} takes an iterable of parameters or of parameter-group "
                f"dicts, got one {type(params).__name__}; pass model.parameters() or [param]."
            )
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters with its own hyperparameters; those it leaves out
        come from the optimizer's arguments. Checked as the constructor's groups are: no
        parameter in two groups, no unknown or invalid hyperparameter. Use it to train
        layers unfrozen during fine-tuning.

        Example:
            >>> from lmcore import nn
            >>> body, head = nn.Linear(4, 4), nn.Linear(4, 2)
            >>> opt = SGD(body.parameters(), lr=0.01, momentum=0.9)
            >>> opt.add_param_group({"params": head.parameters(), "lr": 0.1})
            >>> [(g["lr"], g["momentum"], len(g["params"])) for g in opt.param_groups]
            [(0.01, 0.9, 2), (0.1, 0.9, 2)]
        """
        name = type(self).__name__
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise TypeError(
                f"a parameter group of {name} is a dict with a 'params' entry (and optional "
                f"hyperparameters), got {type(param_group).__name__}"
            )
        group = {**self.defaults, **param_group}
        params = group["params"]
        if isinstance(params, (set, frozenset)):
            raise TypeError(
                f"{name} needs the parameters of a group in a fixed order, got a set; "
                "pass a list (e.g. list(model.parameters()))."
            )
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for param in group["params"]:
            if not isinstance(param, Tensor) or not param.is_leaf:
                raise TypeError(
                    f"{name} optimizes leaf tensors (parameters), got "
                    f"{type(param).__name__}; pass model.parameters()."
                )
            if id(param) in seen:
                raise ValueError(
                    f"a parameter of shape {param.shape} is in two parameter groups of "
                    f"{name} (or twice in one); give each parameter to one group only."
                )
            seen.add(id(param))
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise ValueError(
                f"{name} has no hyperparameter {', '.join(sorted(unknown))}; "
                f"a group may set {', '.join(self.defaults)}"
            )
        self._check_hyperparameters(group)
        self.param_groups.append(group)

    def _check_hyperparameters(self, group: dict) -> None:
        if group["lr"] < 0:
            raise ValueError(f"learning rate must be >= 0, got {group['lr']}")
        if group.get("weight_decay", 0) < 0:
            raise ValueError(f"weight_decay must be >= 0, got {group['weight_decay']}")

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the gradients (or zero them in place when ``set_to_none=False``)."""
        for group in self.param_groups:
            for param in group["params"]:
                if set_to_none:
                    param._grad = None
                elif param._grad is not None:
                    param._grad[...] = 0

    def step(self) -> None:
        """Update every parameter that has a gradient."""
        for group in self.param_groups:
            for param in group["params"]:
                if param._grad is not None:
                    self.update(param, param._grad, self._state_of(param), group)

    def _state_of(self, param: Parameter) -> dict:
        """The state of ``param``, its floating arrays first moved and cast to the
        parameter's device and dtype if the model was moved or cast since they were made."""
        state = self.state.setdefault(param, {})
        data = param.data
        for key, value in state.items():
            if (
                hasattr(value, "dtype")
                and value.dtype.kind == "f"
                and (value.dtype != data.dtype or type(value) is not type(data))
            ):
                state[key] = _like(value, data)
        return state

    def update(self, param: Parameter, grad, state: dict, group: dict) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define update()")

    # -- saving and resuming -------------------------------------------------------
    def state_dict(self) -> dict:
        """``{"state": {index: {name: value}}, "param_groups": [{hyperparameters, "params":
        [index, ...]}]}``, parameters numbered in group order as in PyTorch; arrays copied."""
        index = {}
        groups = []
        for group in self.param_groups:
            numbers = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append({**group, "params": numbers})
        state = {index[id(param)]: copy.deepcopy(values) for param, values in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and per-parameter state saved by :meth:`state_dict`
        into an optimizer built over the same parameters in the same order.

        Each setting keeps its type, also after a trip through JSON (a checkpoint's
        metadata), which turns tuples into lists: ``betas`` comes back a tuple. State
        arrays take each parameter's dtype and device.

        Example:
            >>> import json
            >>> w = Parameter(np.zeros(2))
            >>> saved = json.loads(json.dumps(Adam([w], betas=(0.8, 0.9)).state_dict()))
            >>> opt = Adam([w])
            >>> opt.load_state_dict(saved)
            >>> opt.param_groups[0]["betas"]
            (0.8, 0.9)
        """
        saved_groups = state_dict["param_groups"]
        saved_sizes = [len(g["params"]) for g in saved_groups]
        sizes = [len(g["params"]) for g in self.param_groups]
        if saved_sizes != sizes:
            raise ValueError(
                f"the saved {type(self).__name__} state has parameter groups of sizes "
                f"{saved_sizes}, this optimizer has {sizes}; build it over the same "
                "parameters, grouped the same way."
            )
        params = {}
        for group, saved in zip(self.param_groups, saved_groups):
            params.update(zip(saved["params"], group["params"]))
            for key, value in saved.items():
                if key != "params":
                    group[key] = _same_type(value, group.get(key, self.defaults.get(key)))
            self._check_hyperparameters(group)
        self.state = {}
        for number, values in state_dict["state"].items():
            param = params[int(number)]
            self.state[param] = {k: _like(v, param.data) for k, v in values.items()}

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            settings = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} parameters, {settings}")
        return "\n".join(lines) + "\n)"


def _same_type(value, like):
    """A saved setting as the type the optimizer uses for it: a list back to a tuple
    where the setting is a tuple (JSON, a checkpoint's metadata, has no tuples)."""
    if isinstance(like, tuple) and isinstance(value, list):
        return tuple(value)
    return value


def _like(value, array):
    """A saved state value as a fresh array on ``array``'s device and dtype (numbers kept)."""
    if not hasattr(value, "shape"):
        return value
    xp = backend.get_array_module(array)
    if xp is np and not isinstance(value, np.ndarray):
        value = value.get()  # a CuPy array loaded into a model on the CPU
    return xp.array(value, dtype=array.dtype)


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum, Nesterov momentum and L2
    weight decay, as ``torch.optim.SGD``::

        g = grad + weight_decay * p
        buf = g (first step), then momentum * buf + (1 - dampening) * g
        g = g + momentum * buf (Nesterov) or buf (momentum)
        p = p - lr * g
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group: dict) -> None:
        super()._check_hyperparameters(group)
        if group["momentum"] < 0:
            raise ValueError(f"momentum must be >= 0, got {group['momentum']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening = 0")

    def update(self, param, grad, state, group) -> None:
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * param.data
        momentum = group["momentum"]
        if momentum:
            buffer = state.get("momentum_buffer")
            if buffer is None:
                buffer = state["momentum_buffer"] = grad.copy()
            else:
                buffer *= momentum
                buffer += (1 - group["dampening"]) * grad
            grad = grad + momentum * buffer if group["nesterov"] else buffer
        param.data -= group["lr"] * grad


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015) with bias correction, as ``torch.optim.Adam``::

        g = grad + weight_decay * p                     (L2 penalty in the gradient)
        m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
        p = p - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

    ``eps`` is added outside the square root. For weight decay that does not pass
    through the adaptive scaling use :class:`AdamW`.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def _check_hyperparameters(self, group: dict) -> None:
        super()._check_hyperparameters(group)
        beta1, beta2 = group["betas"]
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"betas must lie in [0, 1), got {group['betas']}")
        if group["eps"] < 0:
            raise ValueError(f"eps must be >= 0, got {group['eps']}")

    def apply_weight_decay(self, param, grad, group):
        """L2 penalty: the decay joins the gradient (AdamW overrides this)."""
        return grad + group["weight_decay"] * param.data if group["weight_decay"] else grad

    def update(self, param, grad, state, group) -> None:
        xp = backend.get_array_module(param.data)
        grad = self.apply_weight_decay(param, grad, group)
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(param.data)  # m
            state["exp_avg_sq"] = xp.zeros_like(param.data)  # v
        state["step"] += 1
        beta1, beta2 = group["betas"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        squared = grad * grad
        squared *= 1 - beta2
        v += squared
        correction1 = 1 - beta1 ** state["step"]
        correction2 = 1 - beta2 ** state["step"]
        # The step, computed in place in one buffer: lr / c1 * m / (sqrt(v / c2) + eps).
        step = xp.sqrt(v, out=xp.empty_like(v))  # out=: an array even for a 0-d parameter
        step *= 1 / math.sqrt(correction2)
        step += group["eps"]
        xp.divide(m, step, out=step)
        step *= group["lr"] / correction1
        param.data -= step


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter, 2019), as
    ``torch.optim.AdamW``: first ``p = p * (1 - lr * weight_decay)``, then the Adam step
    on the raw gradient. Default ``weight_decay`` is 0.01; use
    :func:`weight_decay_groups` to exempt biases and norm weights.

    Example:
        >>> from lmcore import nn
        >>> model = nn.Linear(4, 2)
        >>> opt = AdamW(weight_decay_groups(model, 0.1), lr=3e-4, betas=(0.9, 0.95))
        >>> [g["weight_decay"] for g in opt.param_groups]
        [0.1, 0.0]
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ):
        super().__init__(params, lr, betas, eps, weight_decay)

    def apply_weight_decay(self, param, grad, group):
        if group["weight_decay"]:
            param.data *= 1 - group["lr"] * group["weight_decay"]
        return grad

    def step(self) -> None:
        """Update every parameter that has a gradient; on the GPU, all of them in one
        kernel launch (:func:`lmcore.cuda.ops.adamw_multi_tensor`)."""
        work = [(p, g) for g in self.param_groups for p in g["params"] if p._grad is not None]
        if not work or not cuda.wanted(*(a for p, _ in work for a in (p.data, p._grad))):
            return super().step()
        for param, _ in work:
            self._state_of(param)  # state made before a model.to() follows its parameter
        from lmcore.cuda import ops

        by_step: dict[tuple, list] = {}  # tensors that share a step count and betas/eps
        for param, group in work:
            state = self.state.setdefault(param, {})
            if not state:
                xp = backend.get_array_module(param.data)
                state["step"] = 0
                state["exp_avg"] = xp.zeros_like(param.data)
                state["exp_avg_sq"] = xp.zeros_like(param.data)
            state["step"] += 1
            key = (state["step"], tuple(group["betas"]), group["eps"])
            by_step.setdefault(key, []).append(
                (
                    param.data,
                    param._grad,
                    state["exp_avg"],
                    state["exp_avg_sq"],
                    group["lr"],
                    group["weight_decay"],
                )  # fmt: skip
            )
        for (step, betas, eps), tensors in by_step.items():
            ops.adamw_multi_tensor(tensors, step, betas, eps)


def weight_decay_groups(model, weight_decay: float) -> list[dict]:
    """Two parameter groups, as nanoGPT makes them: matrices (``ndim >= 2``: linear and
    embedding weights) decay with ``weight_decay``; biases and norm weights (``ndim < 2``)
    do not. Frozen parameters (``requires_grad=False``) are left out.

    ``model`` is a Module or an iterable of parameters.

    Example:
        >>> from lmcore import nn
        >>> decay, no_decay = weight_decay_groups(nn.Linear(3, 2), 0.1)
        >>> [p.shape for p in decay["params"]], [p.shape for p in no_decay["params"]]
        ([(2, 3)], [(2,)])
    """
    params = model.parameters() if isinstance(model, Module) else model
    params = [p for p in params if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
