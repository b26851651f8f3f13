# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # n-gram language models
#
# A language model assigns a probability to every text. Equivalently, and more usefully, it
# tells us how likely each possible next token is, given the tokens so far. The first models
# that did this well, and the ones that ran speech recognisers and machine translation for
# three decades, do nothing more than count: how often did this token follow these few tokens
# in the training text? The whole art lies in what to do with the counts that are zero.
#
# This chapter builds those models on Shakespeare, measures them honestly on plays they never
# saw, and finds exactly where counting runs out of road, which is where neural networks
# take over in the chapters that follow.
#
# **In this chapter you will**
#
# - factor the probability of a text with the chain rule and cut it down with the Markov
#   assumption, to a model made of counts;
# - see why the maximum-likelihood estimate gives held-out text probability zero, and
#   perplexity infinity;
# - fix it four ways: add-k, interpolation with weights fitted by EM, backoff, and
#   Kneser-Ney with its continuation counts;
# - measure perplexity for orders 1–6 and every smoothing, on characters and on BPE tokens,
#   and compare the two fairly in bits per character;
# - watch sparsity grow with the order, sample text from each order, and measure memory and
#   speed;
# - train the same bigram by gradient descent, and see that it walks to the counted model.

# %% tags=["hide-cell"]
# Set-up: install lmcore when it is missing (on Colab, say), then name the profile and device.
import importlib.util
import subprocess
import sys

REPOSITORY = "https://github.com/lmcore-book/language-models-from-scratch"
if importlib.util.find_spec("lmcore") is None:
    subprocess.check_call(
        [sys.executable, "-m", "pip", "install", "-q", f"lmcore @ git+{REPOSITORY}"]
    )

# %%
import math
import time
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter, PercentFormatter

import lmcore
from lmcore import config, data
from lmcore.generate import sample_next
from lmcore.generate.logits import top_k_filter, top_p_filter
from lmcore.ngram import SMOOTHINGS, NGramCounts, NGramLM
from lmcore.ngram import smoothing as sm
from lmcore.notebook import show
from lmcore.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer

PROFILE = config.profile()
lmcore.notebook.setup()

# %% [markdown]
# ## From the chain rule to counts
#
# Write a text as tokens $w_1, w_2, \dots, w_T$. The chain rule of probability factors its
# probability exactly into one prediction per token:
#
# $$
# P(w_1, \dots, w_T) = \prod_{t=1}^{T} P(w_t \mid w_1, \dots, w_{t-1}).
# $$
#
# Nothing is lost so far, and nothing is gained either: the context $w_1, \dots, w_{t-1}$ of
# the last word of a play is the whole play, and no text repeats a whole play often enough to
# estimate anything from it. The **Markov assumption** throws the distant past away: the next
# token depends only on the $n - 1$ tokens before it,
#
# $$
# P(w_t \mid w_1, \dots, w_{t-1}) \approx P(w_t \mid w_{t-n+1}, \dots, w_{t-1}).
# $$
#
# A model of this kind is an **n-gram model**: it looks at windows of $n$ tokens, the last of
# which it predicts. A unigram model ($n = 1$) ignores the context entirely; a bigram model
# ($n = 2$) looks at one previous token; a trigram model at two. The idea is Markov's own, who
# in 1913 counted vowels and consonants in Pushkin's *Eugene Onegin*, and Shannon used it to
# build the first statistical approximations of English, letter by letter and word by word
# {cite}`shannon1948`.
#
# The natural estimate of such a probability is a ratio of counts. Writing $h$ for the
# context (the $n - 1$ tokens before) and $c(\cdot)$ for how often something occurs in the
# training text,
#
# $$
# P_\text{MLE}(w \mid h) = \frac{c(h\,w)}{c(h)}, \qquad c(h) = \sum_{v} c(h\,v).
# $$
#
# It is the **maximum-likelihood estimate** (MLE): of all the conditional distributions, it
# is the one that gives the training text the highest probability. We will work with
# characters first, as chapter 1's `CharTokenizer` makes them, on the training plays; the
# `quick` profile uses a slice of them so that the chapter runs in seconds.

# %%
train_text, val_text = data.shakespeare("train"), data.shakespeare("val")
chars = CharTokenizer(train_text)  # the alphabet of all the training plays, in every profile
train_text = train_text[: config.pick(quick=500_000, standard=len(train_text))]
val_text = val_text[: config.pick(quick=50_000, standard=len(val_text))]
train_ids = np.array(chars.encode(train_text))  # int64 (T,)
val_ids = np.array(chars.encode(val_text))
V = chars.vocab_size
print(f"{len(train_ids):,} training and {len(val_ids):,} validation characters, {V} symbols")

# %% [markdown]
# `lmcore.ngram.NGramLM` is the model. `fit` counts every n-gram of every order up to $n$ in
# one pass, with NumPy instead of Python dictionaries: each n-gram becomes a single integer
# key, the row of its context in the table of the order below times the vocabulary size plus
# its last token, so that counting is a sort and looking up is a binary search. Here is the
# counting, from `lmcore/ngram/counts.py`:

# %%
show(NGramCounts.__init__)

# %% [markdown]
# The document is padded on the left with $n - 1$ copies of a beginning-of-sequence symbol
# (BOS) so that the first characters have contexts too. Let us count, and look at what follows
# `th` in Shakespeare:

# %%
mle3 = NGramLM(3, smoothing="mle").fit(train_ids, vocab_size=V)
th = chars.encode("th")
print(f"c('th') = {mle3.count(th):,}, c('the') = {mle3.count(chars.encode('the')):,}")
p = mle3.distribution(th)  # float64 (V,): P(next character | 'th')
for i in np.argsort(p)[::-1][:6]:
    print(f"  P({chars.decode([int(i)])!r} | 'th') = {p[i]:.3f}")
assert math.isclose(p.sum(), 1.0) and chars.decode([int(np.argmax(p))]) == "e"

# %% [markdown]
# After `th`, an `e` comes almost half the time (*the*, *thee*, *then*), and a handful of
# other letters share most of the rest. The estimate itself is one line:

# %%
show(sm.mle)

# %% [markdown]
# ## Perplexity, and the problem with zeros
#
# How good is a model? The chain rule gives the probability of the whole validation text, and
# its negative logarithm divided by the number of tokens is the **cross-entropy**, the average
# surprise per token in nats (natural log) or bits ($\log_2$). Its exponential is the
# **perplexity**:
#
# $$
# \text{PPL} = \exp\Big(-\frac{1}{T} \sum_{t=1}^{T} \ln P(w_t \mid h_t)\Big).
# $$
#
# Perplexity reads as an effective number of choices: a model that spreads its probability
# evenly over $k$ tokens at every step has perplexity $k$, so the uniform model over our
# alphabet scores exactly $V$, and a perfect model scores 1. It is always measured on text the
# model did not count: on its own training text the MLE is, by definition, as good as it can
# be.

# %%
show(NGramLM.cross_entropy)

# %% [markdown]
# Now the MLE on the validation plays, for orders 1 to 6:

# %%
ORDERS = range(1, 7)
mle_ppl = [NGramLM(n, "mle").fit(train_ids, V).perplexity(val_ids) for n in ORDERS]
print("MLE validation perplexity by order:", [round(x, 2) for x in mle_ppl])
assert np.isfinite(mle_ppl[0]) and all(np.isinf(x) for x in mle_ppl[1:])

# %% [markdown]
# The unigram model scores a finite perplexity, but from order 2 on, the perplexity is
# *infinite*. The reason is a single factor in the product. Somewhere in the validation plays
# is a pair of characters that never occurs in the training text; its MLE is $0/c(h) = 0$,
# the probability of the whole text is 0, and $-\ln 0 = \infty$. One unseen n-gram is enough,
# and at higher orders there are thousands. Here are the first ones the bigram and trigram
# models meet:

