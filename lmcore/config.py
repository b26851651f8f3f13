"""The experiment profile: one setting, ``LMCORE_PROFILE``, read in one place.

``quick`` is for tests and CI (each notebook in about a minute on 2 CPU cores),
``standard`` is the default on a CPU (each chapter within ten minutes), ``full``
is the default when a GPU is in use (the book's headline numbers).

Example:
    >>> from lmcore import config
    >>> steps = config.pick(quick=50, standard=2_000, full=10_000)
"""

from __future__ import annotations

import os

PROFILES = ("quick", "standard", "full")


def profile() -> str:
    """The active profile: ``$LMCORE_PROFILE``, else ``full`` on a GPU and ``standard`` on a CPU.

    Example:
        >>> profile() in PROFILES
        True
    """
    name = os.environ.get("LMCORE_PROFILE", "").strip().lower()
    if not name:
        from lmcore import backend

        return "full" if backend.device() == "cuda" else "standard"
    if name not in PROFILES:
        raise ValueError(
            f"LMCORE_PROFILE={name!r} is not a profile; set it to one of {', '.join(PROFILES)} "
            "(or unset it to choose by device)."
        )
    return name


def pick(*, quick, standard, full=None):
    """Choose a setting by the active profile; ``full`` defaults to ``standard``.

    Example:
        >>> n = pick(quick=10, standard=100)
    """
    values = {"quick": quick, "standard": standard, "full": standard if full is None else full}
    return values[profile()]
