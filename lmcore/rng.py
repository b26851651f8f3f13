"""Default random generators, one per array library, seeded together.

Operations that draw random numbers (dropout) take a ``generator`` argument; when
it is left out they use the default generator of the input's array library
(``numpy.random.Generator`` or ``cupy.random.Generator``). ``manual_seed`` reseeds
them all, so a run is reproducible from one number.

Example:
    >>> import numpy as np
    >>> manual_seed(0)
    >>> a = default_generator(np).random(3)
    >>> manual_seed(0)
    >>> bool((a == default_generator(np).random(3)).all())
    True
"""

from __future__ import annotations

import types

_seed: int | None = None
_generators: dict[str, object] = {}


def manual_seed(seed: int) -> None:
    """Reseed the default generators of every array library."""
    global _seed
    _seed = seed
    _generators.clear()


def default_generator(xp: types.ModuleType):
    """The default generator of ``xp`` (numpy or cupy), made on first use."""
    generator = _generators.get(xp.__name__)
    if generator is None:
        generator = _generators[xp.__name__] = xp.random.default_rng(_seed)
    return generator


def get_state() -> dict:
    """The seed and the NumPy generator's state, JSON-serialisable, for checkpoints.

    CuPy's generator state is not included: a resumed GPU run draws dropout masks from a
    generator seeded afresh.

    Example:
        >>> import numpy as np
        >>> manual_seed(1)
        >>> state = get_state()
        >>> a = default_generator(np).random()
        >>> set_state(state)
        >>> a == default_generator(np).random()
        True
    """
    import numpy as np

    return {"seed": _seed, "numpy": default_generator(np).bit_generator.state}


def set_state(state: dict) -> None:
    """Restore what :func:`get_state` returned."""
    import numpy as np

    manual_seed(state["seed"])
    default_generator(np).bit_generator.state = state["numpy"]
