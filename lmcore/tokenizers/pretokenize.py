"""Pre-tokenization: cutting text into chunks that BPE merges never cross.

GPT-2 splits text with one regular expression before byte-pair encoding, so that a
merge never glues a word to the space, digit or punctuation mark around it. Each
chunk keeps its leading space (``" world"``), contractions are split off
(``"'s"``), and every character of the text lands in exactly one chunk, so
joining the chunks gives the text back.

Example:
    >>> split("Hello world, it's 2024!")
    ['Hello', ' world', ',', ' it', "'s", ' 2024', '!']
"""

from __future__ import annotations

import functools

import regex

#: GPT-2's pre-tokenization pattern (needs the ``regex`` module for ``\p{L}``, ``\p{N}``).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@functools.lru_cache(maxsize=32)
def compiled(pattern: str) -> regex.Pattern:
    """The compiled ``regex`` pattern for ``pattern`` (cached)."""
    return regex.compile(pattern)


def split(text: str, pattern: str = GPT2_PATTERN) -> list[str]:
    """Cut ``text`` into the chunks matched by ``pattern`` (GPT-2's by default), in order."""
    return compiled(pattern).findall(text)


def special_splitter(specials) -> regex.Pattern:
    """A pattern whose ``split`` cuts text around any of the strings in ``specials``.

    The capture group keeps the special tokens in the result of ``split``; longer
    tokens are tried first so that one special token that is a prefix of another
    cannot shadow it.

    Example:
        >>> special_splitter(["<|endoftext|>"]).split("a<|endoftext|>b")
        ['a', '<|endoftext|>', 'b']
    """
    alternatives = "|".join(regex.escape(s) for s in sorted(specials, key=len, reverse=True))
    return regex.compile(f"({alternatives})")