# %%
for n in (2, 3):
    model = NGramLM(n, "mle").fit(train_ids, V)
    logp = model.logprobs(val_ids)  # float64 (T,): ln P of each validation character
    zero = np.flatnonzero(np.isinf(logp))
    t = int(zero[zero >= 25][0])  # the first one past the opening lines, to show its context
    print(
        f"order {n}: {len(zero):,} characters get probability 0, for example "
        f"{val_text[t]!r} after {val_text[t - n + 1 : t]!r} in {val_text[t - 25 : t + 5]!r}"
    )

# %% [markdown]
# These are not errors in the validation text; they are events the training text happened not
# to contain. An estimate that calls them impossible is wrong, and so is any model that
# multiplies by it. **Smoothing** is the name for taking a little probability from the n-grams
# we saw and giving it to the ones we did not.

# %% [markdown]
# ## Add-k smoothing
#
# The simplest fix pretends that every n-gram was seen $k$ more times than it was:
#
# $$
# P_\text{add-k}(w \mid h) = \frac{c(h\,w) + k}{c(h) + kV}.
# $$
#
# With $k = 1$ this is Laplace's rule of succession. Every token now has probability at least
# $k / (c(h) + kV)$ after every context, and the distribution still sums to 1 because the
# denominator grew by exactly the $V$ pseudo-counts added in the numerator.

# %%
show(sm.add_k)

# %% [markdown]
# Add-k is honest but crude. It gives *every* unseen continuation the same share, so an
# impossible `qz` gets as much as a plausible but unseen `ng`, and it takes far too much from
# rare contexts: a context seen twice, with $V = 76$ and $k = 1$, has a denominator of
# $2 + 76 = 78$, and the continuations it actually saw get $(2 + s)/78$ in all, where $s \le 2$
# is the number of distinct ones: at most $4/78$, about 5 %, of the probability, while the
# 74 or more continuations it never saw share the other 95 %. As the order grows, more and
# more contexts are rare, and add-k gets *worse*, as the tables below will show.

# %% [markdown]
# ## Interpolation, with weights fitted by EM
#
# A better idea is to lean on shorter contexts when the long one knows little. The trigram
# `h w` may be unseen, but the bigram estimate $P(w \mid \text{last token of } h)$ and the
# unigram $P(w)$ are based on far more data. **Linear interpolation** (Jelinek-Mercer
# smoothing {cite}`jelinek1980`) mixes the MLE of every order with fixed weights
# $\lambda_0, \dots, \lambda_n$ that sum to 1, starting from the uniform distribution
# $P_0 = 1/V$ so that nothing is ever impossible:
#
# $$
# P_\text{interp}(w \mid h) = \lambda_0 \frac{1}{V} + \sum_{m=1}^{n} \lambda_m\, P_\text{MLE}(w \mid h_m),
# $$
#
# where $h_m$ is the last $m - 1$ tokens of $h$. A mixture of distributions is a
# distribution, so this sums to 1.

# %%
show(sm.interpolate)

# %% [markdown]
# How much weight should each order get? Not what fits the training text best: there the
# highest order has seen every n-gram, so it is never wrong, and the best weights put
# everything on it, which is the MLE again. The weights must be chosen on **held-out** data,
# text that was not counted. `NGramLM` holds out the last 10 % of the training text, counts the
# first 90 %, fits the weights on the held-out part, and then recounts everything.
#
# The fit itself is a textbook case of the **EM algorithm** {cite}`dempster1977`. Read the
# mixture as a story: to produce each token, first pick an order $m$ with probability
# $\lambda_m$, then draw the token from $P_m$. If we knew which order produced each held-out
# token, the best $\lambda_m$ would be the fraction of tokens it produced. We do not know, so we
# alternate: the E-step computes, for each token, the posterior probability that order $m$
# produced it, $r_{mt} = \lambda_m P_m(w_t) / \sum_j \lambda_j P_j(w_t)$; the M-step sets
# each $\lambda_m$ to the average of its $r_{mt}$. Each round provably never lowers the
# held-out likelihood, and a few dozen rounds converge.

# %%
show(sm.fit_interpolation_weights)

# %% [markdown]
# The weights a 5-gram model learns, and what happens when we (wrongly) fit them on text that
# was counted, by passing a slice of the training text as the held-out text:

# %%
interp5 = NGramLM(5, "interpolated").fit(train_ids, V)
cheat5 = NGramLM(5, "interpolated").fit(train_ids, V, heldout=train_ids[-len(val_ids) :])
print("weights (uniform, orders 1..5), fitted on held-out text:", interp5.weights.round(3))
print("weights fitted on counted text:                        ", cheat5.weights.round(3))
print(
    f"validation perplexity: {interp5.perplexity(val_ids):.2f} (held out) vs "
    f"{cheat5.perplexity(val_ids):.2f} (counted)"
)
assert cheat5.weights[-1] > 0.95 > interp5.weights[-1]
assert interp5.perplexity(val_ids) < cheat5.perplexity(val_ids)

# %% [markdown]
# On held-out text, the 5-gram gets the largest share but far from all of it, and the lower
# orders keep a real say. Fitted on counted text, the 5-gram takes almost everything and the
# validation perplexity gets much worse: the weights have learned how reliable the top order
# is on text it has already seen, which tells us nothing about new text.
#
# ## Backoff
#
# Interpolation always mixes every order, even when the long context is well known. **Backoff**
# {cite}`katz1987` takes the other road: if the n-gram `h w` was seen, use (a discounted
# version of) its own estimate and nothing else; only if it was never seen, *back off* to the
# shorter context and use its estimate, scaled by a weight $\alpha(h)$:
#
# $$
# P_\text{backoff}(w \mid h) =
# \begin{cases}
#   P^*(w \mid h) & \text{if } c(h\,w) > 0, \\
#   \alpha(h)\, P_\text{backoff}(w \mid h') & \text{otherwise,}
# \end{cases}
# $$
#
# where $h'$ drops the oldest token of $h$ and $P^*$ is the MLE with some probability
# discounted away. The discount is what pays for the unseen tokens, and $\alpha(h)$ is chosen
# so that the backed-off share is exactly the discounted mass: the distribution sums to 1.
# Dropping the discount and using a constant $\alpha = 0.4$ gives Google's "stupid backoff"
# {cite}`brants2007`, which is not a distribution at all (exercise 3) but was good enough
# for translation with trillions of words.
#
# The difference matters for the seen n-grams. With backoff, a seen trigram ignores what the
# bigram and unigram say; with interpolation, a trigram seen once is tempered by the lower
# orders, which is usually better, because one occurrence is weak evidence. Both ideas have
# the same weakness, though: the lower-order estimate they fall back on is the plain
# frequency of the token, and that is the wrong thing to fall back on.
#
# ## Kneser-Ney: how many contexts, not how many times
#
# When does a model consult the lower order? Mostly when the long context has not been seen
# with this token. So the lower-order distribution should answer a specific question: *how
# likely is $w$ to appear in a new context?* The plain frequency of $w$ answers a different
# one, and the two can disagree badly. The textbook example is *Francisco*, frequent in
# American newspapers but almost always after *San*; after any other word it is rare.
#
# Shakespeare has a perfect case. In the training plays, *morrow* (as in *good morrow*,
# *to-morrow*) and *nature* occur almost equally often. Count the distinct words that come
# just before each:

# %%
corpus = data.shakespeare("train")  # the full training plays for this example, in any profile
words = WordTokenizer(corpus)
word_ids = np.array(words.encode(corpus))
W = words.vocab_size
before = Counter(zip([None, *word_ids[:-1].tolist()], word_ids.tolist()))  # bigram counts
preceded_by = {}
for a, b in before:
    preceded_by.setdefault(b, []).append(a)
MORROW, NATURE = words.encode("morrow nature")
for w in (MORROW, NATURE):
    top = Counter({a: before[a, w] for a in preceded_by[w]}).most_common(3)
    print(
        f"{words.decode([w]):7s} occurs {sum(before[a, w] for a in preceded_by[w]):4d} times, "
        f"after {len(preceded_by[w]):3d} distinct words; most often after "
        + ", ".join(f"{words.decode([a])!r} ({n})" for a, n in top)
    )
