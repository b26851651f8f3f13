"""Checks shared by the tokenizers: text to encode, the policy for unseen symbols, valid ids.

The caller chooses: ``unk="error"`` raises a ``ValueError`` that names each unseen
symbol and where it first occurs; any other string (``"<unk>"`` is usual) is the
name of an extra token that every unseen symbol maps to.

Example:
    >>> check_policy("<unk>")
    '<unk>'
    >>> print(unseen_error("character", {"é": 3}, "a text that contains it"))  # doctest: +ELLIPSIS
    1 character not in the vocabulary: 'é' (first at character 3 of the text). Build ...
"""

from __future__ import annotations

import operator


def require_text(text, who: str) -> str:
    """``text`` when it is a str; otherwise a TypeError that says what to pass instead.

    Example:
        >>> require_text(None, "BPETokenizer.encode")
        Traceback (most recent call last):
        ...
        TypeError: BPETokenizer.encode takes a str, got NoneType
    """
    if isinstance(text, str):
        return text
    hint = ""
    if isinstance(text, (bytes, bytearray)):
        hint = "; decode the bytes first, e.g. text.decode('utf-8')"
    elif isinstance(text, (list, tuple)):
        hint = "; for several texts call it once per text (or use encode_batch)"
    raise TypeError(f"{who} takes a str, got {type(text).__name__}{hint}")


def check_policy(unk: str) -> str:
    """Return ``unk`` when it is ``"error"`` or a non-empty token name; raise otherwise."""
    if not isinstance(unk, str) or not unk:
        raise ValueError(
            f"unk must be 'error' (raise on unseen symbols) or the name of an unknown "
            f"token such as '<unk>', not {unk!r}"
        )
    return unk


def unseen_error(kind: str, first_seen: dict[str, int], remedy: str) -> ValueError:
    """The error for unseen symbols; ``first_seen`` maps each symbol to its first position.

    ``kind`` names the symbol ("character", "word"); positions are character offsets
    in the text being encoded. At most ten symbols are listed.
    """
    items = list(first_seen.items())
    listed = ", ".join(f"{s!r} (first at character {p} of the text)" for s, p in items[:10])
    more = f" and {len(items) - 10} more" if len(items) > 10 else ""
    plural = "s" if len(items) > 1 else ""
    return ValueError(
        f"{len(items)} {kind}{plural} not in the vocabulary: {listed}{more}. "
        f"Build the tokenizer from {remedy}, or pass unk='<unk>' to map unseen "
        f"{kind}s to an unknown-token id."
    )


def check_ids(ids, vocab_size: int, owner: str) -> list[int]:
    """``ids`` as a list of ints, each in ``range(vocab_size)``; raise ``ValueError`` otherwise.

    Python ints and NumPy integers are accepted; ``owner`` names the tokenizer in the error.
    """
    out = []
    for pos, i in enumerate(ids):
        try:
            i = operator.index(i)
        except TypeError:
            raise ValueError(
                f"token ids must be integers; got {i!r} at position {pos} for {owner}"
            ) from None
        if not 0 <= i < vocab_size:
            raise ValueError(
                f"id {i} at position {pos} is not in range(0, {vocab_size}) of {owner}; "
                f"were the ids made by another tokenizer?"
            )
        out.append(i)
    return out
