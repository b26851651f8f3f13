"""Smoothing: turning n-gram counts into next-token probabilities.

Every function here works on whole arrays of queries at once. For a query
"token w after context h" and each order n = 1..N (h_n is the last n - 1 tokens of h):

    counts[n - 1]  c(h_n w), float64 (Q,)  (Kneser-Ney: continuation counts below N)
    totals[n - 1]  c(h_n) = sum over v of c(h_n v), float64 (Q,); 0 for an unseen context

Each estimate is a proper distribution over the V tokens of the vocabulary, also
for contexts never seen in training.

Example:
    >>> add_k(np.array([2.0]), np.array([3.0]), vocab_size=3, k=1.0)  # (2 + 1) / (3 + 3)
    array([0.5])
"""

from __future__ import annotations

import numpy as np


def _ratio(numerator: np.ndarray, total: np.ndarray, unseen: np.ndarray) -> np.ndarray:
    """``numerator / total`` where the context was seen (total > 0), else ``unseen``."""
    seen = total > 0
    return np.where(seen, numerator / np.where(seen, total, 1.0), unseen)


def mle(count: np.ndarray, total: np.ndarray, vocab_size: int) -> np.ndarray:
    """Maximum likelihood: P(w | h) = c(h w) / c(h).

    An n-gram never seen gets probability 0. A context never seen makes the ratio
    0 / 0; there we return the uniform 1 / V (the limit of add-k as k -> 0).

    Example:
        >>> mle(np.array([2.0, 0.0]), np.array([3.0, 0.0]), vocab_size=4)
        array([0.66666667, 0.25      ])
    """
    return _ratio(count, total, np.full(count.shape, 1.0 / vocab_size))


def add_k(count: np.ndarray, total: np.ndarray, vocab_size: int, k: float) -> np.ndarray:
    """Add-k: P(w | h) = (c(h w) + k) / (c(h) + k V); Laplace smoothing when k = 1.

    Example:
        >>> add_k(np.array([0.0]), np.array([3.0]), vocab_size=3, k=1.0)  # (0 + 1) / (3 + 3)
        array([0.16666667])
    """
    return (count + k) / (total + k * vocab_size)


def order_estimates(counts: list, totals: list, vocab_size: int) -> np.ndarray:
    """The estimates that linear interpolation mixes: float64 (N + 1, Q).

    Row 0 is the uniform 1 / V; row n is the MLE of order n, or row n - 1 where the
    order-n context was never seen, so that every row is a distribution.

    Example:
        >>> order_estimates([np.array([1.0])], [np.array([4.0])], vocab_size=2)
        array([[0.5 ],
               [0.25]])
    """
    rows = [np.full(counts[0].shape, 1.0 / vocab_size)]
    for count, total in zip(counts, totals):
        rows.append(_ratio(count, total, rows[-1]))
    return np.stack(rows)


def interpolate(counts: list, totals: list, vocab_size: int, weights: np.ndarray) -> np.ndarray:
    """Linear interpolation (Jelinek-Mercer): P(w | h) = sum over n of weights[n] P_n(w | h_n).

    ``weights`` (N + 1,) sums to 1; P_0 is uniform and P_n the rows of
    :func:`order_estimates`.

    Example:
        >>> interpolate([np.array([1.0])], [np.array([4.0])], 2, np.array([0.5, 0.5]))
        array([0.375])
    """
    return weights @ order_estimates(counts, totals, vocab_size)


