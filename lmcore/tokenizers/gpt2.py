"""GPT-2's tokenizer, rebuilt from OpenAI's vocabulary files.

GPT-2 stores its tokens as printable strings: each byte is shown as one unicode
character (:func:`bytes_to_unicode`), so that ``"Ġworld"`` is the bytes
``b" world"``. ``vocab.bpe`` lists the 50,000 merges in rank order and
``encoder.json`` gives each token its id; the byte tokens come first (ids 0-255,
in the order of :func:`bytes_to_unicode`), then merge ``k`` makes id ``256 + k``,
and ``<|endoftext|>`` is 50256. That is exactly the layout of :class:`~lmcore.tokenizers.bpe.BPETokenizer`,
with a byte order of its own.

The files are vendored in ``assets/gpt2`` (see ``SOURCE.md`` there) and checked
against their sha256 on every load.

Example:
    >>> gpt2().encode("Hello world")
    [15496, 995]
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from lmcore.data.files import verified_bytes
from lmcore.tokenizers.bpe import BPETokenizer
from lmcore.tokenizers.pretokenize import GPT2_PATTERN

ASSETS = Path(__file__).parent / "assets" / "gpt2"

#: The sha256 of each vendored file (the values tiktoken checks for GPT-2).
SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}
ENDOFTEXT = "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte value to the printable character that stands for it.

    Bytes that are printable Latin-1 characters (``!`` to ``~``, ``¡`` to ``¬``,
    ``®`` to ``ÿ``) stand for themselves; the 68 others (space, control bytes, …)
    take the characters from U+0100 on, in byte order. The dict is in GPT-2's
    order of byte tokens: printable ones first.

    Example:
        >>> bytes_to_unicode()[ord(" ")]
        'Ġ'
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    others = sorted(set(range(256)) - set(printable))
    mapping = {b: chr(b) for b in printable}
    mapping.update({b: chr(256 + k) for k, b in enumerate(others)})
    return mapping


def read_verified(directory: Path, name: str) -> bytes:
    """The bytes of ``directory/name``, after checking their sha256 against :data:`SHA256`."""
    return verified_bytes(
        Path(directory) / name, SHA256[name], what=f"GPT-2 vocabulary file {name}"
    )


def load_gpt2(directory: str | Path = ASSETS) -> BPETokenizer:
    """GPT-2's tokenizer from ``encoder.json`` and ``vocab.bpe`` in ``directory`` (uncached)."""
    encoder = json.loads(read_verified(directory, "encoder.json"))
    lines = read_verified(directory, "vocab.bpe").decode("utf-8").splitlines()
    byte_to_char = bytes_to_unicode()
    char_to_byte = {c: b for b, c in byte_to_char.items()}

    def to_bytes(token: str) -> bytes:
        return bytes([char_to_byte[c] for c in token])

    byte_ids = [encoder[byte_to_char[b]] for b in range(256)]
    merges = [[encoder[t] for t in line.split(" ")] for line in lines[1:] if line]
    tok = BPETokenizer(merges, [ENDOFTEXT], GPT2_PATTERN, byte_ids)
    # the ids of encoder.json must be those the merges imply
    vocab = tok.vocab
    if len(encoder) != len(vocab):
        raise ValueError(f"encoder.json has {len(encoder)} tokens; the merges make {len(vocab)}")
    for token, i in encoder.items():
        expected = token.encode("utf-8") if token == ENDOFTEXT else to_bytes(token)
        if vocab[i] != expected:
            raise ValueError(
                f"encoder.json gives {token!r} id {i}, which the merges make {vocab[i]!r}"
            )
    return tok


@functools.cache
def gpt2() -> BPETokenizer:
    """GPT-2's tokenizer (loaded once, then shared): OpenAI's ids, ``<|endoftext|>`` = 50256."""
    return load_gpt2()
