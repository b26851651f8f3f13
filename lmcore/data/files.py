"""Reading vendored data files, with a checksum so a missing or altered file is caught.

Example:
    >>> from lmcore.data.files import verified_bytes
    >>> raw = verified_bytes(path, "d832b744…", what="the Shakespeare corpus")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from pathlib import Path

HERE = Path(__file__).parent


class DataError(RuntimeError):
    """A vendored data file is missing, altered or malformed."""


RESTORE = (
    "It ships with lmcore: restore it from the repository (SOURCE.md beside it says where it "
    'comes from) or reinstall the package (pip install --force-reinstall "lmcore @ git+<repository>").'
)


def verified_bytes(path: Path, sha256: str, what: str) -> bytes:
    """The bytes of ``path`` after checking their sha256; a clear DataError otherwise."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{what} is missing: expected the file {path}. {RESTORE}") from None
    found = hashlib.sha256(raw).hexdigest()
    if found != sha256:
        raise DataError(
            f"{what} in {path} has been altered: its sha256 is {found}, expected {sha256}. {RESTORE}"
        )
    return raw
