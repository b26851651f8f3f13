"""``NGramLM``: an n-gram language model over any sequence of token ids.

Policies, stated once:

- **Tokens** are non-negative integer ids below ``vocab_size``: characters mapped to
  ids, words, BPE ids. ``tokens`` is one document (a list of ints or a 1-D integer
  array) or several (a list of such sequences, or a 2-D array, one row each).
- **Boundaries.** Each document is preceded by ``order - 1`` BOS symbols, so its
  first tokens have full contexts: P(first token | BOS BOS ...) is learned from the
  starts of the training documents. BOS is the id ``vocab_size``, kept inside the
  model; it is a context only and is never predicted. No end symbol is added: put
  one in your vocabulary if documents should learn to end.
- **Contexts.** ``context`` means the tokens before the one predicted, in the same
  document. Only the last ``order - 1`` of them matter, so a longer context is
  truncated; a shorter one is taken as the start of a document and padded with BOS.
- **Unknown tokens.** ``fit(tokens, vocab_size=V)`` reserves the ids 0..V-1; ids that
  never occur in training still get probability from every smoothing except MLE.
  Map words outside your vocabulary to an UNK id before counting. Ids at or above
  ``vocab_size`` are refused.

Example:
    >>> model = NGramLM(3, smoothing="kneser_ney").fit([0, 1, 2, 0, 1, 0, 1, 2])
    >>> float(model.distribution([0, 1]).sum().round(12))
    1.0
    >>> bool(model.prob(2, [0, 1]) > model.prob(0, [0, 1]))
    True
"""

from __future__ import annotations

import math

import numpy as np

from lmcore.ngram import smoothing as sm
from lmcore.ngram.counts import NGramCounts

SMOOTHINGS = ("mle", "add_k", "interpolated", "kneser_ney", "modified_kneser_ney")
_UNSEEN_HINT = (
    "map unknown tokens to an UNK id, or refit with a larger vocab_size so that "
    "ids unseen in training get smoothed probability."
)


def as_documents(tokens, what: str = "tokens") -> list[np.ndarray]:
    """``tokens`` as a list of 1-D int64 arrays, one per document, with negatives refused."""
    if isinstance(tokens, (str, bytes)):
        raise TypeError(
            f"{what} must be integer token ids, got a {type(tokens).__name__}; "
            "encode the text first, e.g. with a character or BPE tokenizer."
        )
    if isinstance(tokens, np.ndarray) and tokens.ndim == 2:
        tokens = list(tokens)
    many = isinstance(tokens, (list, tuple)) and any(np.ndim(doc) > 0 for doc in tokens)
    documents = []
    for doc in tokens if many else [tokens]:
        array = np.asarray(doc)
        if array.size == 0:
            array = array.astype(np.int64)
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise TypeError(
                f"{what} must be a 1-D sequence of integer ids (or a list of them), "
                f"got an array of shape {array.shape} and dtype {array.dtype}."
            )
        if array.size and array.min() < 0:
            at = int(np.argmax(array < 0))
            raise ValueError(f"{what} must be ids >= 0; found {array[at]} at position {at}.")
        documents.append(array.astype(np.int64))
    return documents


def _check_range(documents: list[np.ndarray], vocab_size: int, what: str, hint: str) -> None:
    for doc in documents:
        if doc.size and doc.max() >= vocab_size:
            at = int(np.argmax(doc >= vocab_size))
            raise ValueError(
                f"{what}: token id {doc[at]} at position {at} is outside the vocabulary "
                f"0..{vocab_size - 1}; {hint}"
            )


def _split_heldout(documents: list[np.ndarray], fraction: float):
    """The first ``1 - fraction`` of each document to count, the rest to tune on."""
    cuts = [len(doc) - int(len(doc) * fraction) for doc in documents]
    return [d[:c] for d, c in zip(documents, cuts)], [d[c:] for d, c in zip(documents, cuts)]


