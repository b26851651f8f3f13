"""Tests of lmcore.ngram: hand-worked probabilities, normalisation, errors, real text."""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction as F

import numpy as np
import pytest

from lmcore.ngram import SMOOTHINGS, NGramCounts, NGramLM
from lmcore.ngram import smoothing as sm

A, B, C, D = 0, 1, 2, 3
# The hand-worked corpus "a b a c a b b a": 8 tokens over {a, b, c}; d never occurs.
# Bigrams (BOS pads the start): BOS a 1, a b 2, b a 2, a c 1, c a 1, b b 1.
# Unigrams: a 4, b 3, c 1.   Contexts: BOS 1, a 3, b 3, c 1.
CORPUS = [A, B, A, C, A, B, B, A]


def close(x, fraction) -> bool:
    return math.isclose(x, float(fraction), rel_tol=0, abs_tol=1e-12)


# ---- hand-worked probabilities ---------------------------------------------------------


def test_mle_by_hand():
    unigram = NGramLM(1, "mle").fit(CORPUS)
    assert close(unigram.prob(A), F(4, 8)) and close(unigram.prob(C), F(1, 8))
    bigram = NGramLM(2, "mle").fit(CORPUS)
    assert close(bigram.prob(B, [A]), F(2, 3))  # c(a b) / c(a) = 2 / 3
    assert close(bigram.prob(C, [A]), F(1, 3))  # c(a c) / c(a) = 1 / 3
    assert bigram.prob(A, [A]) == 0.0  # "a a" never occurs
    assert close(bigram.prob(A, []), F(1, 1))  # the corpus starts with a: c(BOS a) / c(BOS)
    # The training text itself: 1 * 2/3 * 2/3 * 1/3 * 1 * 2/3 * 1/3 * 2/3 = 16 / 729.
    assert math.isclose(bigram.perplexity(CORPUS), (729 / 16) ** (1 / 8), rel_tol=1e-12)


def test_mle_unseen_context_is_uniform():
    bigram = NGramLM(2, "mle").fit(CORPUS, vocab_size=4)
    assert np.allclose(bigram.distribution([D]), 1 / 4)  # 0 / 0: the uniform 1 / V


def test_add_k_by_hand():
    laplace = NGramLM(2, "add_k", k=1.0).fit(CORPUS)
    assert close(laplace.prob(B, [A]), F(2 + 1, 3 + 3))  # (c(a b) + 1) / (c(a) + V) = 1/2
    assert close(laplace.prob(A, [A]), F(0 + 1, 3 + 3))  # 1/6
    half = NGramLM(2, "add_k", k=0.5).fit(CORPUS)
    assert close(half.prob(B, [A]), F(2 * 2 + 1, 2 * 3 + 3))  # (2 + 1/2) / (3 + 3/2) = 5/9
    with_d = NGramLM(2, "add_k", k=1.0).fit(CORPUS, vocab_size=4)
    assert close(with_d.prob(D, [A]), F(0 + 1, 3 + 4))  # d unseen: 1/7
    assert close(with_d.prob(A, [D]), F(0 + 1, 0 + 4))  # context d unseen: 1/4


def test_interpolation_by_hand():
    weights = [0.1, 0.3, 0.6]  # uniform, unigram, bigram
    model = NGramLM(2, "interpolated", weights=weights).fit(CORPUS)
    # 0.1 * 1/3 + 0.3 * c(b)/8 + 0.6 * c(a b)/c(a) = 1/30 + 9/80 + 2/5 = 131/240
    expected = F(1, 10) * F(1, 3) + F(3, 10) * F(3, 8) + F(6, 10) * F(2, 3)
    assert expected == F(131, 240)
    assert close(model.prob(B, [A]), expected)
    # With V = 4 the context d was never seen: the bigram estimate falls back to the
    # unigram one, 0.1 * 1/4 + (0.3 + 0.6) * 4/8 = 19/40.
    model = NGramLM(2, "interpolated", weights=weights).fit(CORPUS, vocab_size=4)
    assert close(model.prob(A, [D]), F(19, 40))
    assert close(model.prob(D, [A]), F(1, 10) * F(1, 4))  # only the uniform part


