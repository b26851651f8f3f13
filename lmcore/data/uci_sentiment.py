"""The UCI Sentiment Labelled Sentences: 3 × 1,000 review sentences, half positive.

Kotzias et al. (2015), CC BY 4.0; Amazon product reviews, IMDb movie reviews and Yelp
restaurant reviews, each 500 negative (label 0) and 500 positive (label 1).

Example:
    >>> from lmcore import data
    >>> rows = data.sentiment("yelp")
    >>> len(rows), rows[0].domain
    (1000, 'yelp')
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from lmcore.data.files import HERE, DataError, verified_bytes

DOMAINS = {
    "amazon": "bc5eb0cac49fc45987301f1dc2d02cf5ca356ba6c882be179dce77d74e666ed9",
    "imdb": "44a7b9082ed732ee2de3c858ea5ee2e99aca34f239a1c4359d3a300bf099bdb5",
    "yelp": "9f3f47983f21eeb819380767b74bfa648eca208f156241111454b3e122773ff7",
}
PER_DOMAIN = 1000


@dataclass(frozen=True)
class Sentence:
    """One labelled sentence: ``label`` is 1 for positive, 0 for negative."""

    text: str
    label: int
    domain: str


@functools.cache
def _domain(name: str) -> tuple[Sentence, ...]:
    path = HERE / "sentiment" / f"{name}.json"
    raw = verified_bytes(path, DOMAINS[name], what=f"The {name} sentiment data")
    # The source has one empty entry with a null class per file; it is not a sentence.
    rows = tuple(
        Sentence(entry["text"], int(entry["class"]), name)
        for entry in json.loads(raw)
        if entry["class"] is not None
    )
    if len(rows) != PER_DOMAIN or sum(r.label for r in rows) != PER_DOMAIN // 2:
        raise DataError(f"{path} should hold {PER_DOMAIN} sentences, half positive.")
    return rows


def sentiment(domain: str | None = None) -> list[Sentence]:
    """The labelled sentences of one domain (``amazon``, ``imdb``, ``yelp``), or of all three.

    Example:
        >>> sum(s.label for s in sentiment())
        1500
    """
    if domain is not None and domain not in DOMAINS:
        raise ValueError(f"unknown sentiment domain {domain!r}; choose one of {', '.join(DOMAINS)}")
    return [s for name in ([domain] if domain else DOMAINS) for s in _domain(name)]