assert len(preceded_by[MORROW]) == 5 and len(preceded_by[NATURE]) > 100  # the full plays

# %% [markdown]
# *morrow* follows only five different tokens, almost always a hyphen (*to-morrow*,
# *good-morrow*) or *good*; *nature* follows more than a hundred. In a context neither has been seen in, such as *sweet ___*, a
# unigram model would call them equally likely. But *nature* has shown that it turns up after
# all kinds of words, and *morrow* has not, so *sweet nature* should be far more likely than
# *sweet morrow*.
#
# Kneser-Ney smoothing {cite}`kneser1995` builds this in. Its lower-order distributions count
# **continuation counts**, the number of distinct tokens seen just before $w$,
# $N_{1+}(\bullet\, w)$, instead of $c(w)$. And it makes room for the unseen by **absolute
# discounting** {cite}`ney1994`: every seen count loses a fixed $D$ (between 0 and 1), and the
# probability taken away is handed to the lower order. For a bigram model,
#
# $$
# P_\text{KN}(w \mid h) = \frac{\max(c(h\,w) - D, 0)}{c(h)}
#   + \frac{D\, N_{1+}(h\, \bullet)}{c(h)}\; P_\text{cont}(w),
# \qquad
# P_\text{cont}(w) = \frac{N_{1+}(\bullet\, w)}{N_{1+}(\bullet\, \bullet)},
# $$
#
# where $N_{1+}(h\,\bullet)$ is the number of distinct tokens seen after $h$ (each lost $D$)
# and $N_{1+}(\bullet\,\bullet)$ the number of distinct bigrams. The continuation distribution
# is discounted in turn and mixed with the uniform $1/V$, so that even a token never seen gets
# a little. Higher orders repeat the recipe: every order below the top uses continuation
# counts. The discount is estimated from the count-of-counts, $D = n_1 / (n_1 + 2 n_2)$, with
# $n_k$ the number of n-grams seen exactly $k$ times.

# %%
show(sm.kneser_ney)

# %% [markdown]
# Let us check the formula by hand on *sweet morrow* and *sweet nature*, with the counts
# printed, against a bigram Kneser-Ney model of the words (`NGramLM` takes any token ids).

# %%
kn_words = NGramLM(2, "kneser_ney").fit(word_ids, W)
jm_words = NGramLM(2, "interpolated").fit(word_ids, W)
D1, D2 = kn_words.discounts[:, 0]  # the discount of order 1 and of order 2
(SWEET,) = words.encode("sweet")
after_sweet = [b for a, b in before if a == SWEET]
c_sweet = sum(before[SWEET, b] for b in after_sweet)
bigram_types = len(before)  # N1+(. .): distinct (previous, word) pairs, sentence start included
seen_words = len(preceded_by)  # words with a continuation count of at least 1
print(
    f"c(sweet) = {c_sweet}, N1+(sweet .) = {len(after_sweet)}, N1+(. .) = {bigram_types:,}, "
    f"D1 = {D1:.3f}, D2 = {D2:.3f}"
)
for w in (MORROW, NATURE):
    cont = len(preceded_by[w])
    p_cont = (max(cont - D1, 0) + D1 * seen_words / W) / bigram_types
    by_hand = (max(before[SWEET, w] - D2, 0) + D2 * len(after_sweet) * p_cont) / c_sweet
    p_model = kn_words.prob(w, [SWEET])
    print(
        f"  sweet {words.decode([w]):6s}: c = {before[SWEET, w]}, N1+(. w) = {cont:3d}, "
        f"P_cont = {p_cont:.2e}, P_KN by hand = {by_hand:.3e}, NGramLM: {p_model:.3e}, "
        f"interpolated: {jm_words.prob(w, [SWEET]):.3e}"
    )
    assert before[SWEET, w] == 0 and math.isclose(by_hand, p_model, rel_tol=1e-9)
ratio_kn = kn_words.prob(NATURE, [SWEET]) / kn_words.prob(MORROW, [SWEET])
ratio_jm = jm_words.prob(NATURE, [SWEET]) / jm_words.prob(MORROW, [SWEET])
print(
    f"P(nature | sweet) / P(morrow | sweet): Kneser-Ney {ratio_kn:.1f}, interpolated {ratio_jm:.2f}"
)
assert ratio_kn > 20 and 0.5 < ratio_jm < 2

# %% [markdown]
# The hand computation and the package agree to the last digit. Neither pair was ever seen,
# so both models fall back to a lower order; interpolation falls back to the raw frequencies
# and calls the two words about equally likely, while Kneser-Ney, through the continuation
# counts, makes *nature* more than twenty times likelier than *morrow* after *sweet*.
#
# **Modified Kneser-Ney** {cite}`chen1999` refines the discount: n-grams seen once, twice and
# three or more times each get their own, $D_1, D_2, D_{3+}$, again estimated from the
# count-of-counts. Chen and Goodman's careful comparison of smoothing methods found it the best
# of them all, and it became the standard, the method of the widely used KenLM toolkit
# {cite}`heafield2013`. Both estimates:

# %%
show(sm.estimate_discounts)

# %% [markdown]
# ## Every smoothing gives a distribution
#
# Whatever a smoothing does, its output after any context must be a probability distribution
# over the vocabulary: non-negative and summing to 1, also after a context the model never
# saw (here `zqx`), where it must fall back gracefully rather than divide by zero.

# %%
unseen_context = chars.encode("zqx")
seen_context = chars.encode("tha")
for smoothing in SMOOTHINGS:
    model = NGramLM(4, smoothing).fit(train_ids, V)
    assert model.count(unseen_context) == 0 < model.count(seen_context)
    sums = [model.distribution(h).sum() for h in (seen_context, unseen_context)]
    print(f"{smoothing:20s} sum after 'tha': {sums[0]:.12f}   after 'zqx': {sums[1]:.12f}")
    assert all(math.isclose(s, 1.0, abs_tol=1e-9) for s in sums)
    assert model.distribution(unseen_context).min() >= 0

# %% [markdown]
# ## Perplexity against order, on characters
#
# Now the comparison this chapter is built around: every smoothing at every order from 1 to
# 6, trained on the training plays and measured on the validation plays. We also time each fit
# and each evaluation, for the section on speed below.


# %%
def sweep(train, val, vocab_size, orders=ORDERS, smoothings=SMOOTHINGS):
    """Validation perplexity, fit seconds and evaluation seconds for every order and smoothing."""
    shape = (len(smoothings), len(orders))
    ppl, fit_s, eval_s = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    models = {}
    for i, smoothing in enumerate(smoothings):
        for j, n in enumerate(orders):
            start = time.perf_counter()
            model = NGramLM(n, smoothing).fit(train, vocab_size)
            fit_s[i, j] = time.perf_counter() - start
            start = time.perf_counter()
            ppl[i, j] = model.perplexity(val)
            eval_s[i, j] = time.perf_counter() - start
            models[smoothing, n] = model
    return ppl, fit_s, eval_s, models


def print_table(ppl, title, fmt="{:8.2f}"):
    print(title)
    print(f"{'order':20s}" + "".join(f"{n:>8d}" for n in ORDERS))
    for smoothing, row in zip(SMOOTHINGS, ppl):
        print(f"{smoothing:20s}" + "".join(fmt.format(x) for x in row))


char_ppl, char_fit_s, char_eval_s, char_models = sweep(train_ids, val_ids, V)
print_table(char_ppl, "validation perplexity per character")
best = np.unravel_index(np.argmin(char_ppl), char_ppl.shape)
best_smoothing, best_order = SMOOTHINGS[best[0]], ORDERS[best[1]]
print(f"best: {best_smoothing}, order {best_order}, perplexity {char_ppl[best]:.2f}")