def test_interpolation_weights_from_em_by_hand():
    # Order 1 gives probability 1 to two held-out tokens and 0 to a third; the uniform
    # gives 1/2 to each. The log-likelihood 2 log(1 - u/2) + log(u/2) (u = uniform's
    # weight) peaks where -1 / (1 - u/2) + 1/u = 0, at u = 2/3.
    estimates = np.array([[0.5, 0.5, 0.5], [1.0, 1.0, 0.0]])
    weights = sm.fit_interpolation_weights(estimates, tol=1e-9, max_iter=10_000)
    assert np.allclose(weights, [2 / 3, 1 / 3], atol=1e-6)


def test_em_weights_are_a_maximum_on_heldout():
    rng = np.random.default_rng(0)
    train, heldout = rng.integers(0, 4, 300), rng.integers(0, 4, 100)
    model = NGramLM(3, "interpolated").fit(train, vocab_size=5, heldout=heldout)
    assert model.weights.shape == (4,) and close(model.weights.sum(), 1)
    # At the maximum, each weight in use has mean over tokens of P_n / P_mixture = 1.
    counts, totals, _ = model._statistics(*model._counts.ids([heldout]))
    estimates = sm.order_estimates(counts, totals, 5)
    ratio = (estimates / (model.weights @ estimates)).mean(axis=1)
    assert np.allclose(ratio[model.weights > 1e-3], 1, atol=1e-3)
    assert model.cross_entropy(heldout) < NGramLM(3, "interpolated", weights=[0.25] * 4).fit(
        train, vocab_size=5
    ).cross_entropy(heldout)


def test_kneser_ney_bigram_by_hand():
    model = NGramLM(2, "kneser_ney").fit(CORPUS)
    # Bigram counts 1, 2, 2, 1, 1, 1: n1 = 4, n2 = 2, D2 = 4 / (4 + 2 * 2) = 1/2.
    # Continuation counts N1+(. w): a after {BOS, b, c} = 3, b after {a, b} = 2,
    # c after {a} = 1; n1 = 1, n2 = 1, D1 = 1 / (1 + 2) = 1/3.
    assert np.allclose(model.discounts[:, 0], [1 / 3, 1 / 2])
    # P1(w) = (N1+(. w) - 1/3) / 6 + (1/3 * 3 / 6) * 1/3: a 1/2, b 1/3, c 1/6.
    p1 = {A: F(1, 2), B: F(1, 3), C: F(1, 6)}
    # P(b | a) = (2 - 1/2) / 3 + (1/2 * 2 / 3) * P1(b) = 1/2 + 1/9 = 11/18.
    assert close(model.prob(B, [A]), F(3, 2) / 3 + F(1, 3) * p1[B])
    assert close(model.prob(B, [A]), F(11, 18))
    assert close(model.prob(A, [A]), F(1, 3) * p1[A])  # unseen "a a": 1/6
    assert close(model.prob(C, [A]), F(1, 2) / 3 + F(1, 3) * p1[C])  # 2/9
    # P(a | b): counts b a 2, b b 1, mass 2 * 1/2: 3/2 / 3 + 1/3 * 1/2 = 2/3.
    assert close(model.prob(A, [B]), F(2, 3))


def test_kneser_ney_unseen_token_gets_mass():
    model = NGramLM(2, "kneser_ney").fit(CORPUS, vocab_size=4)
    # P1(d) = (D1 * 3 types / 6) * 1/4 = 1/24; P1(a) = (3 - 1/3) / 6 + 1/24 = 35/72.
    assert close(model.prob(D, [D]), F(1, 24))  # the context d is unseen: P = P1
    assert close(model.prob(A, [D]), F(35, 72))
    # Context a: P(d | a) = (1/2 * 2 / 3) * 1/24 = 1/72.
    assert close(model.prob(D, [A]), F(1, 72))
    assert np.isfinite(model.perplexity([A, D, D, B]))


