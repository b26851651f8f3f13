"""Evaluation metrics: numbers computed from a model's predictions, outside the autograd graph.

Example:
    >>> import numpy as np
    >>> logits = np.array([[[0.1, 2.0, 0.3], [1.0, 0.0, 0.0], [0.0, 0.0, 3.0]]])  # (B, T, V)
    >>> masked_accuracy(logits, np.array([[1, -100, 0]]))       # right at 1 of 2 labelled
    0.5
    >>> distinct_n(["abab", "abab"], 2)                          # 2 distinct of 6 bigrams
    0.3333333333333333
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from lmcore import backend
from lmcore.autograd import Tensor

__all__ = ["distinct_n", "masked_accuracy"]


def masked_accuracy(logits, labels, ignore_index: int = -100) -> float:
    """The share of labelled positions where the highest logit is the label.

    ``logits`` (..., V) and ``labels`` (...), NumPy or CuPy arrays or Tensors; positions
    whose label is ``ignore_index`` (-100, as in masked-LM labels) are not counted. With
    no labelled position at all the accuracy is undefined: NaN.
    """
    logits = logits.data if isinstance(logits, Tensor) else logits
    labels = labels.data if isinstance(labels, Tensor) else labels
    xp = backend.get_array_module(logits)
    labels = xp.asarray(labels)
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"masked_accuracy: logits of shape {logits.shape} need labels of shape "
            f"{logits.shape[:-1]} (classes on the last axis), got {labels.shape}"
        )
    scored = labels != ignore_index
    count = int(scored.sum())
    if count == 0:
        return float("nan")
    right = (logits.argmax(axis=-1) == labels) & scored
    return int(right.sum()) / count


def distinct_n(sequences: Sequence, n: int) -> float:
    """Distinct-n (Li et al. 2016): the number of different n-grams in ``sequences``
    divided by the number of n-grams they hold, counted together over all of them.

    ``sequences`` is a list of strings (n-grams of characters) or of sequences of token
    ids; an n-gram never spans two sequences. 1.0 means no n-gram repeats, and a value
    near 0 means the same few n-grams again and again (a decoder stuck in a loop, or the
    same text sampled many times). With no n-gram at all the value is undefined: NaN.

    Example:
        >>> distinct_n(["to be or not to be"], 1)     # t, o, b, e, r, n and the space: 7 of 18
        0.3888888888888889
        >>> distinct_n([[1, 2, 3], [1, 2, 4]], 2)                # (1, 2) twice: 3 of 4
        0.75
    """
    if n < 1:
        raise ValueError(f"distinct_n: n must be a positive integer, got {n}")
    if isinstance(sequences, str):
        raise TypeError("distinct_n takes a list of sequences; wrap one string as [text]")
    seen, total = set(), 0
    for sequence in sequences:
        items = sequence if isinstance(sequence, str) else [int(t) for t in sequence]
        for i in range(len(items) - n + 1):
            seen.add(tuple(items[i : i + n]))
            total += 1
    return len(seen) / total if total else float("nan")


# -- classification: accuracy, precision, recall, F1, reports, confusion matrices ------------
#
# The conventions are scikit-learn's (sklearn.metrics): labels are the sorted union of the
# true and predicted labels unless given; a ratio whose denominator is zero takes the value
# ``zero_division`` ("warn": 0 with a warning, 0, 1 or NaN; NaN values are left out of
# averages); ``classification_report`` prints and returns what scikit-learn's does.


class UndefinedMetricWarning(UserWarning):
    """A precision, recall or F-score had a zero denominator and was set to ``zero_division``."""


def _labels_array(values, name: str) -> np.ndarray:
    values = values.data if isinstance(values, Tensor) else values
    array = np.asarray(backend.to_device(values, "cpu") if hasattr(values, "device") else values)
    if array.ndim != 1:
        raise ValueError(
            f"{name} must be one label per example, a 1-D sequence; got shape {array.shape}"
        )
    return array


def _true_and_pred(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = _labels_array(y_true, "y_true"), _labels_array(y_pred, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(
            f"y_true has {len(y_true)} labels and y_pred {len(y_pred)}; give one prediction "
            "per example"
        )
    return y_true, y_pred


def accuracy_score(y_true, y_pred) -> float:
    """The share of examples whose prediction equals the label.

    Example:
        >>> accuracy_score([0, 1, 2, 2], [0, 2, 2, 2])
        0.75
    """
    y_true, y_pred = _true_and_pred(y_true, y_pred)
    if len(y_true) == 0:
        return float("nan")
    return float(np.mean(y_true == y_pred))


def _zero_division_value(zero_division) -> float:
    if isinstance(zero_division, str):
        if zero_division != "warn":
            raise ValueError(f"zero_division is 'warn', 0, 1 or np.nan, got {zero_division!r}")
        return 0.0
    if not (np.isnan(zero_division) or zero_division in (0, 1)):
        raise ValueError(f"zero_division is 'warn', 0, 1 or np.nan, got {zero_division!r}")
    return float(zero_division)


def _divide(numerator, denominator, zero_division, what: str) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    zero = denominator == 0
    result = np.divide(numerator, np.where(zero, 1, denominator))
    if np.any(zero):
        result = np.where(zero, _zero_division_value(zero_division), result)
        if zero_division == "warn":
            warnings.warn(
                f"{what} is ill-defined and set to 0.0 for labels with no "
                f"{'predicted' if what.startswith('Precision') else 'true'} samples; "
                "pass zero_division to choose the value and silence this warning.",
                UndefinedMetricWarning,
                stacklevel=3,
            )
    return result


def _unique_labels(y_true, y_pred, labels) -> np.ndarray:
    if labels is not None:
        labels = np.asarray(labels)
        if labels.size == 0:
            raise ValueError("labels is empty; give at least one label or None")
        return labels
    return np.unique(np.concatenate([y_true, y_pred]))


def _counts(y_true, y_pred, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per label: true positives, predicted count, true count."""
    tp = np.array([np.sum((y_true == c) & (y_pred == c)) for c in labels], dtype=np.int64)
    predicted = np.array([np.sum(y_pred == c) for c in labels], dtype=np.int64)
    true = np.array([np.sum(y_true == c) for c in labels], dtype=np.int64)
    if not np.any(y_true == y_pred):  # as scikit-learn: with no hit at all, floating counts
        tp, true = tp.astype(np.float64), true.astype(np.float64)
    return tp, predicted, true