# %%
# The claims of the text below, checked on this run.
row = {s: char_ppl[i] for i, s in enumerate(SMOOTHINGS)}
assert all(np.isinf(row["mle"][1:]))
for s in ("kneser_ney", "modified_kneser_ney"):
    assert all(row[s][3:] < 0.95 * row["add_k"][3:]), "Kneser-Ney wins from order 4 on"
    assert abs(row[s][2] / row["add_k"][2] - 1) < 0.05, "at order 3 they are within 5 %"
assert row["modified_kneser_ney"][2] < row["add_k"][2]  # modified KN wins at order 3 too
assert all(np.argmin(char_ppl[:, 2:], axis=0) == SMOOTHINGS.index("modified_kneser_ney"))
assert best_smoothing == "modified_kneser_ney" and best_order == 6
assert np.argmin(row["add_k"]) + 1 in (3, 4)  # add-k gets worse beyond order 3 or 4
assert np.isclose(char_ppl[:, 0], char_ppl[0, 0], rtol=0.01).all()  # order 1: all alike

# %% [markdown]
# Read the table by columns first. At order 1 every method is the same, because with 76
# symbols and hundreds of thousands of characters nothing is rare. From order 2 the MLE is
# infinite, as we saw. Add-k improves up to order 3 or 4 and then gets steadily worse: most
# long contexts are rare, and add-k hands most of their probability to the 76 pseudo-counts.
# Interpolation keeps improving with the order, and from order 4 on the two Kneser-Ney
# variants win, by more at every order, modified Kneser-Ney at order 6 best of all. This is the ranking Chen
# and Goodman found on English newspapers {cite}`chen1999`.
#
# At orders 2 and 3, though, all the smoothed models are within a few percent of each other,
# and plain Kneser-Ney does not beat add-k at order 3 on the `quick` slice (with the full
# text it is level). Short contexts of characters are frequent, so add-k's pseudo-counts
# cost little there; and continuation counts tell little about characters, because almost
# every character has followed almost every other. Space is the commonest character, but
# `e` has followed more different characters than space has:

# %%
unigram = char_models["kneser_ney", 2]
for ch in " ezQ":
    (i,) = chars.encode(ch)
    print(
        f"{ch!r}: count {unigram.count([i]):7,}, followed {len({a for a in range(V) if unigram.count([a, i])}):2d} "
        "different characters"
    )

# %% [markdown]
# Space is many times more frequent than `e`, hundreds of times more than `z`, but the
# continuation counts flatten those ratios to a few to one. Kneser-Ney's fallback
# distribution is therefore close to uniform for characters, which costs a little at low
# orders. Its strengths show where contexts are rare (high orders) and where the vocabulary
# is large and skewed, as with words, or the BPE tokens below.

# %% [markdown]
# ## Sparsity: why longer contexts stop paying
#
# Each extra character of context splits the counts into more and smaller pieces. We can
# measure it directly: the share of validation n-grams that never occur in the training text
# (`unseen_fraction`).

# %%
char_unseen = char_models["modified_kneser_ney", 6].unseen_fraction(val_ids)
for n, u in zip(ORDERS, char_unseen):
    print(f"order {n}: {u:6.1%} of validation {n}-grams were never seen in training")
assert np.all(np.diff(char_unseen) > 0)

# %% [markdown]
# A 3-gram of characters is almost always familiar; a 6-gram is new a good part of the time
# and a new 6-gram means the model has to fall back to a shorter context for that prediction.
# How far does it pay to go? Let us push modified Kneser-Ney beyond order 6.

# %%
LONG_ORDERS = range(6, config.pick(quick=9, standard=11))
long_ppl, long_unseen = [], []
for n in LONG_ORDERS:
    model = NGramLM(n, "modified_kneser_ney").fit(train_ids, V)
    long_ppl.append(model.perplexity(val_ids))
    long_unseen.append(model.unseen_fraction(val_ids)[-1])
    print(f"order {n:2d}: perplexity {long_ppl[-1]:.3f}, unseen {n}-grams {long_unseen[-1]:.1%}")
del model
gain = 1 - min(long_ppl) / long_ppl[0]
print(f"the best longer order gains {gain:.1%} over order 6")
print(f"perplexity at order {LONG_ORDERS[-1]}: {long_ppl[-1]:.3f}, best {min(long_ppl):.3f}")
assert gain < 0.05
assert long_ppl[-1] > min(long_ppl)  # past the best order, perplexity creeps back up

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
for smoothing, row_ppl in zip(SMOOTHINGS[1:], char_ppl[1:]):
    ax1.plot(list(ORDERS), row_ppl, "o-", label=smoothing)
ax1.plot(list(LONG_ORDERS), long_ppl, "o--", color="C3", alpha=0.6, label="modified KN, longer")
ax1.set_yscale("log")
ax1.set_yticks([4, 5, 6, 8, 10, 15, 20, 30], ["4", "5", "6", "8", "10", "15", "20", "30"])
ax1.yaxis.set_minor_formatter(NullFormatter())
ax1.set_xlabel("order $n$")
ax1.set_ylabel("validation perplexity (per character)")
ax1.set_title("Perplexity against order (MLE: infinite)")
ax1.legend(fontsize=7, loc="upper center")
ax2.plot(list(ORDERS) + list(LONG_ORDERS[1:]), list(char_unseen) + long_unseen[1:], "o-")
ax2.set_xlabel("order $n$")
ax2.set_ylabel("validation n-grams unseen in training")
ax2.yaxis.set_major_formatter(PercentFormatter(1.0))
ax2.set_title("Sparsity")
plt.show()

# %% [markdown]
# The two plots are one story. As the order grows, the model can use more context *when it
# has seen that context*, but it has seen a shrinking share of them. For the training plays at
# full size, the gains flatten near order 7 or 8, where a third of the validation 8-grams are
# new; beyond it perplexity even creeps up (asserted: the longest order is worse than the
# best), while the tables keep growing (next sections).
# In the `quick` profile, with an eighth of the text, the curve flattens one or two orders
# earlier, at 6 or 7. More data pushes the wall back, but slowly: to see most 10-grams of new
# plays, we would need vastly more Shakespeare than Shakespeare wrote.

# %% [markdown]
# ## BPE tokens, and a fair comparison
#
# Nothing in `NGramLM` is specific to characters. Chapter 1's byte-level BPE, with a
# vocabulary of 1,024 trained on the training text, turns every couple of characters into one
# token, so an n-gram of BPE tokens spans more text than an n-gram of characters.

# %%
BPE_VOCAB = 1024
bpe = BPETokenizer.train(train_text, vocab_size=BPE_VOCAB)
bpe_train = np.array(bpe.encode(train_text))
bpe_val = np.array(bpe.encode(val_text))
print(
    f"{len(bpe_train):,} training and {len(bpe_val):,} validation tokens: "
    f"{len(val_text) / len(bpe_val):.2f} characters per token on validation"
)
bpe_ppl, bpe_fit_s, bpe_eval_s, bpe_models = sweep(bpe_train, bpe_val, BPE_VOCAB)
print_table(bpe_ppl, "validation perplexity per BPE token")
bpe_best = np.unravel_index(np.argmin(bpe_ppl), bpe_ppl.shape)
print(
    f"best: {SMOOTHINGS[bpe_best[0]]}, order {ORDERS[bpe_best[1]]}, perplexity {bpe_ppl[bpe_best]:.2f}"
)
bpe_unseen = bpe_models["modified_kneser_ney", 6].unseen_fraction(bpe_val)
never = sorted(set(bpe_val.tolist()) - set(bpe_train.tolist()))
print(
    "validation tokens that never occur in the encoded training text:",
    [bpe.decode([t]) for t in never],
)
print("unseen BPE n-grams by order:", " ".join(f"{u:.1%}" for u in bpe_unseen))
for s in ("kneser_ney", "modified_kneser_ney"):
    i = SMOOTHINGS.index(s)
    assert all(bpe_ppl[i, 1:] < 0.9 * bpe_ppl[SMOOTHINGS.index("add_k"), 1:])
    assert all(bpe_ppl[i, 2:] < 0.5 * bpe_ppl[SMOOTHINGS.index("add_k"), 2:])