def test_kneser_ney_trigram_by_hand():
    model = NGramLM(3, "kneser_ney", discount=0.75).fit(CORPUS)
    # Order 1, continuation counts a 3, b 2, c 1 (total 6, mass 3 * 3/4 = 9/4):
    #   P1(a) = (9/4 + 9/4 * 1/3) / 6 = 1/2, P1(b) = 1/3, P1(c) = 1/6.
    # Order 2, continuation counts N1+(. a b) = |{BOS, c}| = 2, N1+(. a c) = |{b}| = 1:
    #   P2(b | a) = (2 - 3/4 + 3/2 * 1/3) / 3 = 7/12, P2(c | a) = 1/6, P2(a | a) = 1/4.
    # Order 3, context "b a": only "b a c", once (total 1, mass 3/4):
    #   P(c | b a) = 1/4 + 3/4 * 1/6 = 3/8, P(b | b a) = 3/4 * 7/12 = 7/16,
    #   P(a | b a) = 3/4 * 1/4 = 3/16.
    assert close(model.prob(C, [B, A]), F(3, 8))
    assert close(model.prob(B, [B, A]), F(7, 16))
    assert close(model.prob(A, [B, A]), F(3, 16))
    # The start of a document: context BOS BOS, seen once, before a.
    #   P2(a | BOS) = (1 - 3/4 + 3/4 * 1/2) / 1 = 5/8; P(a | BOS BOS) = 1/4 + 3/4 * 5/8 = 23/32.
    assert close(model.prob(A, []), F(23, 32))
    # Context [a] is "BOS a", followed by b once: P(b | BOS a) = 1/4 + 3/4 * 7/12 = 11/16.
    assert close(model.prob(B, [A]), F(11, 16))


def test_modified_kneser_ney_by_hand():
    model = NGramLM(2, "modified_kneser_ney", discount=(0.5, 1.0, 1.5)).fit(CORPUS)
    # Order 1: continuation counts a 3 (keeps 3 - 1.5), b 2 (keeps 1), c 1 (keeps 0.5);
    #   total 6, mass 1.5 + 1 + 0.5 = 3: P1(a) = (1.5 + 3/3) / 6 = 5/12, P1(b) = 1/3,
    #   P1(c) = 1/4.
    # Context a: "a b" 2 keeps 1, "a c" 1 keeps 0.5, mass 1.5, total 3:
    #   P(b | a) = (1 + 1.5 * 1/3) / 3 = 1/2, P(a | a) = 1.5 * 5/12 / 3 = 5/24,
    #   P(c | a) = (0.5 + 1.5 * 1/4) / 3 = 7/24.
    assert close(model.prob(B, [A]), F(1, 2))
    assert close(model.prob(A, [A]), F(5, 24))
    assert close(model.prob(C, [A]), F(7, 24))


def test_discounts_from_count_of_counts_by_hand():
    counts = np.array([1, 1, 1, 1, 2, 2, 3, 4])  # n1 = 4, n2 = 2, n3 = 1, n4 = 1
    # Y = 4 / (4 + 2 * 2) = 1/2.
    assert np.allclose(sm.estimate_discounts(counts, modified=False), 0.5)
    # D1 = 1 - 2 Y n2/n1 = 1/2, D2 = 2 - 3 Y n3/n2 = 5/4, D3+ = 3 - 4 Y n4/n3 = 1.
    assert np.allclose(sm.estimate_discounts(counts, modified=True), [0.5, 1.25, 1.0])
    # No singletons: the formula gives 0, which would smooth nothing; 0.5 stands in.
    assert np.allclose(sm.estimate_discounts(np.array([2, 3]), modified=False), 0.5)


# ---- counting --------------------------------------------------------------------------


def brute_force_counts(documents, order, bos):
    """Every n-gram (n = 1..order) ending at a real token, by a Python loop."""
    counts = Counter()
    for doc in documents:
        padded = [bos] * (order - 1) + list(doc)
        for j in range(order - 1, len(padded)):
            for n in range(1, order + 1):
                counts[tuple(padded[j - n + 1 : j + 1])] += 1
    return counts


