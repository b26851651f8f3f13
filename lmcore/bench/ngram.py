"""n-gram benchmark: a 5-gram character model with Kneser-Ney smoothing on Shakespeare.

Fits on the training split, evaluates on the validation split, and prints the fit
time, the evaluation speed, the distinct n-grams per order, the memory of the
tables and the validation perplexity. There is no reference library to run beside
it; the figures stand alone. ``quick=True`` uses slices of the texts.

Example:
    $ lmcore bench ngram
"""

from __future__ import annotations

import numpy as np

from lmcore.bench.common import best_of, print_table
from lmcore.ngram import NGramLM
from lmcore.tokenizers import CharTokenizer

ORDER = 5


def run(quick: bool = False) -> list[dict]:
    """Time fitting and evaluating the model, print two tables, and return the summary rows."""
    from lmcore.data import shakespeare

    train, val = shakespeare("train"), shakespeare("val")
    tokenizer = CharTokenizer(train + val)
    if quick:
        train, val = train[:500_000], val[:50_000]
    train_ids = np.array(tokenizer.encode(train))  # int64 (T,)
    val_ids = np.array(tokenizer.encode(val))
    vocab_size = tokenizer.vocab_size

    def fit():
        return NGramLM(ORDER, "kneser_ney").fit(train_ids, vocab_size)

    fit_s = best_of(fit, repeat=1 if quick else 2)
    model = fit()
    eval_s = best_of(lambda: model.perplexity(val_ids), repeat=3)

    summary = [
        {"what": "characters: train / val", "value": f"{len(train_ids):,} / {len(val_ids):,}"},
        {"what": "vocabulary", "value": vocab_size},
        {"what": f"fit {ORDER}-gram Kneser-Ney (s)", "value": round(fit_s, 2)},
        {"what": "evaluate (tokens/s)", "value": f"{len(val_ids) / eval_s:,.0f}"},
        {"what": "memory (MB)", "value": round(model.nbytes / 1e6, 1)},
        {"what": "validation perplexity", "value": round(model.perplexity(val_ids), 3)},
        {
            "what": "validation bits per char",
            "value": round(model.cross_entropy(val_ids, "bits"), 3),
        },
    ]
    print_table(summary, title=f"n-gram: {ORDER}-gram characters, Kneser-Ney, Shakespeare")
    unseen = model.unseen_fraction(val_ids)
    per_order = [
        {
            "order": n,
            "distinct n-grams": f"{model.num_ngrams(n):,}",
            "val n-grams unseen in train": f"{unseen[n - 1]:.1%}",
            "discount D": round(float(model.discounts[n - 1, 0]), 3),
        }
        for n in range(1, ORDER + 1)
    ]
    print_table(per_order)
    return summary