assert np.all(np.diff(bpe_unseen) > 0) and np.all(bpe_unseen[1:] > char_unseen[1:])
mkn = SMOOTHINGS.index("modified_kneser_ney")
assert bpe_ppl[mkn, 3] / bpe_ppl[mkn, 5] - 1 < 0.01  # less than 1 % gained beyond order 4
assert np.isinf(bpe_ppl[0, 0])  # even the unigram MLE meets tokens it never counted

# %% [markdown]
# The same patterns, stronger. Even the unigram MLE is infinite now, because of the tokens
# printed above. Each was only a step on the way to longer merges: in the `quick` run it is
# `BI`, merged on the way to speaker names such as `BIRON`; with all the plays it is `ENRY`,
# on the way to `HENRY`. In the encoded training text such a token survives only inside
# longer ones and never occurs alone, but the validation plays use it on its own. (Most of
# the 256 byte tokens never occur at all.)
# Add-k collapses from order 3, where most contexts are rare and each spreads its
# probability over 1,024 pseudo-counts, and Kneser-Ney wins at every order from 2 on, by
# more than 10 % at order 2 and by a factor of two or more after that: with a larger, skewed
# vocabulary, continuation counts carry real information.
# Yet even Kneser-Ney gains less than 1 % beyond order 4, because BPE n-grams are much
# sparser than character n-grams of the same order: they span more than twice the text.
#
# Are these perplexities of 30 or more worse than the 4 or 5 of characters? **The two numbers
# cannot be compared.** A perplexity is per token, and a BPE token carries more text than a
# character: predicting one BPE token is predicting two or three characters at once. Any model
# that predicts longer tokens will have a larger per-token perplexity, even if it is the better
# model of the text. What *is* comparable is the probability each model gives to the same
# validation text, normalised by something the tokenizers agree on: the number of characters.
# With $T$ tokens, cross-entropy $H$ nats per token and $C$ characters,
#
# $$
# \text{bits per character} = \frac{T \cdot H}{C \ln 2} = \frac{\text{total nats}}{C \ln 2},
# $$
#
# and for characters ($T = C$) this is just the cross-entropy in bits.


# %%
def bits_per_char(perplexity, num_tokens, num_chars):
    total_nats = num_tokens * math.log(perplexity)  # -ln P(validation text)
    return total_nats / num_chars / math.log(2)


char_bpc = np.array([[bits_per_char(p, len(val_ids), len(val_text)) for p in r] for r in char_ppl])
bpe_bpc = np.array([[bits_per_char(p, len(bpe_val), len(val_text)) for p in r] for r in bpe_ppl])
print_table(char_bpc, "bits per character, character tokens", "{:8.3f}")
print_table(bpe_bpc, "bits per character, BPE tokens", "{:8.3f}")
best_char_bpc, best_bpe_bpc = char_bpc.min(), bpe_bpc.min()
print(
    f"best: characters {best_char_bpc:.3f} bits/char (perplexity {char_ppl.min():.2f} per char), "
    f"BPE {best_bpe_bpc:.3f} bits/char (perplexity {bpe_ppl.min():.2f} per token)"
)
assert bpe_ppl.min() > 4 * char_ppl.min() and abs(best_bpe_bpc - best_char_bpc) < 0.2
if PROFILE != "quick":  # all the training plays: about 2 bits per character either way
    assert 1.9 < best_char_bpc < 2.2 and 1.9 < best_bpe_bpc < 2.2
m6 = char_models["modified_kneser_ney", 6]
assert math.isclose(char_bpc[-1, -1], m6.cross_entropy(val_ids, "bits"), rel_tol=1e-9)

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
chars_per_token = len(val_text) / len(bpe_val)
all_char_unseen = list(char_unseen) + long_unseen[1:]  # orders 1 to the longest fitted
ax1.plot(list(ORDERS), char_bpc[mkn], "o-", label="characters")
ax1.plot(list(ORDERS), bpe_bpc[mkn], "o-", label="BPE 1,024")
ax2.plot(range(1, len(all_char_unseen) + 1), all_char_unseen, "o-", label="characters")
ax2.plot(np.array(ORDERS) * chars_per_token, bpe_unseen, "o-", label="BPE 1,024")
ax1.set_xlabel("order $n$ (tokens)")
ax1.set_ylabel("bits per character (validation)")
ax1.set_title("Modified Kneser-Ney, per character")
ax1.legend()
ax2.set_xlabel("characters spanned by an n-gram (on average)")
ax2.set_ylabel("validation n-grams unseen in training")
ax2.yaxis.set_major_formatter(PercentFormatter(1.0))
ax2.set_title("Sparsity against the text an n-gram spans")
ax2.legend()
plt.show()

# %% [markdown]
# Per token, BPE looks seven to ten times more perplexed; per character, the best models of
# the two tokenizations are close. With all the training text they are within a few
# hundredths of a bit of each other, a little over 2 bits per character, BPE slightly ahead;
# with the `quick` slice the characters are ahead by about a tenth of a bit, because BPE's
# longer n-grams suffer more from the smaller text. (Two to the power of the bits per
# character is a per-character perplexity, comparable across tokenizers.) The tokenizer moves
# the problem around but does not make it easier for a model that can only count: a 4-gram
# of BPE tokens sees about as much text as a 9-gram of characters, and is about as sparse.
# The plots show it. Order for order, BPE is far ahead at low orders, because each of its
# tokens carries more text, and both curves level off at about the same height. Drawn against
# the number of characters an n-gram spans, the two sparsity curves are close, BPE's a little
# above.

# %% [markdown]
# ## Sampling text
#
# A language model is also a generator: draw the next token from $P(\cdot \mid h)$, append it,
# and repeat. `generate` does exactly that, with a fixed seed so that the same text comes back
# every time. The seed here is fixed and the prompt is a blank line, after which a speaker's
# name is due.

# %%
show(NGramLM.generate)

# %%
prompt = chars.encode("\n\n")
for n in (1, 2, 4, 6, 8):
    if ("modified_kneser_ney", n) in char_models:
        model = char_models["modified_kneser_ney", n]
    else:
        model = NGramLM(n, "modified_kneser_ney").fit(train_ids, V)
    sample = chars.decode(model.generate(220, context=prompt, seed=1).tolist())
    print(f"───── order {n} " + "─" * 50)
    print(sample.strip())
    print()

# %% [markdown]
# The unigram model produces letters at the right rates and nothing else. The bigram has
# learned which letters follow which, and pronounceable nonsense comes out. At order 4 many
# words are English and the line lengths look right. At 6 and 8, trained on all the plays
# (`standard`), the text reads like Shakespeare at a glance, with his words, his punctuation
# and speakers' names in capitals followed by a colon and a line break, but the sense drifts
# within a line: the model cannot see further back than 5 or 7 characters, and much of what
# it writes is copied in pieces from the training text, because the long contexts it knows
# are few. On the `quick` slice, orders 6 and 8 still invent words, because they have seen
# too few long contexts. This is Shakespeare seen through the window Shannon described in
# 1948.

# %% [markdown]
# ### Temperature, top-k and top-p
#
# Drawing straight from the model's distribution is one choice among several. Every model of
# the book samples through the same small function of `lmcore.generate`, and an n-gram model
# is the simplest place to see what its three knobs do. The **temperature** $\tau$ divides the
# log-probabilities before the softmax, $q(w) \propto P(w \mid h)^{1/\tau}$: below 1 the likely
# tokens get likelier, above 1 the distribution flattens, and $\tau \to 0$ always takes the
# most likely token (greedy decoding). **Top-k** keeps only the $k$ likeliest tokens;
# **top-p** (nucleus sampling {cite}`holtzman2020`) keeps the likeliest tokens whose
# probabilities first add up to $p$, so that it keeps few tokens where the model is sure and
# many where it is not. Here is the sampler:

# %%
show(sample_next)

# %% [markdown]
# How much choice is left after each knob? The entropy of the distribution actually sampled
# from, $H(q) = -\sum_w q(w) \log_2 q(w)$ bits, averaged over positions of the validation
# text, measures it: the order-6 model's own distributions at $\tau = 1$, sharper or flatter
# ones at other temperatures, and the same with top-k and top-p applied after the
# temperature, as the sampler applies them.

# %%
entropy_model = char_models.get(("modified_kneser_ney", 6)) or NGramLM(
    6, "modified_kneser_ney"
).fit(train_ids, V)
positions = range(5, 5 + config.pick(quick=300, standard=1500))
with np.errstate(divide="ignore"):
    position_logits = np.log(
        np.stack([entropy_model.distribution(val_ids[i - 5 : i]) for i in positions])
    )  # (positions, V)


def sampled_entropy(temperature, top_k=None, top_p=None) -> float:
    """Average entropy in bits of the distributions sample_next draws from."""
    logits = position_logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    q = np.exp(logits - logits.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(-np.nansum(q * np.log2(q), axis=1).mean())


temperatures = np.array([0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0])
knobs = {"temperature only": {}, "top-k, k = 5": {"top_k": 5}, "top-p, p = 0.9": {"top_p": 0.9}}
entropies = {
    name: np.array([sampled_entropy(t, **options) for t in temperatures])
    for name, options in knobs.items()
}
fig, ax = plt.subplots(figsize=(6, 3.6))
for name, values in entropies.items():
    ax.plot(temperatures, values, marker="o", label=name)
ax.axhline(math.log2(V), color="k", ls=":", lw=1, label=f"uniform over {V} symbols")
ax.set(xlabel="temperature", ylabel="entropy of q (bits per character)",
       title="How much choice each knob leaves")  # fmt: skip
ax.legend()
plt.show()
at_one = entropies["temperature only"][temperatures == 1.0][0]
print(f"order-6 model at temperature 1: {at_one:.2f} bits of choice per character on average")
for t in (0.5, 1.5):
    print(f"  temperature {t}: {entropies['temperature only'][temperatures == t][0]:.2f} bits")
temperature_only = entropies["temperature only"]
assert np.all(np.diff(temperature_only) > 0)  # entropy rises with the temperature
assert temperature_only[0] < at_one / 8 and temperature_only[-1] > 2 * at_one
for name in ("top-k, k = 5", "top-p, p = 0.9"):
    assert np.all(entropies[name] <= temperature_only + 1e-9)  # a filter only removes choice
assert np.all(entropies["top-k, k = 5"] <= math.log2(5) + 1e-9)  # at most 5 equal choices
kept = np.isfinite(top_p_filter(position_logits, 0.9)).sum(1)  # tokens top-p keeps, per position
print(f"top-p 0.9 at temperature 1 keeps {kept.min()} to {kept.max()} characters "
      f"(median {np.median(kept):.0f}); 2 or fewer at {(kept <= 2).mean():.0%} of the positions, "
      f"10 or more at {(kept >= 10).mean():.0%}")  # fmt: skip
assert kept.min() == 1 and kept.max() >= 10 and (kept <= 2).mean() > 0.1

# %% [markdown]
# Entropy rises with the temperature at every step of the sweep (asserted), from less than an
# eighth of the model's own entropy at $\tau = 0.1$, where sampling is nearly greedy, to more
# than twice the model's own entropy at $\tau = 3$, on its way to the uniform distribution
# (both asserted). The filters only ever remove
# choice, so their curves lie under the temperature-only curve (asserted), and top-k can never
# leave more than $\log_2 5 \approx 2.3$ bits (asserted), however hot the temperature: it
# cuts the long tail of unlikely characters that makes hot samples unreadable. Top-p cuts the
# tail too, but adapts: where the model is nearly sure (in the middle of a word) it keeps one
# or two characters, and where it is not (after a space) ten or more; in this run both
# happen at a good share of the positions (printed above; asserted: one character somewhere,
# ten or more somewhere, two or fewer at more than a tenth of the positions). Here are samples
# of the order-6 model at three settings, with the same seed:

# %%
for label, options in [
    ("temperature 0.5", dict(temperature=0.5)),
    ("temperature 1.5", dict(temperature=1.5)),
    ("temperature 1.5, top-p 0.9", dict(temperature=1.5, top_p=0.9)),
]:
    text = chars.decode(entropy_model.generate(160, context=prompt, seed=1, **options).tolist())
    print(f"───── {label} " + "─" * 40)
    print(text.strip())
    print()

# %% [markdown]
# At 0.5 the text is safe and repetitive; at 1.5 misspellings and stray punctuation creep in
# as the tail gets its turn; top-p at the same temperature removes most of them while keeping
# the variety. Chapter 6 compares these strategies on a neural model, with beam search.

# %% [markdown]
# ## Memory and speed
#
# An n-gram model is its tables. A dense table of order $n$ would need $V^n$ entries, already
# $76^6 \approx 1.9 \times 10^{11}$ at order 6; `lmcore` stores only the n-grams that occur,
# as sorted integer keys. How many are there, how much memory do they take, and how fast is
# the model?

# %%
kn = SMOOTHINGS.index("kneser_ney")
print(
    f"{'order':>5s} {'distinct n-grams':>17s} {'model MB':>9s} {'fit s':>7s} {'eval tokens/s':>14s}"
)
for j, n in enumerate(ORDERS):
    model = char_models["kneser_ney", n]
    print(
        f"{n:5d} {model.num_ngrams(n):17,} {model.nbytes / 1e6:9.1f} {char_fit_s[kn, j]:7.2f} "
        f"{len(val_ids) / char_eval_s[kn, j]:14,.0f}"
    )
distinct = [char_models["kneser_ney", 6].num_ngrams(n) for n in ORDERS]
assert all(np.diff(distinct) > 0)

# %% [markdown]
# The number of distinct n-grams grows with every order, and with it the memory; the count of
# possible n-grams grows as $76^n$, but the number that actually occur is bounded by the length
# of the text, which is why the growth slows at high orders: almost every position then starts
# a new n-gram. Fitting is a few sorts over the text, and evaluation a binary search per order
# per token, so both scale with the text times the order. The timings above are this run's, on
# this machine; the command `lmcore bench ngram` times a 5-gram Kneser-Ney model on the full
# training text (fit seconds and tokens per second of evaluation) on yours.

# %% [markdown]
# ## Why n-grams stop improving, and what comes next
#
# The tables and the plots point to one limit. An n-gram model treats every context as an
# atom. It knows nothing about *thy sweet* from *thy gentle*, or about *my lord,* from *My
# lord,*: each is a separate row of counts, and what it learns about one helps the other not
# at all. The only way it can generalise is by forgetting, falling back to a shorter context,
# and that throws away exactly the long-range information that makes the text coherent. So
# the number of contexts grows exponentially with the order, the data for each shrinks, and
# beyond 7 or 8 characters (4 BPE tokens) extra context brings no gain.
#
# The way out is to make similar contexts *share* statistics: represent each token, and each
# context, as a vector of numbers, so that contexts that behave alike get nearby vectors and
# similar predictions, and what is learned from one transfers to its neighbours. A model's size
# then depends on the width of those vectors, not on the number of distinct contexts, and the
# context can grow long without the counts running dry. That is the neural language model of
# Bengio and colleagues {cite}`bengio2003`, and it begins in the next chapter, with the
# machinery to learn those vectors by gradient descent. Its first job will be to beat the
# numbers in the table below.

# %% [markdown]
# ## From counting to learning: the bigram by gradient descent
#
# Before leaving counts behind, one bridge. The next chapters *learn* their parameters by
# gradient descent on the cross-entropy; this chapter *counted*. The two are the same thing
# for an n-gram model, and seeing why tells us what the loss of the next chapters means.
#
# Give the bigram model a table of free numbers instead of counts: a **logit** $W_{ab}$ for
# every pair, turned into a distribution over the next token by the softmax of its row,
#
# $$
# p_W(b \mid a) = \frac{e^{W_{ab}}}{\sum_{v} e^{W_{av}}}.
# $$
#
# The average negative log-probability of the training text, the **cross-entropy** of the
# model on it, sums over the $N$ pairs of consecutive tokens; grouping equal pairs turns it
# into a sum over the count table,
#
# $$
# L(W) = -\frac{1}{N} \sum_{i=1}^{N} \log p_W(x_{i+1} \mid x_i)
#      = -\frac{1}{N} \sum_{a, b} c(a\,b) \log p_W(b \mid a).
# $$
#
# For one position with context $a$ and next token $y$, the derivative of
# $-\log p_W(y \mid a) = -W_{ay} + \log \sum_v e^{W_{av}}$ with respect to $W_{ab}$ is
# $p_W(b \mid a) - [b = y]$: the predicted probability minus the one-hot target. Adding up
# the $c(a)$ positions with context $a$,
#
# $$
# \frac{\partial L}{\partial W_{ab}} = \frac{1}{N}\Bigl(c(a)\, p_W(b \mid a) - c(a\,b)\Bigr),
# $$
#
# which is zero exactly when $p_W(b \mid a) = c(a\,b)/c(a)$: the counted estimate. Minimizing
# the cross-entropy *is* maximizing the likelihood, and its minimum is the MLE of this chapter.
# Gradient descent should therefore walk from a uniform table ($W = 0$) to the counted model's
# loss. Each context's row is its own small problem, so the loop below averages each row's
# loss over that context's $c(a)$ positions (a learning rate of $1/c(a)$ per row, in effect):
# frequent and rare contexts then move at the same pace.


# %%
def bigram_counts(ids: np.ndarray) -> np.ndarray:
    """c(a b): how often token b follows token a, a (V, V) table."""
    table = np.zeros((V, V))
    np.add.at(table, (ids[:-1], ids[1:]), 1)
    return table


counts2, val_counts2 = bigram_counts(train_ids), bigram_counts(val_ids)
context_counts = counts2.sum(1, keepdims=True)  # c(a), (V, 1)
p_counted = np.divide(counts2, context_counts, out=np.zeros_like(counts2), where=context_counts > 0)
seen = counts2 > 0
counted_loss = -(counts2[seen] * np.log(p_counted[seen])).sum() / counts2.sum()


def cross_entropy_of(table_counts: np.ndarray, log_p: np.ndarray) -> float:
    """Average -log p over the pairs a count table holds."""
    return float(-(table_counts * log_p).sum() / table_counts.sum())


logits = np.zeros((V, V))  # W: the uniform model
lr, descent_steps = 4.0, 3000
gd_train, gd_val = [], []
for _ in range(descent_steps + 1):
    log_p = logits - logits.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))  # log softmax of each row
    gd_train.append(cross_entropy_of(counts2, log_p))
    gd_val.append(cross_entropy_of(val_counts2, log_p))
    # each row's gradient, averaged over its c(a) positions: p_W(b|a) - c(ab)/c(a)
    logits -= lr * (np.exp(log_p) - p_counted) * (context_counts > 0)