@pytest.mark.parametrize("order", [1, 2, 3, 6])
def test_counts_match_a_python_loop(order):
    rng = np.random.default_rng(order)
    documents = [rng.integers(0, 4, size) for size in (40, 0, 7, 25)]
    counts = NGramCounts(documents, order, vocab_size=4)
    expected = brute_force_counts(documents, order, bos=4)
    assert all(counts.count(gram) == c for gram, c in expected.items())
    for n in range(1, order + 1):
        grams = [g for g in expected if len(g) == n]
        assert counts.num_ngrams(n) == len(grams)
        assert counts.counts[n - 1].sum() == sum(map(len, documents))
        if n < order:  # continuation count: distinct tokens before the n-gram
            for gram in grams:
                before = {g[0] for g in expected if len(g) == n + 1 and g[1:] == gram}
                gram_id = np.searchsorted(counts.keys[n - 1], _key(counts, gram))
                assert counts.continuation[n - 1][gram_id] == len(before)


def _key(counts: NGramCounts, gram) -> int:
    gram_id = 0
    for n, token in enumerate(gram, start=1):
        gram_id = int(counts.find(n, np.array([gram_id * counts.base + token]))[0])
    return int(counts.keys[len(gram) - 1][gram_id])


def test_count_and_sizes():
    model = NGramLM(3).fit(CORPUS)
    assert model.count([A, B]) == 2 and model.count([B, A, C]) == 1 and model.count([C, C]) == 0
    # Distinct: 3 unigrams; 6 bigrams (BOS a, a b, b a, a c, c a, b b); 8 trigrams.
    assert [model.num_ngrams(n) for n in (1, 2, 3)] == [3, 6, 8]
    assert model.nbytes > 0
    assert NGramLM(4).fit(CORPUS).nbytes > model.nbytes


# ---- properties ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_corpus():
    rng = np.random.default_rng(1)
    # Tokens 0..4 with skewed frequencies; id 5 never occurs (vocab_size = 6).
    return rng.choice(5, size=300, p=[0.4, 0.3, 0.15, 0.1, 0.05])


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
@pytest.mark.parametrize("order", [1, 2, 3, 4, 5, 6])
def test_distributions_sum_to_one(smoothing, order, random_corpus):
    model = NGramLM(order, smoothing).fit(random_corpus, vocab_size=6)
    contexts = [
        [],  # the start of a document
        list(random_corpus[:10]),  # seen, and longer than order - 1
        list(random_corpus[50 : 50 + order - 1]),
        [5] * order,  # the never-seen token: unseen contexts at every order above 1
        [4, 4, 4, 3, 4, 4][: order - 1],  # probably unseen
    ]
    for context in contexts:
        p = model.distribution(context)
        assert p.shape == (6,) and p.dtype == np.float64 and p.min() >= 0
        assert abs(p.sum() - 1) < 1e-9, (smoothing, order, context)


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_vectorised_logprobs_match_a_loop(smoothing, random_corpus):
    model = NGramLM(4, smoothing).fit(random_corpus[:200], vocab_size=6)
    tokens = np.concatenate([random_corpus[200:260], [5, 5, 0]])
    slow = [model.logprob(int(t), tokens[:i]) for i, t in enumerate(tokens)]
    assert np.allclose(model.logprobs(tokens), slow, rtol=1e-12, atol=0, equal_nan=True)
    # Several documents: each one starts over after BOS.
    docs = [tokens[:30], tokens[30:]]
    joined = np.concatenate([model.logprobs(docs[0]), model.logprobs(docs[1])])
    assert np.array_equal(model.logprobs(docs), joined)


def test_longer_context_is_truncated(random_corpus):
    model = NGramLM(3).fit(random_corpus)
    context = [0, 1, 2, 3, 1, 0]
    assert model.prob(2, context) == model.prob(2, context[-2:])
    # A shorter context is the start of a document, not a lower-order query:
    assert math.isclose(model.prob(2, [1]), math.exp(model.logprobs([1, 2])[1]), rel_tol=1e-12)


def test_mle_unseen_ngram_gives_infinite_perplexity():
    model = NGramLM(2, "mle").fit(CORPUS)
    assert model.logprob(A, [A]) == -math.inf
    assert model.perplexity([A, A]) == math.inf
    assert model.cross_entropy([A, A], unit="bits") == math.inf
    assert math.isfinite(NGramLM(2, "add_k").fit(CORPUS).perplexity([A, A]))


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_perplexity_is_exp_cross_entropy(smoothing, random_corpus):
    model = NGramLM(3, smoothing).fit(random_corpus[:250])
    val = random_corpus[250:]
    nats = model.cross_entropy(val)
    assert math.isclose(model.perplexity(val), math.exp(nats), rel_tol=1e-12)
    assert math.isclose(model.cross_entropy(val, unit="bits"), nats / math.log(2))
    assert math.isclose(nats, -model.logprobs(val).mean())