def fit_interpolation_weights(
    estimates: np.ndarray, tol: float = 1e-4, max_iter: int = 1000
) -> np.ndarray:
    """Interpolation weights that maximise the likelihood of held-out tokens, by EM.

    ``estimates`` (N + 1, Q) holds P_n(w_t | h_t) for each held-out token t (rows of
    :func:`order_estimates`). Read the mixture as a story: to produce each token, pick
    an order n with probability weights[n], then draw the token from P_n. We never see
    which order was picked, so Expectation-Maximisation alternates two steps:

    - E-step: the posterior share of order n in token t,
      r[n, t] = weights[n] P_n(w_t) / sum over m of weights[m] P_m(w_t);
    - M-step: the new weights are the average shares, weights[n] = mean over t of r[n, t].

    Each round never lowers the held-out log-likelihood; we stop when no weight
    moves by more than ``tol``.

    Example:
        >>> est = np.array([[0.5, 0.5, 0.5], [1.0, 1.0, 0.0]])  # order 1: sure twice, wrong once
        >>> fit_interpolation_weights(est).round(2)  # the optimum is (2/3, 1/3)
        array([0.67, 0.33])
    """
    weights = np.full(len(estimates), 1.0 / len(estimates))
    for _ in range(max_iter):
        mixture = weights @ estimates  # (Q,)
        updated = weights * (estimates @ (1.0 / mixture)) / len(mixture)  # mean of r over t
        converged = np.abs(updated - weights).max() < tol
        weights = updated
        if converged:
            break
    return weights


def count_of_counts(counts: np.ndarray, upto: int = 4) -> np.ndarray:
    """n_k = the number of distinct n-grams seen exactly k times, for k = 1..upto."""
    return np.bincount(np.minimum(counts, upto + 1), minlength=upto + 2)[1 : upto + 1]


def estimate_discounts(counts: np.ndarray, modified: bool) -> np.ndarray:
    """Kneser-Ney discounts (D1, D2, D3+) for one order from its count-of-counts.

    With n_k the number of n-grams seen k times and Y = n1 / (n1 + 2 n2):
    plain Kneser-Ney uses one discount D = Y for every count (Ney, Essen and
    Kneser 1994); modified Kneser-Ney uses D1 = 1 - 2Y n2/n1, D2 = 2 - 3Y n3/n2,
    D3+ = 3 - 4Y n4/n3 (Chen and Goodman 1998). Where the data leave a formula
    undefined or outside (0, k] (tiny corpora), D = 0.5 stands in for D1, D2 and D3+.

    Example:
        >>> estimate_discounts(np.array([1, 1, 1, 2, 2, 3, 5]), modified=False)
        array([0.42857143, 0.42857143, 0.42857143])
    """
    n1, n2, n3, n4 = count_of_counts(counts).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = n1 / (n1 + 2 * n2)
        if modified:
            d = np.array([1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3])
        else:
            d = np.full(3, y)
    usable = np.isfinite(d) & (d > 0) & (d <= np.arange(1, 4))
    return np.where(usable, d, 0.5)


def discount_of(count: np.ndarray, discounts: np.ndarray) -> np.ndarray:
    """The discount each count gets: D1 for 1, D2 for 2, D3+ for 3 or more, 0 for 0."""
    table = np.concatenate([[0.0], discounts])  # indexed by min(count, 3)
    return table[np.minimum(count, 3).astype(np.int64)]


def kneser_ney(
    counts: list, totals: list, masses: list, vocab_size: int, discounts: np.ndarray
) -> np.ndarray:
    """Interpolated Kneser-Ney, from the uniform distribution up to order N.

    With a_n the count of order n (the ordinary count at the top order, the
    *continuation count* N1+(. h w), the number of distinct tokens seen before
    h w, at lower orders), D(a) its discount and P_0 = 1 / V:

        P_n(w | h) = (max(a_n(h w) - D(a), 0) + m_n(h) P_{n-1}(w | h')) / a_n(h)

    where m_n(h) = sum over w of min(D(a_n(h w)), a_n(h w)) (``masses``) is the
    probability taken from the seen tokens and handed to the lower order. A context
    never seen leaves P_n = P_{n-1}. ``discounts`` is float64 (N, 3): (D1, D2, D3+)
    per order; plain Kneser-Ney has D1 = D2 = D3+.

    Example:
        >>> d = np.full((1, 3), 0.5)  # counts 3, 1, 0 of three tokens: (3 - .5 + 1 * 1/3) / 4
        >>> kneser_ney([np.array([3.0])], [np.array([4.0])], [np.array([1.0])], 3, d)
        array([0.70833333])
    """
    p = np.full(counts[0].shape, 1.0 / vocab_size)
    for count, total, mass, d in zip(counts, totals, masses, discounts):
        kept = np.maximum(count - discount_of(count, d), 0.0)
        p = _ratio(kept + mass * p, total, p)
    return p
