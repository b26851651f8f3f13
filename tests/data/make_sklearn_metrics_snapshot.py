"""Regenerate tests/data/sklearn_metrics.json: label sets and what scikit-learn (and, for
BIO tags, seqeval) computes from them, so tests/test_metrics.py checks lmcore.metrics
against them where scikit-learn is not installed (it is not an lmcore dependency).
Nothing here imports lmcore.

Run from the repository root, in an environment with scikit-learn and seqeval:

    python -m pip install scikit-learn seqeval
    python tests/data/make_sklearn_metrics_snapshot.py

Each case holds y_true, y_pred (and labels when given) and, for every zero_division
("warn", 0, 1, NaN), sklearn's per-label precision/recall/F1/support, its micro, macro and
weighted averages, and classification_report as text and as a dict. NaN is written as
JSON's NaN (Python's json reads it).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import seqeval
import seqeval.metrics
import sklearn
from sklearn import metrics

HERE = Path(__file__).resolve().parent / "sklearn_metrics.json"
ZERO_DIVISIONS = ("warn", 0, 1, float("nan"))


def label_cases() -> list[dict]:
    rng = np.random.default_rng(0)
    cases = [
        {"name": "random 3 classes", "y_true": rng.integers(0, 3, 20), "y_pred": rng.integers(0, 3, 20)},
        {"name": "random 5 classes, skewed", "y_true": rng.choice(5, 30, p=[0.5, 0.2, 0.2, 0.05, 0.05]),
         "y_pred": rng.choice(5, 30, p=[0.6, 0.1, 0.1, 0.1, 0.1])},
        {"name": "binary", "y_true": rng.integers(0, 2, 12), "y_pred": rng.integers(0, 2, 12)},
        {"name": "a class never predicted", "y_true": [0, 1, 2, 2, 1], "y_pred": [0, 0, 2, 2, 0]},
        {"name": "a class only predicted", "y_true": [0, 0, 1, 1], "y_pred": [0, 2, 1, 2]},
        {"name": "all one class, all right", "y_true": [1, 1, 1], "y_pred": [1, 1, 1]},
        {"name": "all wrong", "y_true": [0, 0, 0], "y_pred": [1, 1, 1]},
        {"name": "labels beyond the data", "y_true": [0, 1, 1], "y_pred": [0, 1, 0], "labels": [0, 1, 2]},
        {"name": "labels leave one out", "y_true": [0, 1, 2, 2], "y_pred": [0, 2, 2, 1], "labels": [0, 2]},
        {"name": "string labels", "y_true": ["tragedy", "comedy", "history", "comedy"],
         "y_pred": ["comedy", "comedy", "history", "tragedy"]},
    ]  # fmt: skip
    out = []
    for case in cases:
        y_true, y_pred = (
            list(np.asarray(case["y_true"]).tolist()),
            list(np.asarray(case["y_pred"]).tolist()),
        )
        labels = case.get("labels")
        record = {"name": case["name"], "y_true": y_true, "y_pred": y_pred, "labels": labels,
                  "accuracy": metrics.accuracy_score(y_true, y_pred), "results": []}  # fmt: skip
        record["confusion_matrix"] = metrics.confusion_matrix(
            y_true, y_pred, labels=labels
        ).tolist()
        for zero_division in ZERO_DIVISIONS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = {"zero_division": zero_division}
                p, r, f, s = metrics.precision_recall_fscore_support(
                    y_true, y_pred, labels=labels, zero_division=zero_division
                )
                result["per_label"] = [p.tolist(), r.tolist(), f.tolist(), s.tolist()]
                for average in ("micro", "macro", "weighted"):
                    values = metrics.precision_recall_fscore_support(
                        y_true, y_pred, labels=labels, average=average, zero_division=zero_division
                    )[:3]
                    result[average] = [float(v) for v in values]
                result["report"] = metrics.classification_report(
                    y_true, y_pred, labels=labels, zero_division=zero_division, digits=3
                )
                result["report_dict"] = metrics.classification_report(
                    y_true, y_pred, labels=labels, zero_division=zero_division, output_dict=True
                )
            record["results"].append(result)
        out.append(record)
    return out


def bio_cases() -> list[dict]:
    cases = [
        (
            [["B-SPEAKER", "I-SPEAKER", "O", "B-STAGE", "I-STAGE", "O"], ["O", "B-SPEAKER", "O"]],
            [["B-SPEAKER", "O", "O", "B-STAGE", "I-STAGE", "O"], ["O", "B-SPEAKER", "B-STAGE"]],
        ),
        (  # I- after O starts an entity; a type change ends one
            [["O", "I-STAGE", "I-STAGE", "B-SPEAKER", "I-STAGE"]],
            [["O", "B-STAGE", "I-STAGE", "I-SPEAKER", "I-SPEAKER"]],
        ),
        (  # a type never predicted
            [["B-PER", "O", "B-LOC", "I-LOC"], ["B-ORG", "I-ORG"]],
            [["B-PER", "O", "O", "O"], ["B-PER", "I-PER"]],
        ),
    ]
    out = []
    for y_true, y_pred in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.append({
                "y_true": y_true, "y_pred": y_pred,
                "entities_true": [list(e) for e in seqeval.metrics.sequence_labeling.get_entities(y_true)],
                "report_dict": seqeval.metrics.classification_report(y_true, y_pred, output_dict=True),
                "report": seqeval.metrics.classification_report(y_true, y_pred, digits=3),
            })  # fmt: skip
    for case in out:  # numpy numbers -> floats
        case["report_dict"] = {
            k: {m: float(v) for m, v in d.items()} for k, d in case["report_dict"].items()
        }
    return out


def main() -> None:
    snapshot = {
        "versions": {"scikit-learn": sklearn.__version__, "seqeval": "1.2.2"},
        "labels": label_cases(),
        "bio": bio_cases(),
    }
    HERE.write_text(json.dumps(snapshot, separators=(",", ":")) + "\n")
    print(f"wrote {HERE} ({HERE.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