def test_unseen_fraction_grows_with_order(random_corpus):
    model = NGramLM(6, "mle").fit(random_corpus[:200])
    share = model.unseen_fraction(random_corpus[200:])
    assert share.shape == (6,) and share[0] == 0
    assert np.all(np.diff(share) >= 0) and share[-1] > 0.5


# ---- generation ------------------------------------------------------------------------


def test_generation_is_reproducible_from_a_seed(random_corpus):
    model = NGramLM(3).fit(random_corpus)
    first = model.generate(50, seed=7)
    assert first.shape == (50,) and first.dtype == np.int64
    assert np.array_equal(first, model.generate(50, seed=7))
    assert not np.array_equal(first, model.generate(50, seed=8))
    assert model.generate(0).shape == (0,)


def test_greedy_generation_follows_the_argmax():
    model = NGramLM(2, "mle").fit([0, 1, 2, 0, 1, 2, 0, 1, 2])
    assert model.generate(5, temperature=0).tolist() == [0, 1, 2, 0, 1]
    assert model.generate(3, context=[1], temperature=0).tolist() == [2, 0, 1]
    assert model.generate(3, context=[1], temperature=0.01, seed=0).tolist() == [2, 0, 1]


def test_temperature_reshapes_the_distribution():
    model = NGramLM(1, "mle").fit([0, 0, 0, 1])  # P = (3/4, 1/4)
    for temperature, share_of_1 in [(1.0, 1 / 4), (0.5, 1 / 10), (1000.0, 1 / 2)]:
        # P^(1/T) normalised: T = 0.5 gives (9/16, 1/16) / (10/16) = (9/10, 1/10).
        sample = model.generate(2000, temperature=temperature, seed=0)
        assert abs(sample.mean() - share_of_1) < 0.03, temperature


