"""Tokenizers: characters, words, byte-level BPE trained from scratch, and GPT-2's.

Example:
    >>> from lmcore.tokenizers import BPETokenizer, CharTokenizer, gpt2
    >>> CharTokenizer("abc").encode("cab")
    [2, 0, 1]
    >>> tok = BPETokenizer.train("low lower lowest", vocab_size=260)
    >>> tok.decode(tok.encode("lowest"))
    'lowest'
    >>> gpt2().encode("Hello world")
    [15496, 995]
"""

from lmcore.tokenizers.base import Tokenizer, load
from lmcore.tokenizers.bpe import BPETokenizer
from lmcore.tokenizers.char import CharTokenizer
from lmcore.tokenizers.gguf_bpe import GGUFBPETokenizer
from lmcore.tokenizers.gpt2 import bytes_to_unicode, gpt2, load_gpt2
from lmcore.tokenizers.pretokenize import GPT2_PATTERN
from lmcore.tokenizers.word import WORD_PATTERN, WordTokenizer

__all__ = [
    "BPETokenizer",
    "CharTokenizer",
    "GGUFBPETokenizer",
    "GPT2_PATTERN",
    "WORD_PATTERN",
    "WordTokenizer",
    "Tokenizer",
    "bytes_to_unicode",
    "gpt2",
    "load",
    "load_gpt2",
]