class NGramLM:
    """An n-gram language model: P(token | the previous ``order - 1`` tokens).

    Args:
        order: n, the length of the n-grams (1 = unigram, 2 = bigram, ...).
        smoothing: ``"mle"``, ``"add_k"`` (``k``; Laplace when k = 1),
            ``"interpolated"`` (Jelinek-Mercer; ``weights`` or fitted by EM on held-out
            tokens), ``"kneser_ney"`` (interpolated, one absolute ``discount`` per order)
            or ``"modified_kneser_ney"`` (three discounts D1, D2, D3+ per order).
        k: the pseudo-count of add-k.
        weights: interpolation weights (lambda_0 for the uniform distribution, then
            orders 1..n), summing to 1; None fits them by EM in ``fit``.
        discount: Kneser-Ney discount in (0, 1] for every order (a triple (D1, D2, D3+)
            for the modified form); None estimates them from the count-of-counts.
        heldout_fraction: for ``"interpolated"`` without ``weights`` and without a
            ``heldout`` argument to ``fit``: the share of each training document held
            out to fit the weights (the final counts then use all the training tokens).

    Example:
        >>> model = NGramLM(2, smoothing="add_k", k=1.0).fit([0, 1, 0, 2], vocab_size=3)
        >>> model.prob(1, [0])  # (c(0 1) + 1) / (c(0) + 3) = (1 + 1) / (2 + 3)
        0.4
    """

    def __init__(
        self,
        order: int,
        smoothing: str = "kneser_ney",
        *,
        k: float = 1.0,
        weights=None,
        discount=None,
        heldout_fraction: float = 0.1,
    ):
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
            raise ValueError(f"order must be an integer >= 1 (1 = unigram), got {order!r}.")
        if smoothing not in SMOOTHINGS:
            raise ValueError(
                f"unknown smoothing {smoothing!r}; choose one of {', '.join(SMOOTHINGS)}."
            )
        if smoothing == "add_k" and not k > 0:
            raise ValueError(f"add-k needs k > 0, got k={k}; k = 1 is Laplace smoothing.")
        if not 0 < heldout_fraction < 1:
            raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}.")
        self.order = int(order)
        self.smoothing = smoothing
        self.k = float(k)
        self._given_weights = None if weights is None else self._check_weights(weights)
        self._given_discount = None if discount is None else self._check_discount(discount)
        self.heldout_fraction = heldout_fraction
        self.weights = self._given_weights  # float64 (order + 1,) for "interpolated"
        self.discounts = None  # float64 (order, 3) after fit, for the Kneser-Ney smoothings
        self.vocab_size = None
        self._counts = None

    def _check_weights(self, weights) -> np.ndarray:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (self.order + 1,) or weights.min() < 0:
            raise ValueError(
                f"weights must be {self.order + 1} non-negative numbers (uniform, then orders "
                f"1..{self.order}), got {weights.tolist()}."
            )
        if not math.isclose(weights.sum(), 1.0, abs_tol=1e-9):
            raise ValueError(f"weights must sum to 1, got a sum of {weights.sum():.6g}.")
        return weights

    def _check_discount(self, discount) -> np.ndarray:
        sizes = (1,) if self.smoothing == "kneser_ney" else (1, 3)
        if np.size(discount) not in sizes:
            raise ValueError(
                f"{self.smoothing} takes {' or '.join(map(str, sizes))} discount(s), "
                f"got {discount!r}."
            )
        d = np.broadcast_to(np.asarray(discount, dtype=np.float64).ravel(), (3,)).copy()
        if np.any(d <= 0) or np.any(d > np.arange(1, 4)):
            raise ValueError(
                f"discounts must satisfy 0 < D1 <= 1, 0 < D2 <= 2, 0 < D3+ <= 3; got {discount!r}."
            )
        return d

    def __repr__(self) -> str:
        state = f"vocab_size={self.vocab_size}" if self._counts else "not fitted"
        return f"NGramLM(order={self.order}, smoothing={self.smoothing!r}, {state})"

    # ---- fitting -------------------------------------------------------------------

    def fit(self, tokens, vocab_size: int | None = None, heldout=None) -> NGramLM:
        """Count the n-grams of ``tokens``; returns the model.

        ``vocab_size`` defaults to the largest id + 1. ``heldout`` (tokens, like
        ``tokens``) is used only by ``"interpolated"`` to fit its weights.

        Example:
            >>> NGramLM(2, "mle").fit([0, 1, 1, 0]).prob(1, [1])  # c(1 1) / c(1) = 1 / 2
            0.5
        """
        documents = as_documents(tokens, "training tokens")
        if sum(len(doc) for doc in documents) == 0:
            raise ValueError("cannot fit on an empty corpus: the training tokens hold 0 ids.")
        largest = max(int(doc.max()) for doc in documents if doc.size)
        if vocab_size is None:
            vocab_size = largest + 1
        if vocab_size <= largest:
            raise ValueError(
                f"vocab_size={vocab_size} is too small: the training tokens contain id "
                f"{largest}; pass vocab_size >= {largest + 1}."
            )
        tune = self.smoothing == "interpolated" and self._given_weights is None
        split = tune and heldout is None  # hold out the end of each training document
        if split:
            counted, heldout = _split_heldout(documents, self.heldout_fraction)
        elif tune:
            counted, heldout = documents, as_documents(heldout, "held-out tokens")
            _check_range(heldout, vocab_size, "held-out tokens", _UNSEEN_HINT)
        if tune and (sum(map(len, heldout)) == 0 or sum(map(len, counted)) == 0):
            raise ValueError(
                "interpolated smoothing needs held-out tokens to fit its weights; the corpus "
                "is too short to hold some out: pass heldout=... or weights=... ."
            )
        self.vocab_size = int(vocab_size)
        if tune:
            self._fit_weights(counted, heldout)
        if split or not tune:  # the final counts use every training token
            self._count(documents)
        return self

    def _fit_weights(self, counted: list[np.ndarray], heldout: list[np.ndarray]) -> None:
        """Count ``counted``, then fit the interpolation weights to ``heldout`` by EM."""
        self._count(counted)
        counts, totals, _ = self._statistics(*self._counts.ids(heldout))
        estimates = sm.order_estimates(counts, totals, self.vocab_size)
        self.weights = sm.fit_interpolation_weights(estimates)

    def _count(self, documents: list[np.ndarray]) -> None:
        """Count, then precompute what the smoothing needs per order (index n - 1).

        ``_gram_counts[n-1]`` (G_n,) the counts it smooths; ``_context_totals[n-1]``
        (G_{n-1},) their sum over each context; ``_context_masses[n-1]`` (G_{n-1},)
        the Kneser-Ney discount mass of each context.
        """
        self._counts = counts = NGramCounts(documents, self.order, self.vocab_size)
        kneser_ney = self.smoothing in ("kneser_ney", "modified_kneser_ney")
        self._gram_counts = list(counts.counts)
        if kneser_ney:  # continuation counts below the top order
            self._gram_counts[:-1] = counts.continuation
            if self._given_discount is not None:
                self.discounts = np.tile(self._given_discount, (self.order, 1))
            else:
                modified = self.smoothing == "modified_kneser_ney"
                self.discounts = np.array(
                    [sm.estimate_discounts(a[a > 0], modified) for a in self._gram_counts]
                )
        self._context_totals, self._context_masses = [], []
        for n, (keys, a) in enumerate(zip(counts.keys, self._gram_counts), start=1):
            context = keys // counts.base  # (G_n,) the context id of each n-gram
            size = 1 if n == 1 else len(counts.keys[n - 2])
            self._context_totals.append(np.bincount(context, weights=a, minlength=size))
            if kneser_ney:
                taken = np.minimum(sm.discount_of(a, self.discounts[n - 1]), a)
                self._context_masses.append(np.bincount(context, weights=taken, minlength=size))

    # ---- probabilities -------------------------------------------------------------

    def _require_fit(self) -> None:
        if self._counts is None:
            raise RuntimeError("this NGramLM is not fitted yet; call model.fit(tokens) first.")

    def _documents(self, tokens) -> list[np.ndarray]:
        self._require_fit()
        documents = as_documents(tokens)
        _check_range(documents, self.vocab_size, "tokens", _UNSEEN_HINT)
        return documents

    def _statistics(self, contexts: np.ndarray, grams: np.ndarray):
        """Per-order counts, context totals and masses (lists of float64 (...,)) of queries.

        ``contexts`` and ``grams`` are int64 (order, ...) ids, -1 where unseen.
        """

        def gather(table, ids):
            return np.where(ids >= 0, table[np.maximum(ids, 0)], 0).astype(np.float64)

        counts = [gather(a, g) for a, g in zip(self._gram_counts, grams)]
        totals = [gather(t, c) for t, c in zip(self._context_totals, contexts)]
        masses = [gather(m, c) for m, c in zip(self._context_masses, contexts)]
        return counts, totals, masses

    def _probabilities(self, contexts: np.ndarray, grams: np.ndarray) -> np.ndarray:
        counts, totals, masses = self._statistics(contexts, grams)
        v = self.vocab_size
        if self.smoothing == "mle":
            return sm.mle(counts[-1], totals[-1], v)
        if self.smoothing == "add_k":
            return sm.add_k(counts[-1], totals[-1], v, self.k)
        if self.smoothing == "interpolated":
            return sm.interpolate(counts, totals, v, self.weights)
        return sm.kneser_ney(counts, totals, masses, v, self.discounts)

    def _truncate(self, context: list) -> list:
        """The last ``order - 1`` tokens of ``context``: all the model looks at."""
        return context[max(len(context) - (self.order - 1), 0) :]

    def _context_ids(self, context) -> np.ndarray:
        """int64 (order,): the id of the last n - 1 tokens of ``context`` for n = 1..order."""
        (doc,) = self._documents([self._truncate(list(context)) + [0]])
        contexts, _ = self._counts.ids([doc])
        return contexts[:, -1]

    def distribution(self, context=()) -> np.ndarray:
        """P(w | context) for every token w of the vocabulary: float64 (vocab_size,).

        Example:
            >>> NGramLM(2, "mle").fit([0, 1, 1, 0]).distribution([1])
            array([0.5, 0.5])
        """
        contexts = self._context_ids(context)[:, None]  # (order, 1)
        base = self._counts.base
        tokens = np.arange(self.vocab_size)
        grams = np.stack(
            [
                np.where(c >= 0, self._counts.find(n, c * base + tokens), -1)
                for n, c in enumerate(contexts, start=1)
            ]
        )  # (order, V)
        return self._probabilities(np.broadcast_to(contexts, grams.shape), grams)

    def prob(self, token: int, context=()) -> float:
        """P(token | context); the context keeps its last ``order - 1`` tokens."""
        self._documents([token])
        return float(self.distribution(context)[token])

    def logprob(self, token: int, context=()) -> float:
        """log P(token | context) in nats; ``-inf`` when the probability is 0."""
        with np.errstate(divide="ignore"):
            return float(np.log(self.prob(token, context)))

    def logprobs(self, tokens) -> np.ndarray:
        """log P of every token given the tokens before it, in nats: float64 (T,).

        Vectorised: one ``searchsorted`` per order for the whole sequence.

        Example:
            >>> NGramLM(1, "mle").fit([0, 0, 1, 1]).logprobs([0, 1]).round(4)
            array([-0.6931, -0.6931])
        """
        documents = self._documents(tokens)
        with np.errstate(divide="ignore"):
            return np.log(self._probabilities(*self._counts.ids(documents)))

    def cross_entropy(self, tokens, unit: str = "nats") -> float:
        """The average -log P per token, in ``"nats"`` or ``"bits"``; inf if any P is 0."""
        if unit not in ("nats", "bits"):
            raise ValueError(f'unit must be "nats" or "bits", got {unit!r}.')
        logprobs = self.logprobs(tokens)
        if logprobs.size == 0:
            raise ValueError("cannot evaluate on an empty sequence: it holds 0 tokens.")
        nats = -float(np.mean(logprobs))
        return nats if unit == "nats" else nats / math.log(2)

    def perplexity(self, tokens) -> float:
        """exp(cross-entropy in nats): the effective number of choices per token.

        Example:
            >>> NGramLM(1, "mle").fit([0, 1, 2, 3]).perplexity([3, 2, 1, 0])
            4.0
        """
        return float(np.exp(self.cross_entropy(tokens)))

    # ---- generation and inspection ------------------------------------------------

    def generate(
        self,
        n: int,
        context=(),
        temperature: float = 1.0,
        seed=None,
        top_k: int | None = None,
        top_p: float | None = None,
    ) -> np.ndarray:
        """Sample ``n`` new tokens after ``context``: int64 (n,).

        Each token is drawn by :func:`lmcore.generate.sample_next`, the sampler every model
        of the book shares: ``temperature`` reshapes each distribution to P^(1/T) (below 1
        it sharpens, above 1 it flattens, 0 always picks the most probable token);
        ``top_k`` keeps the k likeliest tokens and ``top_p`` the likeliest ones holding
        that share of the probability. The same ``seed`` gives the same tokens.

        Example:
            >>> model = NGramLM(2).fit([0, 1, 2, 0, 1, 2])
            >>> model.generate(4, temperature=0).tolist()
            [0, 1, 2, 0]
        """
        from lmcore.generate.logits import check_sampling, sample_next

        self._require_fit()
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a number of tokens >= 0, got {n!r}.")
        if not temperature >= 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}.")
        check_sampling(temperature, top_k, top_p)
        rng = np.random.default_rng(seed)
        history = [int(t) for t in context]
        for _ in range(n):
            with np.errstate(divide="ignore"):
                logits = np.log(self.distribution(self._truncate(history)))[None]  # (1, V)
            token = sample_next(logits, temperature, top_k, generator=rng, top_p=top_p)
            history.append(int(token[0, 0]))
        return np.array(history[len(history) - n :], dtype=np.int64)

    def count(self, ngram) -> int:
        """How often the n-gram (a sequence of 1..order token ids) occurred in training.

        Example:
            >>> NGramLM(2).fit([0, 1, 0, 1]).count([0, 1])
            2
        """
        self._require_fit()
        if not 1 <= len(ngram) <= self.order:
            raise ValueError(f"ngram must hold 1 to {self.order} ids, got {len(ngram)}.")
        (doc,) = self._documents(list(ngram))
        return self._counts.count(doc)

    def num_ngrams(self, n: int) -> int:
        """The number of distinct n-grams of order ``n`` (1..order) seen in training."""
        self._require_fit()
        if not 1 <= n <= self.order:
            raise ValueError(f"n must be between 1 and the model's order {self.order}, got {n}.")
        return self._counts.num_ngrams(n)

    @property
    def nbytes(self) -> int:
        """Bytes held by the model's tables (counts, keys and per-context statistics)."""
        self._require_fit()
        tables = (*self._context_totals, *self._context_masses)
        return self._counts.nbytes + sum(a.nbytes for a in tables)

    def unseen_fraction(self, tokens) -> np.ndarray:
        """For n = 1..order, the share of the n-grams of ``tokens`` never seen in training.

        float64 (order,); the n-grams include the BOS-padded ones at document starts.

        Example:
            >>> NGramLM(2).fit([0, 1, 0, 1]).unseen_fraction([0, 1, 1]).tolist()
            [0.0, 0.3333333333333333]
        """
        documents = self._documents(tokens)
        _, grams = self._counts.ids(documents)
        return (grams < 0).mean(axis=1)