# ---- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("order", [0, -2, 2.5, True, "3"])
def test_bad_order(order):
    with pytest.raises(ValueError, match="order must be an integer >= 1"):
        NGramLM(order)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"smoothing": "laplace"}, "unknown smoothing 'laplace'; choose one of mle, add_k"),
        ({"smoothing": "add_k", "k": 0}, "add-k needs k > 0"),
        ({"smoothing": "interpolated", "weights": [0.5, 0.5]}, "weights must be 3 non-negative"),
        ({"smoothing": "interpolated", "weights": [0.5, 0.5, 0.5]}, "weights must sum to 1"),
        ({"smoothing": "interpolated", "weights": [1.5, -0.5, 0]}, "non-negative"),
        ({"discount": 1.5}, r"discounts must satisfy 0 < D1 <= 1"),
        ({"discount": 0}, r"discounts must satisfy"),
        ({"discount": (0.5, 1, 1.5)}, "kneser_ney takes 1 discount"),
        ({"smoothing": "modified_kneser_ney", "discount": (0.5, 1)}, "takes 1 or 3 discount"),
        ({"smoothing": "modified_kneser_ney", "discount": (0.5, 2.5, 2)}, "0 < D2 <= 2"),
        ({"heldout_fraction": 1.0}, "heldout_fraction must be in"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NGramLM(2, **kwargs)


@pytest.mark.parametrize(
    ("tokens", "error", "message"),
    [
        ([], ValueError, "cannot fit on an empty corpus"),
        ([[], []], ValueError, "cannot fit on an empty corpus"),
        ([0, 1, -1], ValueError, r"ids >= 0; found -1 at position 2"),
        ("to be or not", TypeError, "encode the text first"),
        (np.array([0.0, 1.0]), TypeError, "integer ids"),
        (np.zeros((2, 2, 2), dtype=int), TypeError, r"shape \(2, 2, 2\)"),
    ],
)
def test_bad_training_tokens(tokens, error, message):
    with pytest.raises(error, match=message):
        NGramLM(2).fit(tokens)


def test_vocab_size_too_small():
    with pytest.raises(ValueError, match=r"vocab_size=2 is too small.*id 2; pass vocab_size >= 3"):
        NGramLM(2).fit(CORPUS, vocab_size=2)


def test_tokens_outside_the_vocabulary():
    model = NGramLM(2).fit(CORPUS)  # vocab_size = 3
    hint = r"outside the vocabulary 0..2; map unknown tokens to an UNK id"
    with pytest.raises(ValueError, match=r"token id 7 at position 1 is " + hint):
        model.perplexity([0, 7])
    with pytest.raises(ValueError, match=hint):
        model.prob(3, [0])
    with pytest.raises(ValueError, match=hint):
        model.distribution([5])
    with pytest.raises(ValueError, match=r"ids >= 0; found -1"):
        model.logprob(-1)
    with pytest.raises(ValueError, match=r"ids >= 0"):
        model.generate(3, context=[-1])


def test_interpolation_needs_heldout_tokens():
    with pytest.raises(ValueError, match="needs held-out tokens.*pass heldout="):
        NGramLM(2, "interpolated").fit([0, 1, 0])
    with pytest.raises(ValueError, match="held-out tokens: token id 9"):
        NGramLM(2, "interpolated").fit(CORPUS, heldout=[0, 9])


@pytest.mark.parametrize(
    "use",
    [
        lambda m: m.perplexity([0, 1]),
        lambda m: m.cross_entropy([0, 1]),
        lambda m: m.logprobs([0, 1]),
        lambda m: m.prob(0, [1]),
        lambda m: m.logprob(0),
        lambda m: m.distribution(),
        lambda m: m.generate(5),
        lambda m: m.count([0]),
        lambda m: m.num_ngrams(1),
        lambda m: m.nbytes,
        lambda m: m.unseen_fraction([0]),
    ],
)
def test_use_before_fit(use):
    with pytest.raises(RuntimeError, match=r"not fitted yet; call model.fit\(tokens\) first"):
        use(NGramLM(3))


def test_other_bad_arguments():
    model = NGramLM(2).fit(CORPUS)
    with pytest.raises(ValueError, match="n must be a number of tokens >= 0, got -1"):
        model.generate(-1)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        model.generate(3, temperature=-0.5)
    with pytest.raises(ValueError, match="between 1 and the model's order 2, got 3"):
        model.num_ngrams(3)
    with pytest.raises(ValueError, match="ngram must hold 1 to 2 ids, got 3"):
        model.count([0, 1, 0])
    with pytest.raises(ValueError, match='unit must be "nats" or "bits"'):
        model.cross_entropy(CORPUS, unit="bytes")
    with pytest.raises(ValueError, match="empty sequence"):
        model.perplexity([])
    assert repr(model) == "NGramLM(order=2, smoothing='kneser_ney', vocab_size=3)"


# ---- real text -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shakespeare_ids():
    from lmcore import data
    from lmcore.tokenizers import CharTokenizer

    train, val = data.shakespeare("train"), data.shakespeare("val")
    tokenizer = CharTokenizer(train + val)
    encode = tokenizer.encode
    return np.array(encode(train[:400_000])), np.array(encode(val[:50_000])), tokenizer.vocab_size


@pytest.mark.parametrize("order", [3, 5])
def test_kneser_ney_beats_add_k_on_shakespeare(order, shakespeare_ids):
    train, val, vocab_size = shakespeare_ids
    ppl = {
        smoothing: NGramLM(order, smoothing).fit(train, vocab_size).perplexity(val)
        for smoothing in ("add_k", "interpolated", "kneser_ney", "modified_kneser_ney")
    }
    assert ppl["modified_kneser_ney"] < ppl["kneser_ney"] < ppl["add_k"], ppl
    assert ppl["interpolated"] < ppl["add_k"], ppl
    if order >= 4:  # at order 3 on characters, Jelinek-Mercer and Kneser-Ney run level
        assert ppl["kneser_ney"] < ppl["interpolated"], ppl
    share = NGramLM(order, "mle").fit(train, vocab_size).unseen_fraction(val)
    assert share[0] == 0 and np.all(np.diff(share) > 0)