unseen_val_pairs = int(val_counts2[~seen].sum())
best_step = int(np.argmin(gd_val))
print(f"counted (MLE) bigram: training cross-entropy {counted_loss:.4f} nats")
print(f"gradient descent: {gd_train[0]:.4f} at step 0 (uniform, ln V = {math.log(V):.4f}), "
      f"{gd_train[1000]:.4f} at step 1000, {gd_train[-1]:.4f} at step {descent_steps}")  # fmt: skip
print(f"validation: {unseen_val_pairs} pairs never seen in training, so the MLE's validation "
      f"loss is infinite; gradient descent's is {gd_val[best_step]:.4f} at its best "
      f"(step {best_step}) and {gd_val[-1]:.4f} at step {descent_steps}")  # fmt: skip
assert abs(gd_train[0] - math.log(V)) < 1e-9
assert 0 < gd_train[1000] - counted_loss < 0.02  # close to the counted loss, from above
assert np.all(np.diff(gd_train) < 0)  # training loss falls at every step
assert unseen_val_pairs > 0 and np.isfinite(gd_val).all()  # the MLE's would be infinite
if PROFILE == "quick":  # a tenth of the plays: overfitting shows within the run
    assert best_step < descent_steps and gd_val[-1] > gd_val[best_step]

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
ax1.plot(gd_train, label="gradient descent")
ax1.axhline(counted_loss, color="k", ls="--", lw=1, label="counted (MLE)")
ax1.set(xscale="symlog", xlabel="step", ylabel="training cross-entropy (nats)",
        title="Training: descent reaches the counts")  # fmt: skip
ax1.legend()
ax2.plot(gd_val, color="C1")
ax2.plot(best_step, gd_val[best_step], "o", color="C1")
ax2.set(xscale="symlog", xlabel="step", ylabel="validation cross-entropy (nats)",
        title="Validation (the MLE's: ∞)")  # fmt: skip
plt.tight_layout()
plt.show()

# %% [markdown]
# The left panel is the theory at work: the training loss falls at every step, from $\ln V$
# (the uniform table) to within a hundredth of a nat of the counted model's, which it
# approaches from above and never passes (asserted). The last part is slow for a reason this
# chapter already met: pairs that never occur in training have MLE probability zero, so their
# logits must go to $-\infty$, and gradient descent only gets there in the limit.
#
# The right panel is the first sight of something the next chapters live with. On held-out
# text the counted model is useless (some validation pairs were never seen, so its loss is
# infinite), while the model stopped *part way* to the MLE still gives those pairs a little
# probability, and its validation loss stays finite (asserted). On the tenth of the plays that
# `quick` counts, the validation loss reaches a minimum and then rises again as the descent
# pushes on toward the counts (asserted in `quick`). With all the training plays
# (`standard`) only a few dozen validation pairs are unseen, and within these steps the
# validation loss still falls; it turns up only much later, as the logits of those pairs sink
# toward $-\infty$. Stopping early acts like smoothing. A neural model trained too long
# overfits in the same way, and watching a validation loss to decide when to stop is exactly
# what chapter 3's training loop does.

# %% [markdown]
# ## Results
#
# Validation perplexity on the three held-out plays. The `quick` profile counts the first
# 500,000 training characters and scores the first 50,000 validation characters; `standard`
# (and `full`) use all 4.1 million and all 346,000.
#
# | quantity | `quick` | `standard`, `full` |
# |---|---|---|
# | characters, MLE, order 1 / order ≥ 2 | 28.06 / ∞ | 27.45 / ∞ |
# | characters, add-k, best order | 8.96 (order 3) | 5.85 (order 4) |
# | characters, interpolated, order 6 | 6.40 | 4.47 |
# | characters, Kneser-Ney, order 6 | 5.80 | 4.30 |
# | characters, modified Kneser-Ney, order 6 (best of the table) | 5.55 | 4.20 |
# | characters, modified Kneser-Ney, best longer order | 5.55 (order 7, level with 6) | 4.14 (order 8) |
# | BPE 1,024, modified Kneser-Ney, best order | 60.4 (order 6, < 1 % below order 4) | 28.0 (order 4) |
# | best bits per character: characters / BPE | 2.47 / 2.59 | 2.07 / 2.04 |
# | validation 6-grams of characters unseen in training | 31.8 % | 10.8 % |
# | fit time, 6-gram Kneser-Ney (2 cores) | ≈ 0.3 s | ≈ 3 s |
#
# The cell below prints this run's numbers, so you can compare.