def _scores_from_counts(tp, predicted, true, average, zero_division, beta: float = 1.0):
    """(precision, recall, F-beta, support) from counts, as scikit-learn computes them."""
    if average == "micro":
        tp, predicted, true = (
            tp.sum(keepdims=True),
            predicted.sum(keepdims=True),
            true.sum(keepdims=True),
        )
    precision = _divide(tp, predicted, zero_division, "Precision")
    recall = _divide(tp, true, zero_division, "Recall")
    b2 = beta * beta
    denominator = (1 + b2) * tp + b2 * (true - tp) + (predicted - tp)
    f_score = _divide((1 + b2) * tp, denominator, zero_division, "F-score")
    if average is None:
        return precision, recall, f_score, true
    if average == "micro":
        return float(precision[0]), float(recall[0]), float(f_score[0]), None
    weights = None
    if average == "weighted":
        weights = true
        if weights.sum() == 0:
            value = _zero_division_value(zero_division)
            return value, value, value, None
    return tuple(_nan_average(v, weights) for v in (precision, recall, f_score)) + (None,)


def _nan_average(values: np.ndarray, weights) -> float:
    keep = ~np.isnan(values)
    if not keep.any():
        return float("nan")
    if weights is None:
        return float(np.mean(values[keep]))
    weights = np.asarray(weights, dtype=np.float64)[keep]
    if weights.sum() == 0:
        return 0.0
    return float(np.average(values[keep], weights=weights))


AVERAGES = (None, "micro", "macro", "weighted", "binary")


