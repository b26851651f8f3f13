"""lmcore.data.masking.mask_tokens (BERT's 80/10/10 rule) and lmcore.metrics.masked_accuracy.

The proportions are checked on 100,000 positions with a fixed seed. Each tolerance is five
or more standard deviations of the share it bounds, so no seed would plausibly fail,
while a wrong rule (all chosen tokens masked, or 20 % chosen) misses by far more.
"""

import numpy as np
import pytest

from lmcore import backend
from lmcore.autograd import Tensor
from lmcore.data.masking import IGNORE_INDEX, mask_tokens
from lmcore.metrics import masked_accuracy

PAD, CLS, SEP, MASK = 0, 1, 2, 3
SPECIAL = (PAD, CLS, SEP, MASK)
VOCAB = 1000


def sentences(rows=400, length=250, seed=0):
    """[CLS] content ... [SEP] [PAD] ..., each row of its own length."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, VOCAB, size=(rows, length))
    ends = rng.integers(length // 2, length, size=rows)
    for row, end in enumerate(ends):
        ids[row, 0], ids[row, end] = CLS, SEP
        ids[row, end + 1 :] = PAD
    return ids


def masked_sentences(seed=0, **options):
    ids = sentences()
    masked, labels = mask_tokens(
        ids, MASK, VOCAB, np.random.default_rng(seed), special_token_ids=SPECIAL, **options
    )
    return ids, masked, labels


def test_fifteen_percent_chosen_then_eighty_ten_ten():
    ids, masked, labels = masked_sentences()
    eligible = ~np.isin(ids, SPECIAL)
    chosen = labels != IGNORE_INDEX
    assert eligible.sum() > 60_000
    # sd of the chosen share: sqrt(0.15 * 0.85 / 60,000) < 0.0015
    assert abs(chosen.sum() / eligible.sum() - 0.15) < 0.01
    count = chosen.sum()  # about 11,000: sd of a 0.8 share 0.004, of a 0.1 share 0.003
    to_mask = chosen & (masked == MASK)
    kept = chosen & (masked == ids)
    to_random = chosen & ~to_mask & ~kept
    assert abs(to_mask.sum() / count - 0.8) < 0.02
    assert abs(to_random.sum() / count - 0.1) < 0.015
    assert abs(kept.sum() / count - 0.1) < 0.015
    # Random tokens: uniform over the vocabulary (mean 499.5, sd of the mean about 9).
    assert abs(masked[to_random].mean() - (VOCAB - 1) / 2) < 50
    assert masked[to_random].min() >= 0 and masked[to_random].max() < VOCAB


def test_labels_hold_the_originals_and_the_rest_is_untouched():
    ids, masked, labels = masked_sentences()
    chosen = labels != IGNORE_INDEX
    np.testing.assert_array_equal(labels[chosen], ids[chosen])
    np.testing.assert_array_equal(masked[~chosen], ids[~chosen])
    assert masked.dtype == ids.dtype and labels.dtype == ids.dtype


def test_special_tokens_and_padding_are_never_chosen():
    ids, masked, labels = masked_sentences(mlm_probability=1.0)
    special = np.isin(ids, SPECIAL)
    assert (labels[special] == IGNORE_INDEX).all()
    np.testing.assert_array_equal(masked[special], ids[special])
    assert (labels[~special] != IGNORE_INDEX).all()  # everything else, at probability 1
    # Positions given by special_tokens_mask, whatever their ids (here padding by a mask).
    ids = np.random.default_rng(1).integers(4, VOCAB, size=(4, 12))
    attention_mask = np.ones_like(ids)
    attention_mask[:, 8:] = 0
    masked, labels = mask_tokens(
        ids,
        MASK,
        VOCAB,
        np.random.default_rng(0),
        special_tokens_mask=attention_mask == 0,
        mlm_probability=1.0,
    )
    assert (labels[:, 8:] == IGNORE_INDEX).all() and (labels[:, :8] != IGNORE_INDEX).all()
    np.testing.assert_array_equal(masked[:, 8:], ids[:, 8:])


def test_other_shares_are_followed():
    ids, masked, labels = masked_sentences(
        mlm_probability=0.3, mask_replace_prob=0.5, random_replace_prob=0.0
    )
    chosen = labels != IGNORE_INDEX
    assert abs(chosen.sum() / (~np.isin(ids, SPECIAL)).sum() - 0.3) < 0.01
    assert abs((masked[chosen] == MASK).mean() - 0.5) < 0.02
    assert ((masked[chosen] == MASK) | (masked[chosen] == ids[chosen])).all()  # no random


def test_the_seed_decides_and_the_input_is_left_alone():
    ids = sentences(rows=8, length=40)
    before = ids.copy()
    first = masked_sentences(seed=5)
    again = masked_sentences(seed=5)
    other = masked_sentences(seed=6)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[2], other[2])
    mask_tokens(ids, MASK, VOCAB, np.random.default_rng(0), special_token_ids=SPECIAL)
    np.testing.assert_array_equal(ids, before)


def test_bad_arguments_are_named():
    ids, rng = np.array([[5, 6, 7]]), np.random.default_rng(0)
    with pytest.raises(TypeError, match="integer token ids"):
        mask_tokens(ids.astype(float), MASK, VOCAB, rng)
    with pytest.raises(ValueError, match="mlm_probability is a probability"):
        mask_tokens(ids, MASK, VOCAB, rng, mlm_probability=1.5)
    with pytest.raises(ValueError, match="exceeds 1"):
        mask_tokens(ids, MASK, VOCAB, rng, mask_replace_prob=0.8, random_replace_prob=0.3)
    with pytest.raises(ValueError, match="mask_token_id 10 lies outside the vocabulary of 10"):
        mask_tokens(ids, 10, 10, rng)
    with pytest.raises(ValueError, match="special_tokens_mask must be boolean"):
        mask_tokens(ids, MASK, VOCAB, rng, special_tokens_mask=np.zeros((1, 2), bool))


@pytest.mark.skipif(not backend.gpu_available(), reason="no GPU")
def test_cupy_arrays_get_the_masks_of_numpy_ones():
    import cupy

    ids = sentences(rows=16, length=64)
    on_cpu = mask_tokens(ids, MASK, VOCAB, np.random.default_rng(3), special_token_ids=SPECIAL)
    on_gpu = mask_tokens(
        cupy.asarray(ids), MASK, VOCAB, np.random.default_rng(3), special_token_ids=SPECIAL
    )
    for cpu, gpu in zip(on_cpu, on_gpu, strict=True):
        assert isinstance(gpu, cupy.ndarray)
        np.testing.assert_array_equal(cupy.asnumpy(gpu), cpu)


# -- masked_accuracy -----------------------------------------------------------------


def test_masked_accuracy_counts_labelled_positions_only():
    logits = np.zeros((1, 4, 3))
    logits[0, [0, 1, 2, 3], [2, 0, 1, 1]] = 1.0  # predictions 2, 0, 1, 1
    labels = np.array([[2, -100, 0, 1]])  # right, not scored, wrong, right
    assert masked_accuracy(logits, labels) == pytest.approx(2 / 3)
    assert masked_accuracy(Tensor(logits), Tensor(labels)) == pytest.approx(2 / 3)
    assert np.isnan(masked_accuracy(logits, np.full((1, 4), -100)))
    with pytest.raises(ValueError, match=r"need labels of shape \(1, 4\)"):
        masked_accuracy(logits, np.array([1, 2, 0, 1]))


def test_masked_accuracy_against_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 20, 7))
    labels = rng.integers(0, 7, size=(6, 20))
    labels[rng.random(labels.shape) < 0.7] = -100
    scored = labels != -100
    expected = metrics.accuracy_score(labels[scored], logits.argmax(-1)[scored])
    assert masked_accuracy(logits, labels) == pytest.approx(expected)