# %%
print(
    f"profile {PROFILE}: best characters {best_smoothing} order {best_order} "
    f"perplexity {char_ppl.min():.2f}; add-k best {row['add_k'].min():.2f} "
    f"(order {np.argmin(row['add_k']) + 1}); longer orders best {min(long_ppl):.2f} "
    f"(order {LONG_ORDERS[int(np.argmin(long_ppl))]}); BPE best {bpe_ppl.min():.2f} "
    f"(order {ORDERS[bpe_best[1]]}); bits/char {best_char_bpc:.3f} / {best_bpe_bpc:.3f}; "
    f"unseen 6-grams {char_unseen[-1]:.1%}"
)

# %% [markdown]
# ## Summary
#
# - The chain rule writes a text's probability as next-token predictions; the Markov
#   assumption keeps only the last $n - 1$ tokens, and counting gives the maximum-likelihood
#   estimate $c(h\,w)/c(h)$.
# - Perplexity, the exponential of the average negative log-probability on held-out text, is
#   the effective number of choices per token. One n-gram the training text lacks gives the
#   MLE perplexity infinity, and on new plays that happens from order 2 on.
# - Add-k adds pseudo-counts and ruins rare contexts; interpolation mixes all orders with
#   weights fitted by EM on held-out text; backoff uses the longest seen context and falls back
#   only when it must.
# - Kneser-Ney discounts every count and backs the rest with *continuation* counts: how many
#   different contexts a token has followed, not how often it occurred. Modified Kneser-Ney
#   is the best of them at every order from 3 on.
# - Per-token perplexities of different tokenizers are not comparable; bits per character
#   (total nats over characters, divided by $\ln 2$) are. Counting characters or BPE tokens
#   reaches about 2 bits per character on Shakespeare, with all the training plays (asserted
#   in `standard`).
# - The share of unseen n-grams grows quickly with the order; past 7 or 8 characters the model
#   stops improving while its tables keep growing. Sharing statistics between similar contexts
#   needs learned vectors: the neural models of the next chapters.
# - Minimizing the cross-entropy is maximizing the likelihood: a bigram table of logits trained
#   by gradient descent walks to the counted model's training loss, and stopped part way it
#   keeps a finite validation loss where the counted model's is infinite.

# %% [markdown]
# ## Exercises
#
# **1.** Laplace's $k = 1$ is not sacred. Choose $k$ for an add-k 5-gram model on held-out
# text (the last 10 % of the training text, with the model fitted on the first 90 %). Which $k$
# wins, and does the best add-k catch up with Kneser-Ney?

# %% tags=["hide-cell"]
# Solution: most 5-gram contexts are rare, and smaller pseudo-counts take less probability
# from them, so k far below 1 wins (about 0.03); but add-k still spreads what it takes evenly
# over all 76 symbols, where Kneser-Ney hands it to the lower orders, and Kneser-Ney stays
# well ahead.
cut = int(0.9 * len(train_ids))
fit_part, tune_part = train_ids[:cut], train_ids[cut:]
ks = [1.0, 0.3, 0.1, 0.03, 0.01, 0.003]
tuned = [NGramLM(5, "add_k", k=k).fit(fit_part, V).perplexity(tune_part) for k in ks]
best_k = ks[int(np.argmin(tuned))]
kn_tuned = NGramLM(5, "kneser_ney").fit(fit_part, V).perplexity(tune_part)
print(", ".join(f"k={k}: {p:.3f}" for k, p in zip(ks, tuned)), f"| Kneser-Ney: {kn_tuned:.3f}")
assert best_k < 0.3 and min(tuned) > 1.05 * kn_tuned

# %% [markdown]
# **2.** Show that a model that spreads its probability evenly over the vocabulary has
# perplexity exactly $V$, and compute a perplexity by hand from `logprobs` for the validation
# line *If music be the food of love, play on;*.

# %% tags=["hide-cell"]
# Solution: add-k with an enormous k makes every count negligible: P = 1/V for every token,
# so the average -ln P is ln V and the perplexity is V. For the line, perplexity is the
# exponential of the mean negative log-probability.
uniform = NGramLM(1, "add_k", k=1e12).fit(train_ids, V)
print(f"uniform model: perplexity {uniform.perplexity(val_ids):.4f}, V = {V}")
assert math.isclose(uniform.perplexity(val_ids), V, rel_tol=1e-6)
line = chars.encode("If music be the food of love, play on;")
logp = m6.logprobs(line)
by_hand = math.exp(-logp.sum() / len(line))
print(f"6-gram perplexity of the line: {by_hand:.3f}")
assert math.isclose(by_hand, m6.perplexity(line))

# %% [markdown]
# **3.** "Stupid backoff" {cite}`brants2007` scores $w$ after $h$ by the MLE $c(h\,w)/c(h)$ if
# $c(h\,w) > 0$, and otherwise by $0.4$ times its score after the shorter context (the unigram
# frequency at the bottom). Implement it for character trigrams with `count` and show that its
# scores after a context do not sum to 1. Why does Katz backoff need the weights $\alpha(h)$?

# %% tags=["hide-cell"]
# Solution: the seen continuations already take all of the probability (their MLEs sum to 1),
# so every unseen continuation adds extra score on top: the total exceeds 1. Katz backoff
# discounts the seen n-grams first and scales the lower order by alpha(h) so that it fills
# exactly the discounted mass, which makes the result a distribution.
counter = char_models["mle", 3]


def stupid_backoff(token, context):
    if not context:
        return counter.count([token]) / len(train_ids)
    c_hw, c_h = counter.count([*context, token]), counter.count(list(context))
    if c_hw > 0:
        return c_hw / c_h  # the context was seen often enough to trust
    return 0.4 * stupid_backoff(token, context[1:])


for text in ("th", "qu", "e "):
    total = sum(stupid_backoff(w, chars.encode(text)) for w in range(V))
    print(f"sum of stupid-backoff scores after {text!r}: {total:.4f}")
    assert total > 1.0

# %% [markdown]
# **4.** Generate with temperature 0 (always the most probable character) from the order-6
# model. What happens, and why does sampling not do the same?

# %% tags=["hide-cell"]
# Solution: greedy decoding is deterministic, and the context is only 5 characters, so as soon
# as a context comes back the model repeats what it did after it last time: it falls into a
# loop. Sampling draws a different continuation each time and escapes.
greedy = chars.decode(m6.generate(300, context=prompt, temperature=0).tolist())
print(repr(greedy[:200]))
tail = greedy[-120:]
period = next(p for p in range(1, 60) if tail[p:] == tail[:-p])
print(f"it ends in a loop of {period} characters: {tail[:period]!r}")
sampled = chars.decode(m6.generate(300, context=prompt, seed=1).tolist())
assert not any(sampled[-120:][p:] == sampled[-120:][:-p] for p in range(1, 60))

# %% [markdown]
# **5.** Does more training text help every order equally? Fit modified Kneser-Ney models of
# orders 2, 4 and 6 on the first eighth and the first half of the training text, compare with
# the tables above (all of it), and explain the pattern.

# %% tags=["hide-cell"]
# Solution: a bigram model has seen most pairs of characters, and most of them often, in an
# eighth of the text already, so more text changes it least; a 6-gram model has seen only a
# fraction of the 6-grams it meets, and every extra play fills in more of them. More data
# helps the high orders most, and pushes the sparsity wall back, but slowly.
sizes = {"1/8": len(train_ids) // 8, "1/2": len(train_ids) // 2}
by_size = {
    name: [
        NGramLM(n, "modified_kneser_ney").fit(train_ids[:size], V).perplexity(val_ids)
        for n in (2, 4, 6)
    ]
    for name, size in sizes.items()
}
by_size["all"] = [char_ppl[mkn, n - 1] for n in (2, 4, 6)]
for name, ppls in by_size.items():
    print(
        f"{name:>3s} of the text: "
        + ", ".join(f"order {n}: {p:.2f}" for n, p in zip((2, 4, 6), ppls))
    )
gains = np.array(by_size["1/8"]) / np.array(by_size["all"])
print("perplexity with 1/8 of the text divided by perplexity with all of it:", gains.round(3))
assert np.all(np.diff(gains) > 0) and gains[0] > 1