def precision_recall_fscore_support(
    y_true, y_pred, *, beta: float = 1.0, labels=None, pos_label=1, average=None,
    zero_division="warn",
):  # fmt: skip
    """Precision, recall, F-beta and support (count of true examples) per label, or
    averaged: ``"micro"`` (from the summed counts), ``"macro"`` (mean over labels),
    ``"weighted"`` (mean weighted by support), ``"binary"`` (of ``pos_label`` only); the
    support of an average is None. As ``sklearn.metrics.precision_recall_fscore_support``.

    Example:
        >>> p, r, f, s = precision_recall_fscore_support([0, 1, 2, 2], [0, 2, 2, 2], zero_division=0)
        >>> p.round(3).tolist(), r.tolist(), f.round(3).tolist(), s.tolist()
        ([1.0, 0.0, 0.667], [1.0, 0.0, 1.0], [1.0, 0.0, 0.8], [1, 1, 2])
        >>> scores = precision_recall_fscore_support([0, 1, 2, 2], [0, 2, 2, 2], average="macro",
        ...                                          zero_division=0)
        >>> [round(v, 4) for v in scores[:3]], scores[3]
        ([0.5556, 0.6667, 0.6], None)
    """
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    y_true, y_pred = _true_and_pred(y_true, y_pred)
    if average == "binary":
        present = np.unique(np.concatenate([y_true, y_pred]))
        if len(present) > 2:
            raise ValueError(
                f"average='binary' needs two classes, got {len(present)} ({present.tolist()}); "
                "choose average='micro', 'macro' or 'weighted'"
            )
        if len(present) and pos_label not in present and len(present) == 2:
            raise ValueError(
                f"pos_label={pos_label!r} is not a label; the labels are {present.tolist()}"
            )
        labels, average = np.asarray([pos_label]), "macro"
    labels = _unique_labels(y_true, y_pred, labels)
    tp, predicted, true = _counts(y_true, y_pred, labels)
    return _scores_from_counts(tp, predicted, true, average, zero_division, beta)


def precision_score(
    y_true, y_pred, *, labels=None, pos_label=1, average="binary", zero_division="warn"
):
    """Precision: of the examples predicted as a label, the share that have it.

    Example:
        >>> precision_score([1, 0, 1, 1], [1, 1, 0, 1])
        0.6666666666666666
    """
    return precision_recall_fscore_support(
        y_true, y_pred, labels=labels, pos_label=pos_label, average=average,
        zero_division=zero_division,
    )[0]  # fmt: skip


def recall_score(
    y_true, y_pred, *, labels=None, pos_label=1, average="binary", zero_division="warn"
):
    """Recall: of the examples that have a label, the share predicted as it.

    Example:
        >>> recall_score([1, 0, 1, 1], [1, 1, 0, 1])
        0.6666666666666666
    """
    return precision_recall_fscore_support(
        y_true, y_pred, labels=labels, pos_label=pos_label, average=average,
        zero_division=zero_division,
    )[1]  # fmt: skip


def f1_score(y_true, y_pred, *, labels=None, pos_label=1, average="binary", zero_division="warn"):
    """F1, the harmonic mean of precision and recall.

    Example:
        >>> f1_score([0, 1, 2, 2], [0, 2, 2, 2], average="weighted", zero_division=0)
        0.65
    """
    return precision_recall_fscore_support(
        y_true, y_pred, labels=labels, pos_label=pos_label, average=average,
        zero_division=zero_division,
    )[2]  # fmt: skip


def _report(names, per_label, averages, digits: int, output_dict: bool):
    """scikit-learn's report layout: per-label rows, then the average rows ("accuracy"
    shows the F1 column only)."""
    headers = ["precision", "recall", "f1-score", "support"]
    if output_dict:
        result = {
            name: dict(zip(headers, [float(v) for v in row])) for name, row in zip(names, per_label)
        }
        for heading, row in averages:
            if heading == "accuracy":
                result[heading] = float(row[2])
            else:
                result[heading] = dict(zip(headers, [float(v) for v in row]))
        return result
    width = max([len(name) for name in names] + [len("weighted avg"), digits])
    head_fmt = "{:>{width}s} " + " {:>9}" * len(headers)
    text = head_fmt.format("", *headers, width=width) + "\n\n"
    row_fmt = "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}\n"
    for name, row in zip(names, per_label):
        text += row_fmt.format(name, *row, width=width, digits=digits)
    text += "\n"
    for heading, row in averages:
        if heading == "accuracy":
            accuracy_fmt = "{:>{width}s} " + " {:>9.{digits}}" * 2 + " {:>9.{digits}f} {:>9}\n"
            text += accuracy_fmt.format(heading, "", "", *row[2:], width=width, digits=digits)
        else:
            text += row_fmt.format(heading, *row, width=width, digits=digits)
    return text


