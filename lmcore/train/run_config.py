"""The TOML file of a pretraining run: its sections, their settings, and profile overrides.

A run file has five sections; every setting has a default, so a file names only what
it changes. ``[profiles.<profile>.<section>]`` tables change settings for one profile
(``quick``, ``standard``, ``full``; see :mod:`lmcore.config`), so one file serves the
tests, a CPU and a GPU:

.. code-block:: toml

    [data]
    corpus = "shakespeare"      # the shipped plays, whole plays held out
    tokenizer = "char"          # or "bpe", with vocab_size = 512

    [model]                     # lmcore.models.GPTConfig, vocab_size from the tokenizer
    n_layer = 6
    n_head = 6
    n_embd = 384
    block_size = 256
    dropout = 0.2

    [optimizer]                 # AdamW, no decay on biases and norms
    lr = 1e-3
    beta2 = 0.99

    [schedule]                  # linear warm-up, cosine decay to min_lr_factor * lr
    warmup_steps = 100

    [training]
    steps = 5000
    batch_size = 64             # sequences per micro-batch
    accumulation_steps = 1      # micro-batches per optimizer step

    [profiles.quick.training]
    steps = 20

A setting the file misspells, or gives a value of the wrong kind, is an error that
names it (``training.stpes``), with the settings its section takes.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.toml"
    >>> _ = path.write_text('[training]\\nsteps = 1000\\n[profiles.quick.training]\\nsteps = 200\\n')
    >>> load_run_config(path, profile="quick")["training"]["steps"]
    200
    >>> _ = path.write_text('[training]\\nstpes = 100\\n')
    >>> load_run_config(path)
    Traceback (most recent call last):
    ...
    lmcore.train.run_config.RunConfigError: ...run.toml: training.stpes is not a setting; [training] takes: steps, batch_size, ...
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

from lmcore import config as profiles

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

__all__ = ["DEFAULTS", "RunConfigError", "load_run_config", "resolve_run_config"]

# Every setting, with its default. None: unset (decided at run time, or needed only
# with another choice).
DEFAULTS = {
    "data": {"corpus": "shakespeare", "tokenizer": "char", "vocab_size": None},
    "model": {
        "n_layer": 6,
        "n_head": 6,
        "n_embd": 384,
        "block_size": 256,
        "dropout": 0.2,
        "bias": True,
        "positional": "learned",
    },
    "optimizer": {
        "lr": 1e-3,
        "weight_decay": 0.1,
        "beta1": 0.9,
        "beta2": 0.99,
        "grad_clip": 1.0,
    },
    "schedule": {"warmup_steps": 100, "min_lr_factor": 0.1},
    "training": {
        "steps": 5000,
        "batch_size": 64,
        "accumulation_steps": 1,
        "eval_every": 250,
        "eval_batches": 20,
        "checkpoint_every": 500,
        "log_every": 10,
        "mixed_precision": False,
        "seed": 1337,
        "peak_tflops": None,
    },
}

CORPORA = ("shakespeare",)
TOKENIZERS = ("char", "bpe")
POSITIONAL = ("learned", "sinusoidal", "rotary")
_POSITIVE_INTEGERS = {
    "model": ("n_layer", "n_head", "n_embd", "block_size"),
    "training": (
        "steps",
        "batch_size",
        "accumulation_steps",
        "eval_every",
        "eval_batches",
        "checkpoint_every",
        "log_every",
    ),
}


class RunConfigError(ValueError):
    """A run file that cannot be read, or a setting in it that is unknown or invalid."""


def load_run_config(path, profile: str | None = None) -> dict:
    """The settings of the TOML file ``path`` for ``profile`` (default: the active one,
    :func:`lmcore.config.profile`): the defaults, then the file's sections, then its
    ``[profiles.<profile>]`` tables, checked. Returns ``{section: {setting: value}}``
    plus ``"profile"``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunConfigError(f"no run file {path}; give the path of a .toml file") from None
    try:
        settings = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise RunConfigError(f"{path} is not valid TOML: {error}") from None
    return resolve_run_config(settings, profile, source=str(path))


def resolve_run_config(settings: dict, profile: str | None = None, source: str = "") -> dict:
    """What :func:`load_run_config` does after parsing: ``settings`` (the parsed TOML)
    over the defaults, with the profile's overrides, checked; ``source`` names the file
    in messages."""
    where = f"{source}: " if source else ""
    profile = profile or profiles.profile()
    if profile not in profiles.PROFILES:
        raise RunConfigError(
            f"{where}no profile {profile!r}; choose one of {', '.join(profiles.PROFILES)}"
        )
    settings = dict(settings)
    overrides = settings.pop("profiles", {})
    if not isinstance(overrides, dict):
        raise RunConfigError(f"{where}profiles must be a table of [profiles.<name>] tables")
    unknown = set(overrides) - set(profiles.PROFILES)
    if unknown:
        raise RunConfigError(
            f"{where}profiles.{sorted(unknown)[0]} is not a profile; the profiles are "
            f"{', '.join(profiles.PROFILES)}"
        )
    resolved = copy.deepcopy(DEFAULTS)
    _apply(resolved, settings, "", where)
    for name, layer in overrides.items():
        checked = copy.deepcopy(DEFAULTS)  # every profile's table is checked, used or not
        _apply(checked, layer, f"profiles.{name}.", where)
    _apply(resolved, overrides.get(profile, {}), f"profiles.{profile}.", where)
    _check(resolved, where)
    return {**resolved, "profile": profile}


