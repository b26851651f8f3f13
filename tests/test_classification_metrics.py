"""lmcore.metrics' classification metrics against scikit-learn (and BIO entities against
seqeval): live where they are installed, else through tests/data/sklearn_metrics.json
(written by tests/data/make_sklearn_metrics_snapshot.py)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from lmcore import metrics

SNAPSHOT = json.loads((Path(__file__).parent / "data" / "sklearn_metrics.json").read_text())
CASES = SNAPSHOT["labels"]


def same(a, b) -> bool:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and np.allclose(a, b, rtol=1e-12, atol=1e-12, equal_nan=True)


def same_dict(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for key in a:
        if isinstance(a[key], dict):
            same_dict(a[key], b[key])
        else:
            assert same(a[key], b[key]), (key, a[key], b[key])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_agrees_with_the_sklearn_snapshot(case):
    y_true, y_pred, labels = case["y_true"], case["y_pred"], case["labels"]
    assert metrics.accuracy_score(y_true, y_pred) == pytest.approx(case["accuracy"])
    assert (
        metrics.confusion_matrix(y_true, y_pred, labels=labels).tolist() == case["confusion_matrix"]
    )
    for result in case["results"]:
        zero_division = result["zero_division"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = metrics.precision_recall_fscore_support(
                y_true, y_pred, labels=labels, zero_division=zero_division
            )
            for ours_part, theirs in zip(ours, result["per_label"]):
                assert same(ours_part, theirs), (zero_division, ours_part, theirs)
            for average in ("micro", "macro", "weighted"):
                values = metrics.precision_recall_fscore_support(
                    y_true, y_pred, labels=labels, average=average, zero_division=zero_division
                )
                assert same(values[:3], result[average]), (average, zero_division, values)
            report = metrics.classification_report(
                y_true, y_pred, labels=labels, zero_division=zero_division, digits=3
            )
            assert report == result["report"]
            as_dict = metrics.classification_report(
                y_true, y_pred, labels=labels, zero_division=zero_division, output_dict=True
            )
        same_dict(as_dict, result["report_dict"])


def test_live_against_sklearn_on_random_labels():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    for trial in range(20):
        k = int(rng.integers(2, 6))
        n = int(rng.integers(1, 30))
        y_true, y_pred = rng.integers(0, k, n), rng.integers(0, k, n)
        for zero_division in (0, 1, math.nan):
            for average in (None, "micro", "macro", "weighted"):
                theirs = sk.precision_recall_fscore_support(
                    y_true, y_pred, average=average, zero_division=zero_division
                )
                ours = metrics.precision_recall_fscore_support(
                    y_true, y_pred, average=average, zero_division=zero_division
                )
                for a, b in zip(ours[:3], theirs[:3]):
                    assert same(a, b), (trial, average, zero_division)
            assert metrics.classification_report(
                y_true, y_pred, zero_division=zero_division
            ) == sk.classification_report(y_true, y_pred, zero_division=zero_division)
        assert (
            metrics.confusion_matrix(y_true, y_pred) == sk.confusion_matrix(y_true, y_pred)
        ).all()


def test_zero_division_warns_only_when_asked():
    with pytest.warns(metrics.UndefinedMetricWarning, match="zero_division"):
        metrics.precision_recall_fscore_support([0, 1], [0, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics.precision_recall_fscore_support([0, 1], [0, 0], zero_division=0)


def test_binary_average_and_errors():
    assert metrics.f1_score([1, 0, 1, 1], [1, 1, 0, 1]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="average='binary' needs two classes"):
        metrics.f1_score([0, 1, 2], [0, 1, 2])
    with pytest.raises(ValueError, match="one prediction per example"):
        metrics.accuracy_score([0, 1], [0])
    with pytest.raises(ValueError, match="one name per label"):
        metrics.classification_report([0, 1], [0, 1], target_names=["a"])


def test_confusion_matrix_normalized_and_plotted():
    matrix = metrics.confusion_matrix([0, 0, 1, 2], [0, 1, 1, 1], normalize="true")
    np.testing.assert_allclose(matrix, [[0.5, 0.5, 0], [0, 1, 0], [0, 1, 0]])
    import matplotlib

    matplotlib.use("Agg")
    ax = metrics.plot_confusion_matrix(matrix, ["a", "b", "c"])
    assert [t.get_text() for t in ax.texts][:2] == ["0.50", "0.50"]


@pytest.mark.parametrize("case", SNAPSHOT["bio"])
def test_entities_agree_with_the_seqeval_snapshot(case):
    found = metrics.bio_entities(case["y_true"])
    assert [list(e) for e in found] == case["entities_true"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = metrics.entity_classification_report(
            case["y_true"], case["y_pred"], output_dict=True
        )
        text = metrics.entity_classification_report(case["y_true"], case["y_pred"], digits=3)
    same_dict(ours, case["report_dict"])
    assert text == case["report"]


def test_entities_live_against_seqeval():
    seqeval = pytest.importorskip("seqeval.metrics")
    rng = np.random.default_rng(2)
    tags = ["O", "B-SPEAKER", "I-SPEAKER", "B-STAGE", "I-STAGE"]
    for _ in range(30):
        true = [list(rng.choice(tags, int(rng.integers(1, 9)))) for _ in range(3)]
        pred = [list(rng.choice(tags, len(s))) for s in true]
        expected = seqeval.sequence_labeling.get_entities(true)
        assert metrics.bio_entities(true) == [tuple(e) for e in expected]
        try:
            theirs = seqeval.classification_report(true, pred, output_dict=True, zero_division=0)
        except ValueError:
            continue  # seqeval refuses a report with no entity at all
        same_dict(metrics.entity_classification_report(true, pred, output_dict=True,
                                                       zero_division=0), {
            k: {m: float(v) for m, v in d.items()} for k, d in theirs.items()})  # fmt: skip