def classification_report(
    y_true, y_pred, *, labels=None, target_names=None, digits: int = 2,
    output_dict: bool = False, zero_division="warn",
):  # fmt: skip
    """Precision, recall, F1 and support of every label, then the accuracy and the macro
    and weighted averages: the text (or, with ``output_dict``, the dict) that
    ``sklearn.metrics.classification_report`` gives. When ``labels`` leaves out a label
    that occurs, the "accuracy" line becomes "micro avg", as in scikit-learn.

    Example:
        >>> print(classification_report([0, 1, 2, 2, 2], [0, 0, 2, 2, 1],
        ...                             target_names=["comedy", "history", "tragedy"]))
                      precision    recall  f1-score   support
        <BLANKLINE>
              comedy       0.50      1.00      0.67         1
             history       0.00      0.00      0.00         1
             tragedy       1.00      0.67      0.80         3
        <BLANKLINE>
            accuracy                           0.60         5
           macro avg       0.50      0.56      0.49         5
        weighted avg       0.70      0.60      0.61         5
        <BLANKLINE>
    """
    y_true, y_pred = _true_and_pred(y_true, y_pred)
    present = np.unique(np.concatenate([y_true, y_pred]))
    labels_given = labels is not None
    labels = _unique_labels(y_true, y_pred, labels)
    micro_is_accuracy = not labels_given or set(present.tolist()) <= set(labels.tolist())
    if target_names is None:
        names = [str(label) for label in labels]
    else:
        if len(target_names) != len(labels):
            raise ValueError(
                f"{len(labels)} labels ({labels.tolist()}) but {len(target_names)} target_names; "
                "give one name per label, or the labels to report with labels="
            )
        names = list(target_names)
    tp, predicted, true = _counts(y_true, y_pred, labels)
    p, r, f, s = _scores_from_counts(tp, predicted, true, None, zero_division)
    per_label = list(zip(p, r, f, s))
    averages = []
    for average in ("micro", "macro", "weighted"):
        heading = "accuracy" if average == "micro" and micro_is_accuracy else f"{average} avg"
        ap, ar, af, _ = _scores_from_counts(tp, predicted, true, average, zero_division)
        averages.append((heading, (ap, ar, af, true.sum())))
    return _report(names, per_label, averages, digits, output_dict)


def confusion_matrix(y_true, y_pred, *, labels=None, normalize: str | None = None) -> np.ndarray:
    """Counts (K, K): row i is the true label ``labels[i]``, column j the predicted one
    (scikit-learn's layout). ``normalize`` "true" divides each row by its sum, "pred"
    each column, "all" the whole; a zero sum gives zeros.

    Example:
        >>> confusion_matrix([0, 1, 2, 2], [0, 2, 2, 1])
        array([[1, 0, 0],
               [0, 0, 1],
               [0, 1, 1]])
    """
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"normalize is None, 'true', 'pred' or 'all', got {normalize!r}")
    y_true, y_pred = _true_and_pred(y_true, y_pred)
    labels = _unique_labels(y_true, y_pred, labels)
    index = {label: i for i, label in enumerate(labels.tolist())}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true.tolist(), y_pred.tolist()):
        if t in index and p in index:
            matrix[index[t], index[p]] += 1
    if normalize is None:
        return matrix
    axis = {"true": 1, "pred": 0, "all": None}[normalize]
    total = matrix.sum(axis=axis, keepdims=axis is not None)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(matrix / total)


def plot_confusion_matrix(matrix, labels=None, ax=None, normalize: bool = False, cmap="Blues"):
    """Draw a confusion matrix (from :func:`confusion_matrix`) as a heat map with the
    numbers written in, true labels down, predicted across; returns the axes.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> ax = plot_confusion_matrix(confusion_matrix([0, 1, 1], [0, 1, 0]), ["neg", "pos"])
        >>> ax.get_xlabel(), ax.get_ylabel()
        ('predicted label', 'true label')
    """
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"a confusion matrix is square (K, K), got shape {matrix.shape}")
    if normalize:
        with np.errstate(invalid="ignore", divide="ignore"):
            matrix = np.nan_to_num(matrix / matrix.sum(axis=1, keepdims=True))
    labels = [str(i) for i in range(len(matrix))] if labels is None else list(labels)
    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 + 0.6 * len(labels), 1 + 0.6 * len(labels)))
    image = ax.imshow(matrix, cmap=cmap)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    threshold = (matrix.max() + matrix.min()) / 2
    for (i, j), value in np.ndenumerate(matrix):
        text = f"{value:.2f}" if matrix.dtype.kind == "f" else f"{value:d}"
        ax.text(j, i, text, ha="center", va="center",
                color="white" if value > threshold else "black")  # fmt: skip
    return ax


