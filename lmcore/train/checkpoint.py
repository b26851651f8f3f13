"""Checkpoints: everything a run needs to continue exactly, in one safetensors file.

A checkpoint holds the state of any objects that have ``state_dict()`` and
``load_state_dict()`` (model, optimizer, scheduler, batch source, history...), the
step, a JSON config, and the state of :mod:`lmcore.rng`'s NumPy generator (dropout,
initialization). Arrays become safetensors tensors named by their place
(``model.embedding.weight``, ``optimizer.state.0.exp_avg``); everything else is kept
as JSON in the file's string metadata, so any safetensors reader can open it.

Files are written atomically: to a temporary file in the same folder, flushed to
disk, then renamed over the old one, so a crash leaves the previous checkpoint whole.

Example:
    >>> import tempfile, pathlib
    >>> from lmcore import nn, optim
    >>> model = nn.Linear(3, 2)
    >>> opt = optim.AdamW(model.parameters())
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.safetensors"
    >>> _ = save_checkpoint(path, step=10, config={"lr": 1e-3}, model=model, optimizer=opt)
    >>> load_checkpoint(path, model=model, optimizer=opt).step
    10
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from lmcore import backend, rng
from lmcore.atomic import write_atomically
from lmcore.autograd import Tensor

__all__ = ["Checkpoint", "CheckpointError", "load_checkpoint", "save_checkpoint"]

FORMAT = "lmcore-checkpoint/1"
_TENSOR = "__tensor__"  # marks where an array was taken out of the JSON skeleton


class CheckpointError(RuntimeError):
    """A checkpoint file is unreadable, or does not fit the objects it is loaded into."""


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` found: the step, the config, and every saved state
    (``state["model"]`` is the model's state_dict, ``state["rng"]`` the generators')."""

    path: Path
    step: int
    config: dict | None
    state: dict = field(repr=False)


def save_checkpoint(path, *, step: int = 0, config: dict | None = None, **objects) -> Path:
    """Write the state of ``objects`` (keyword -> object with ``state_dict()``), the step,
    ``config`` (JSON-serializable) and the RNG state to ``path``, atomically; objects
    given as None are left out.

    Example:
        ``save_checkpoint("run.safetensors", step=500, model=model, optimizer=opt,
        scheduler=scheduler, batches=batches)``
    """
    path = Path(path)
    if "rng" in objects:
        raise ValueError("'rng' is the name under which the RNG state is saved; rename it")
    state = {name: obj.state_dict() for name, obj in objects.items() if obj is not None}
    state["rng"] = rng.get_state()
    tensors: dict[str, np.ndarray] = {}
    skeleton = _take_arrays(state, "", tensors)
    metadata = {
        "format": FORMAT,
        "step": str(int(step)),
        "config": _to_json(config, "the config"),
        "state": _to_json(skeleton, "the saved state"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda temporary: save_file(tensors, temporary, metadata))
    return path


def load_checkpoint(path, *, restore_rng: bool = True, **objects) -> Checkpoint:
    """Read ``path`` and restore each of ``objects`` (keyword -> object with
    ``load_state_dict``) from the state saved under the same keyword, the model first,
    and the RNG state unless ``restore_rng`` is False. Objects given as None are skipped;
    with no objects it only reads.

    Raises FileNotFoundError for a missing file and :class:`CheckpointError` for an
    unreadable one, a missing state, or a state that does not fit (for a model of
    another architecture the message lists the mismatched keys).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}: check the path, or start without resuming."
        )
    metadata, tensors = _read(path)
    state = _put_arrays(json.loads(metadata["state"]), tensors)
    names = [name for name, obj in objects.items() if obj is not None]
    for name in sorted(names, key=lambda name: name != "model"):
        if name not in state:
            saved = ", ".join(key for key in state if key != "rng")
            raise CheckpointError(
                f"the checkpoint {path} holds no {name!r} state (it holds: {saved}); "
                f"load it without {name}=..."
            )
        try:
            objects[name].load_state_dict(state[name])
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            raise CheckpointError(
                f"cannot restore {name!r} from the checkpoint {path}:\n{err}"
            ) from err
    if restore_rng:
        rng.set_state(state["rng"])
    return Checkpoint(path, int(metadata["step"]), json.loads(metadata["config"]), state)


# ---------------------------------------------------------------------------
# Files


def _read(path: Path) -> tuple[dict, dict]:
    """The metadata and the tensors of a safetensors file, checked to be a checkpoint."""
    try:
        with safe_open(path, framework="numpy") as file:
            metadata = file.metadata() or {}
            tensors = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"cannot read the checkpoint {path}: it is not a valid safetensors file "
            f"(truncated or corrupt?): {err}. Use an earlier checkpoint or start again."
        ) from err
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file but not an lmcore checkpoint (its metadata has "
            f"format={metadata.get('format')!r}, expected {FORMAT!r}); to read bare "
            "weights use safetensors.numpy.load_file and model.load_state_dict."
        )
    return metadata, tensors


# ---------------------------------------------------------------------------
# Arrays out of nested state and back


def _to_json(value, what: str) -> str:
    try:
        return json.dumps(value)
    except TypeError as err:
        raise TypeError(f"{what} must be JSON-serializable to go in a checkpoint: {err}") from err


def _take_arrays(value, name: str, tensors: dict):
    """A JSON-able copy of ``value`` whose arrays are moved into ``tensors`` (as NumPy
    arrays) under their dotted place, and replaced by ``{"__tensor__": place}``."""
    if isinstance(value, Tensor):
        value = value.data
    if isinstance(value, dict):
        return {
            str(k): _take_arrays(v, f"{name}.{k}" if name else str(k), tensors)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_take_arrays(v, f"{name}.{i}", tensors) for i, v in enumerate(value)]
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # a NumPy/CuPy array or scalar
        if name in tensors:
            raise ValueError(f"two saved arrays would share the name {name!r}")
        tensors[name] = np.array(backend.to_device(value, "cpu"), order="C")
        return {_TENSOR: name}
    return value


def _put_arrays(value, tensors: dict):
    """Undo :func:`_take_arrays`: the nested state with its arrays back in place."""
    if isinstance(value, dict):
        if set(value) == {_TENSOR}:
            return tensors[value[_TENSOR]]
        return {k: _put_arrays(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_put_arrays(v, tensors) for v in value]
    return value