def _apply(resolved: dict, layer: dict, prefix: str, where: str) -> None:
    """Set each setting of ``layer`` (TOML tables by section) in ``resolved``, checking
    its name and its type against the defaults."""
    if not isinstance(layer, dict):
        raise RunConfigError(f"{where}{prefix.rstrip('.')} must be a table of sections")
    for section, values in layer.items():
        if section not in DEFAULTS:
            raise RunConfigError(
                f"{where}[{prefix}{section}] is not a section; the sections are "
                f"{', '.join(DEFAULTS)}" + (" and profiles" if not prefix else "")
            )
        if not isinstance(values, dict):
            raise RunConfigError(f"{where}{prefix}{section} must be a table: [{prefix}{section}]")
        for key, value in values.items():
            name = f"{prefix}{section}.{key}"
            if key not in DEFAULTS[section]:
                raise RunConfigError(
                    f"{where}{name} is not a setting; [{section}] takes: "
                    f"{', '.join(DEFAULTS[section])}"
                )
            resolved[section][key] = _typed(
                value, DEFAULTS[section][key], section, key, name, where
            )


def _typed(value, default, section: str, key: str, name: str, where: str):
    """``value`` checked to be of the default's kind (a float setting takes an int too)."""
    expected = _kind(default, section, key)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is int and isinstance(value, bool) or not isinstance(value, expected):
        raise RunConfigError(
            f"{where}{name} must be {_KIND_NAMES[expected]}, got {value!r} ({type(value).__name__})"
        )
    return value


_KIND_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_UNSET_KINDS = {("data", "vocab_size"): int, ("training", "peak_tflops"): float}


def _kind(default, section: str, key: str) -> type:
    if default is None:
        return _UNSET_KINDS[(section, key)]
    return type(default)


def _check(c: dict, where: str) -> None:
    """Values each setting allows, and the settings that depend on each other."""

    def fail(message: str):
        raise RunConfigError(where + message)

    for section, keys in _POSITIVE_INTEGERS.items():
        for key in keys:
            if c[section][key] < 1:
                fail(f"{section}.{key} must be a positive integer, got {c[section][key]}")
    for section, key, choices in (
        ("data", "corpus", CORPORA),
        ("data", "tokenizer", TOKENIZERS),
        ("model", "positional", POSITIONAL),
    ):
        if c[section][key] not in choices:
            fail(
                f"{section}.{key} must be one of {', '.join(map(repr, choices))}, got {c[section][key]!r}"
            )
    data, model, opt, training = c["data"], c["model"], c["optimizer"], c["training"]
    if data["tokenizer"] == "bpe" and (data["vocab_size"] is None or data["vocab_size"] <= 256):
        fail(
            "data.vocab_size must be above 256 (the byte tokens) with tokenizer = 'bpe', "
            f"got {data['vocab_size']}"
        )
    if data["tokenizer"] == "char" and data["vocab_size"] is not None:
        fail("data.vocab_size applies to tokenizer = 'bpe' only; the characters set it for 'char'")
    if model["n_embd"] % model["n_head"]:
        fail(f"model.n_embd ({model['n_embd']}) must divide by model.n_head ({model['n_head']})")
    if not 0 <= model["dropout"] < 1:
        fail(f"model.dropout must lie in [0, 1), got {model['dropout']}")
    if opt["lr"] <= 0 or opt["weight_decay"] < 0 or opt["grad_clip"] < 0:
        fail("optimizer.lr must be positive, optimizer.weight_decay and optimizer.grad_clip >= 0")
    for beta in ("beta1", "beta2"):
        if not 0 <= opt[beta] < 1:
            fail(f"optimizer.{beta} must lie in [0, 1), got {opt[beta]}")
    warmup = c["schedule"]["warmup_steps"]
    if not 0 <= warmup <= training["steps"]:
        fail(
            f"schedule.warmup_steps ({warmup}) must lie between 0 and training.steps ({training['steps']})"
        )
    if not 0 <= c["schedule"]["min_lr_factor"] <= 1:
        fail(f"schedule.min_lr_factor must lie in [0, 1], got {c['schedule']['min_lr_factor']}")
    if training["peak_tflops"] is not None and training["peak_tflops"] <= 0:
        fail(f"training.peak_tflops must be positive, got {training['peak_tflops']}")