# -- entities of BIO tags, as the CoNLL evaluation counts them ---------------------------------


def _tag_parts(tag: str) -> tuple[str, str]:
    """(prefix, type) of a tag: "B-PER" -> ("B", "PER"), "O" -> ("O", "_")."""
    return tag[0], tag[1:].split("-", maxsplit=1)[-1] or "_"


def _chunk_ends(prev_tag, tag, prev_type, type_) -> bool:
    return (
        prev_tag in ("E", "S")
        or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
        or (prev_tag not in ("O", ".") and prev_type != type_)
    )


def _chunk_starts(prev_tag, tag, prev_type, type_) -> bool:
    return (
        tag in ("B", "S")
        or (
            prev_tag in ("E", "S", "O")
            and tag in ("E", "I")
            and not (prev_tag == "S" and tag == "S")
        )
        or (tag not in ("O", ".") and prev_type != type_)
    )


def bio_entities(tags) -> list[tuple[str, int, int]]:
    """The entities of a tag sequence as ``(type, first, last)`` token positions, by the
    rules of the CoNLL-2000 ``conlleval`` script (and seqeval's default mode): an entity
    starts at B-, or at an I- that follows O or another type, and runs while I- of its
    type follows. A list of sentences is read as one sequence with O between them.

    Example:
        >>> bio_entities(["B-SPEAKER", "I-SPEAKER", "O", "I-STAGE", "B-STAGE"])
        [('SPEAKER', 0, 1), ('STAGE', 3, 3), ('STAGE', 4, 4)]
    """
    if len(tags) and not isinstance(tags[0], str):
        tags = [tag for sentence in tags for tag in [*sentence, "O"]]
    entities, prev_tag, prev_type, begin = [], "O", "", 0
    for i, chunk in enumerate([*tags, "O"]):
        tag, type_ = _tag_parts(chunk)
        if _chunk_ends(prev_tag, tag, prev_type, type_):
            entities.append((prev_type, begin, i - 1))
        if _chunk_starts(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return entities


def entity_classification_report(
    y_true, y_pred, *, digits: int = 2, output_dict: bool = False, zero_division="warn"
):
    """Entity-level precision, recall and F1 per entity type of BIO tag sequences (a
    list of sentences, each a list of tags), then micro, macro and weighted averages: an
    entity counts as found only when its type and both ends match (the CoNLL evaluation,
    as seqeval's ``classification_report``).

    Example:
        >>> true = [["B-SPEAKER", "O", "B-STAGE", "I-STAGE"]]
        >>> pred = [["B-SPEAKER", "O", "B-STAGE", "O"]]
        >>> entity_classification_report(true, pred, output_dict=True)["STAGE"]["recall"]
        0.0
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true sentences but {len(y_pred)} predicted ones")
    for i, (t, p) in enumerate(zip(y_true, y_pred)):
        if len(t) != len(p):
            raise ValueError(f"sentence {i}: {len(t)} true tags but {len(p)} predicted tags")
    true = set(bio_entities(list(y_true)))
    pred = set(bio_entities(list(y_pred)))
    types = sorted({e[0] for e in true | pred})
    if not types:
        raise ValueError("no entity in y_true or y_pred: nothing to report")
    tp = np.array([len({e for e in true & pred if e[0] == t}) for t in types], dtype=np.int64)
    predicted = np.array([sum(e[0] == t for e in pred) for t in types], dtype=np.int64)
    truth = np.array([sum(e[0] == t for e in true) for t in types], dtype=np.int64)
    p, r, f, s = _scores_from_counts(tp, predicted, truth, None, zero_division)
    averages = []
    for average in ("micro", "macro", "weighted"):
        ap, ar, af, _ = _scores_from_counts(tp, predicted, truth, average, zero_division)
        averages.append((f"{average} avg", (ap, ar, af, int(truth.sum()))))
    return _report(types, list(zip(p, r, f, s)), averages, digits, output_dict)


__all__ += [  # noqa: PLE0605
    "UndefinedMetricWarning",
    "accuracy_score",
    "bio_entities",
    "classification_report",
    "confusion_matrix",
    "entity_classification_report",
    "f1_score",
    "plot_confusion_matrix",
    "precision_recall_fscore_support",
    "precision_score",
    "recall_score",
]
